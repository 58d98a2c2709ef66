package contract

// Regression tests for the replay paths: a repeat must always answer the
// ledger's first outcome, whether Redis still remembers the op key or not.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// forgetOps deletes every op record of the fixture's namespace, as a Redis
// restart from an older snapshot or an expiry would.
func (f *fixture[K]) forgetOps(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	keys, err := testenv.Keys(ctx, f.rdb, f.ns)
	testenv.Must(t, err, "keys")
	for _, k := range keys {
		if f.rdb.Type(ctx, k).Val() != "zset" && f.rdb.Type(ctx, k).Val() != "stream" && !isItemKey(k) {
			testenv.Must(t, f.rdb.Del(ctx, k).Err(), "del %s", k)
		}
	}
}

func isItemKey(k string) bool {
	for i := 0; i+6 <= len(k); i++ {
		if k[i:i+6] == "}:item" {
			return true
		}
	}
	return false
}

// A repeat with another n after Redis forgot the op record replays the
// ledger's outcome, every time, and Release gives back what the ledger says
// was taken (the repeat once replayed its own n: 12 units out of 10).
func TestReplayAfterForgetReportsLedgerOutcome(t *testing.T) {
	for _, how := range []string{"expiry", "deletion"} {
		t.Run(how, func(t *testing.T) {
			ttl := 24 * time.Hour
			if how == "expiry" {
				ttl = 200 * time.Millisecond
			}
			f := stringFixture(t, invrt.WithOpTTL(ttl))
			ctx := ctxT(t)
			testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
			_, err := f.m.Decr(ctx, "a", 1, "order-1")
			testenv.Must(t, err, "Decr")
			f.quiesce(t)
			if how == "expiry" {
				time.Sleep(300 * time.Millisecond)
			} else {
				f.forgetOps(t)
			}
			for i := range 3 {
				r, err := f.m.Decr(ctx, "a", 3, "order-1")
				if err != nil || !r.Replayed || r.Delta != -1 {
					t.Fatalf("repeat #%d with n=3 = %+v, %v; want a replay of delta -1", i+1, r, err)
				}
			}
			r, err := f.m.Release(ctx, "a", "order-1")
			if err != nil || r.Delta != 1 {
				t.Fatalf("Release = %+v, %v; want +1, what the purchase took", r, err)
			}
			if got := f.assertConserved(t, "a"); got != 10 {
				t.Fatalf("stock %d, want 10", got)
			}
		})
	}
}

// A committed purchase retried after Redis forgot its op record, on a sold
// out item, replays; it is not refused, and its Release works. The same
// holds for a return retried at the capacity limit.
func TestRefusalOfForgottenRepeatReplays(t *testing.T) {
	f := stringFixture(t, invrt.WithOpTTL(200*time.Millisecond))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 2), "Init")
	_, err := f.m.Decr(ctx, "a", 2, "buy")
	testenv.Must(t, err, "Decr")
	testenv.Must(t, f.m.Init(ctx, "b", 5), "Init b")
	_, err = f.m.Decr(ctx, "b", 2, "buy")
	testenv.Must(t, err, "Decr b")
	_, err = f.m.Incr(ctx, "b", 2, "ret")
	testenv.Must(t, err, "Incr b")
	f.quiesce(t)
	time.Sleep(300 * time.Millisecond)
	if r, err := f.m.Decr(ctx, "a", 2, "buy"); err != nil || !r.Replayed || r.Delta != -2 {
		t.Fatalf("retry of a committed purchase on a sold-out item = %+v, %v; want a replay", r, err)
	}
	if r, err := f.m.Incr(ctx, "b", 2, "ret"); err != nil || !r.Replayed || r.Delta != 2 {
		t.Fatalf("retry of a committed return at the limit = %+v, %v; want a replay", r, err)
	}
	if r, err := f.m.Release(ctx, "a", "buy"); err != nil || r.Delta != 2 || r.Replayed {
		t.Fatalf("Release after the retry = %+v, %v; want +2", r, err)
	}
	// A fresh op key on a sold-out item is refused, and leaves nothing.
	if _, err := f.m.Decr(ctx, "b", 6, "too-much"); !errors.Is(err, invrt.ErrInsufficientStock) {
		t.Fatalf("Decr beyond stock: %v, want ErrInsufficientStock", err)
	}
	if got := f.assertConserved(t, "a"); got != 2 {
		t.Fatalf("a: stock %d, want 2", got)
	}
	if got := f.assertConserved(t, "b"); got != 5 {
		t.Fatalf("b: stock %d, want 5", got)
	}
}

