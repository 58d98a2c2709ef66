package contract

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// The failure table: "the connection died after the insert was sent, but
// SQL answers the settle that follows: the change is settled at once: a
// void row (ErrVoided), or the committed row is found (success)". Here the
// row commits and its answer is cut by the network; the settle that
// follows goes over a new connection, which SQL answers.
func TestLostCommitAnswerIsSettledAtOnce(t *testing.T) {
	if testenv.Engine() != "postgresql" {
		t.Fatalf("run with INVGEN_ENGINE=postgresql: a PL/pgSQL trigger holds the row while the proxy is armed (make test skips it on the other engines)")
	}
	// A purchase of a plain item, and a return to an item split into
	// stock buckets, whose changes other than purchases write their row
	// under the buckets' fences (buckets.go).
	for _, split := range []bool{false, true} {
		t.Run(map[bool]string{false: "purchase", true: "split-item-return"}[split], func(t *testing.T) {
			var proxy *cutProxy
			f := stringFixtureWith(t, func(c *pgxpool.Config) {
				proxy = newCutProxy(t, net.JoinHostPort(c.ConnConfig.Host, strconv.Itoa(int(c.ConnConfig.Port))))
				c.ConnConfig.Host, c.ConnConfig.Port = "127.0.0.1", uint16(proxy.addr().Port)
			})
			ctx := ctxT(t)
			change := func() (invrt.Result, error) { return f.m.Decr(ctx, "sku", 1, "order-1") }
			want := int64(9)
			if split {
				testenv.Must(t, f.m.(splitter).InitBuckets(ctx, "sku", 10, 2), "InitBuckets")
				_, err := f.m.Decr(ctx, "sku", 3, "buy")
				testenv.Must(t, err, "Decr")
				change = func() (invrt.Result, error) { return f.m.Incr(ctx, "sku", 1, "order-1") }
				want = 8
			} else {
				testenv.Must(t, f.m.Init(ctx, "sku", 10), "Init")
			}
			f.exec(t, "CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "+
				"IF NEW.op_key = 'order-1' AND NEW.state = 'committed' THEN PERFORM pg_sleep(0.3); END IF; RETURN NEW; END$$")
			f.exec(t, "CREATE TRIGGER slow_row BEFORE INSERT ON "+f.usageTable+" FOR EACH ROW EXECUTE FUNCTION slow_row()")
			// The pool holds idle connections, as under traffic.
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() { defer wg.Done(); f.exec(t, "SELECT pg_sleep(0.05)") }()
			}
			wg.Wait()
			go func() {
				time.Sleep(100 * time.Millisecond) // the insert is in its trigger
				proxy.armed.Store(true)
			}()
			r, err := change()
			if proxy.cuts.Load() != 1 {
				t.Fatalf("the proxy cut %d answers, want 1 (change = %+v, %v)", proxy.cuts.Load(), r, err)
			}
			if err != nil {
				t.Fatalf("a change whose committed row's answer was lost = %v; want success, settled at once", err)
			}
			if r.Replayed || r.Available != want {
				t.Fatalf("change = %+v, want the first execution with %d left", r, want)
			}
			if r, err := change(); err != nil || !r.Replayed {
				t.Fatalf("retry = %+v, %v; want a replay", r, err)
			}
			f.quiesce(t)
			if n := sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE op_key = 'order-1' AND state = 'committed'"); n != 1 {
				t.Fatalf("%d committed rows of order-1, want 1", n)
			}
			if got, err := f.m.Get(ctx, "sku"); err != nil || got != want {
				t.Fatalf("Get = %d, %v; want %d", got, err, want)
			}
		})
	}
}