// A refusal is not an outcome that binds the op key: nothing is written,
// so a retry once stock is back may succeed (and costs Redis nothing).
func TestRefusalWritesNothing(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 1), "Init")
	_, err := f.m.Decr(ctx, "a", 1, "first")
	testenv.Must(t, err, "Decr")
	f.quiesce(t)
	before := f.snapshot(t)
	for i := range 50 {
		if _, err := f.m.Decr(ctx, "a", 1, fmt.Sprintf("bot-%d", i)); !errors.Is(err, invrt.ErrInsufficientStock) {
			t.Fatalf("Decr on a sold-out item: %v", err)
		}
	}
	if after := f.snapshot(t); after != before {
		t.Fatalf("refusals wrote to Redis or SQL:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	_, err = f.m.Release(ctx, "a", "first")
	testenv.Must(t, err, "Release")
	if r, err := f.m.Decr(ctx, "a", 1, "bot-0"); err != nil || r.Replayed {
		t.Fatalf("retry of a refused op key once stock is back = %+v, %v; want a fresh purchase", r, err)
	}
}

// A client deadline that passes while the change waits for a pool
// connection leaves the op key free: no void row, and a retry buys.
func TestDeadlineWhileWaitingForPool(t *testing.T) {
	f := stringFixtureWith(t, func(c *pgxpool.Config) { c.MaxConns = 1 })
	m, pool := f.m, f.pool
	ctx := ctxT(t)
	testenv.Must(t, m.Init(ctx, "a", 10), "Init")
	conn, err := pool.Acquire(ctx) // the only connection is busy
	testenv.Must(t, err, "Acquire")
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = m.Decr(dctx, "a", 1, "order-1")
	cancel()
	if err == nil || errors.Is(err, invrt.ErrVoided) {
		t.Fatalf("Decr with a deadline while the pool is busy = %v; want a deadline error that voids nothing", err)
	}
	time.Sleep(200 * time.Millisecond)
	conn.Release()
	r, err := m.Decr(ctx, "a", 1, "order-1")
	if err != nil || r.Delta != -1 {
		t.Fatalf("retry after the pool freed up = %+v, %v; want the purchase", r, err)
	}
	if n := sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE state = 'void'"); n != 0 {
		t.Fatalf("%d void rows; a deadline before the insert was sent must void nothing", n)
	}
	if got := f.assertConserved(t, "a"); got != 9 {
		t.Fatalf("stock %d, want 9", got)
	}
}

// Under pool pressure with short deadlines, orders are not burned: every
// order retried with its op key ends bought or refused, none voided.
func TestDeadlinesUnderPoolPressure(t *testing.T) {
	f := stringFixtureWith(t, func(c *pgxpool.Config) { c.MaxConns = 1 })
	m := f.m
	ctx := ctxT(t)
	testenv.Must(t, m.Init(ctx, "a", 1000), "Init")
	const buyers, orders = 64, 400
	errs := make(chan error, orders)
	sem := make(chan struct{}, buyers)
	for i := range orders {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			op := fmt.Sprintf("order-%d", i)
			for try := 0; ; try++ {
				dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				_, err := m.Decr(dctx, "a", 1, op)
				cancel()
				switch {
				case err == nil:
					errs <- nil
					return
				case errors.Is(err, invrt.ErrVoided):
					errs <- fmt.Errorf("%s: voided after %d tries: %w", op, try, err)
					return
				case try == 200:
					errs <- fmt.Errorf("%s: still failing after %d tries: %w", op, try, err)
					return
				}
			}
		}()
	}
	for range orders {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}
	if got := f.assertConserved(t, "a"); got != 1000-orders {
		t.Fatalf("stock %d, want %d", got, 1000-orders)
	}
}

// An increase may not count the units of a purchase still on its way to
// the ledger as sold: if the purchase is undone they come back, and the
// stock would exceed the capacity.
func TestIncrCountsPendingPurchasesAsOnSale(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	// A buyer whose only connection is busy: its purchase holds 2 units
	// until its deadline, then gives them back.
	small := testenv.PoolInWith(t, testenv.Schema(f.pool), func(c *pgxpool.Config) { c.MaxConns = 1 })
	buyer, err := flashsale.New(small, f.rdb, invrt.WithNamespace(f.ns))
	testenv.Must(t, err, "New")
	_, err = buyer.Get(ctx, "a") // its layout check is done
	testenv.Must(t, err, "Get")
	conn, err := small.Acquire(ctx)
	testenv.Must(t, err, "Acquire")
	defer conn.Release()
	done := make(chan error, 1)
	go func() {
		dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := buyer.Decr(dctx, "a", 2, "pending")
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if r, err := f.m.Incr(ctx, "a", 2, "return"); !errors.Is(err, invrt.ErrOverLimit) {
		t.Fatalf("Incr of 2 while a purchase of 2 is pending = %+v, %v; want ErrOverLimit (nothing is sold yet)", r, err)
	}
	if err := <-done; err == nil {
		t.Fatal("the purchase succeeded without a connection")
	}
	if got := f.assertConserved(t, "a"); got != 10 {
		t.Fatalf("stock %d, want 10 = capacity", got)
	}
}

// When a retry completes a purchase whose lease passed while its first
// call still waited for a connection, exactly one of the two calls reports
// the execution; the other is a replay.
func TestOneExecutionOneFirstAnswer(t *testing.T) {
	lease := invrt.WithLease(200 * time.Millisecond)
	f := stringFixture(t, lease)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	small := testenv.PoolInWith(t, testenv.Schema(f.pool), func(c *pgxpool.Config) { c.MaxConns = 1 })
	first, err := flashsale.New(small, f.rdb, invrt.WithNamespace(f.ns), lease)
	testenv.Must(t, err, "New")
	_, err = first.Get(ctx, "a") // its layout check is done
	testenv.Must(t, err, "Get")
	conn, err := small.Acquire(ctx)
	testenv.Must(t, err, "Acquire")
	type answer struct {
		r   invrt.Result
		err error
	}
	answers := make(chan answer, 2)
	go func() { r, err := first.Decr(ctx, "a", 2, "order-1"); answers <- answer{r, err} }()
	time.Sleep(400 * time.Millisecond) // the lease passes while it waits
	r, err := f.m.Decr(ctx, "a", 2, "order-1")
	answers <- answer{r, err}
	conn.Release()
	executed := 0
	for range 2 {
		a := <-answers
		if a.err != nil || a.r.Delta != -2 {
			t.Fatalf("Decr = %+v, %v; want the purchase", a.r, a.err)
		}
		if !a.r.Replayed {
			executed++
		}
	}
	if executed != 1 {
		t.Fatalf("%d calls reported the first execution, want exactly 1", executed)
	}
	if got := f.assertConserved(t, "a"); got != 8 {
		t.Fatalf("stock %d, want 8", got)
	}
}

// A replay answers the stock recorded with the first outcome, not the
// stock of the moment (the two differ once other changes happened).
func TestReplayReportsFirstAvailable(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	first, err := f.m.Decr(ctx, "a", 2, "order-1")
	testenv.Must(t, err, "Decr")
	_, err = f.m.Decr(ctx, "a", 3, "order-2")
	testenv.Must(t, err, "Decr")
	f.quiesce(t)
	for i := range 2 {
		r, err := f.m.Decr(ctx, "a", 2, "order-1")
		if err != nil || !r.Replayed || r.Available != first.Available || r.Delta != first.Delta {
			t.Fatalf("repeat #%d = %+v, %v; want a replay of %+v", i+1, r, err, first)
		}
	}
	rel, err := f.m.Release(ctx, "a", "order-2")
	testenv.Must(t, err, "Release")
	_, err = f.m.Decr(ctx, "a", 1, "order-3")
	testenv.Must(t, err, "Decr")
	if r, err := f.m.Release(ctx, "a", "order-2"); err != nil || !r.Replayed || r.Available != rel.Available {
		t.Fatalf("repeated Release = %+v, %v; want a replay of %+v", r, err, rel)
	}
}

// Processes with different op TTLs share one shard's records: none empties
// a bucket the other still fills, and one with a longer op TTL does not
// take a refusal for final while Redis may have forgotten a record that a
// shorter op TTL let expire.
func TestMixedOpTTLs(t *testing.T) {
	f := stringFixture(t, invrt.WithOpTTL(24*time.Hour))
	ctx := ctxT(t)
	short := f.reopen(invrt.WithOpTTL(time.Second))
	testenv.Must(t, f.m.Init(ctx, "a", 2), "Init")
	_, err := f.m.Decr(ctx, "a", 1, "o1") // settled under the long op TTL
	testenv.Must(t, err, "Decr")
	f.quiesce(t)
	_, err = short.Decr(ctx, "a", 1, "o2") // the short one writes to the shard too
	testenv.Must(t, err, "Decr")
	f.quiesce(t)
	if r, err := f.m.Decr(ctx, "a", 1, "o1"); err != nil || !r.Replayed || r.Delta != -1 {
		t.Fatalf("repeat of o1 after a process with another op TTL wrote = %+v, %v; want a replay", r, err)
	}
	// An item created by the long process, sold out by the short one, whose
	// record then expires: the long process must ask the ledger.
	testenv.Must(t, f.m.Init(ctx, "b", 1), "Init b")
	_, err = short.Decr(ctx, "b", 1, "p1")
	testenv.Must(t, err, "Decr b")
	f.quiesce(t)
	time.Sleep(2 * time.Second)
	for _, m := range []manager[string]{f.m, short} {
		if r, err := m.Decr(ctx, "b", 1, "p1"); err != nil || !r.Replayed || r.Delta != -1 {
			t.Fatalf("repeat of p1 after its record expired = %+v, %v; want a replay", r, err)
		}
	}
	f.assertConserved(t, "a")
	f.assertConserved(t, "b")
}
