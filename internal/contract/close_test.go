package contract

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// closer is what every generated Manager offers to stop it.
type closer interface {
	Close(ctx context.Context) error
}

// A process that closes its manager right after a successful purchase
// leaves nothing pending: a retry from another process replays at once,
// marked as a replay.
func TestCloseDrainsJournalClears(t *testing.T) {
	f := stringFixture(t, invrt.WithLease(time.Minute))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	for i := range 20 {
		m := f.reopen(invrt.WithLease(time.Minute))
		op := "order-" + string(rune('a'+i))
		_, err := m.Decr(ctx, "a", 1, op)
		testenv.Must(t, err, "Decr")
		testenv.Must(t, m.(closer).Close(ctx), "Close")
		if _, err := m.Get(ctx, "a"); !errors.Is(err, invrt.ErrClosed) {
			t.Fatalf("Get after Close: %v, want ErrClosed", err)
		}
		keys, err := testenv.Keys(ctx, f.rdb, f.ns)
		testenv.Must(t, err, "keys")
		for _, k := range keys {
			if strings.HasSuffix(k, "}:journal") {
				t.Fatalf("after Close the journal %s still holds %v", k, f.rdb.ZRange(ctx, k, 0, -1).Val())
			}
		}
		start := time.Now()
		r, err := f.m.Decr(ctx, "a", 1, op)
		if err != nil || !r.Replayed || time.Since(start) > time.Second {
			t.Fatalf("retry from another manager = %+v, %v after %v; want a replay at once", r, err, time.Since(start))
		}
		if i == 9 {
			break
		}
	}
}

// Close waits for changes that complete after their caller's context
// ended, and no goroutine of the manager outlives it.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := stringFixtureWith(t, func(c *pgxpool.Config) { c.MaxConns = 1 })
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 100), "Init")
	conn, err := f.pool.Acquire(ctx)
	testenv.Must(t, err, "Acquire")
	m := f.reopen()
	done := make(chan error, 8)
	for i := range 8 {
		go func() {
			dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			_, err := m.Decr(dctx, "a", 1, "o"+string(rune('a'+i)))
			done <- err
		}()
	}
	time.Sleep(50 * time.Millisecond)
	conn.Release()
	for range 8 {
		<-done
	}
	testenv.Must(t, m.(closer).Close(ctx), "Close")
	testenv.Must(t, f.m.(closer).Close(ctx), "Close")
	f.pool.Close()
	f.rdb.Close()
}

// Close stops the loops a manager runs for its owner, and waits for them:
// a flusher drains what it holds, a janitor returns.
func TestCloseStopsFlusherAndJanitor(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	m := f.reopen()
	flusher := make(chan error, 1)
	janitor := make(chan error, 1)
	go func() { flusher <- m.(streamer).RunFlusher(ctx, invrt.FlusherConfig{}) }()
	go func() {
		janitor <- m.RunJanitor(ctx, invrt.JanitorConfig[string]{ReconcileEvery: 10 * time.Millisecond})
	}()
	_, err := m.Decr(ctx, "a", 2, "o1")
	testenv.Must(t, err, "Decr")
	time.Sleep(50 * time.Millisecond)
	testenv.Must(t, m.(closer).Close(ctx), "Close")
	// Close waited for both to return; their goroutines then hand over
	// the error, a moment later.
	for name, ch := range map[string]chan error{"RunFlusher": flusher, "RunJanitor": janitor} {
		select {
		case err := <-ch:
			if !errors.Is(err, invrt.ErrClosed) {
				t.Errorf("%s after Close: %v, want ErrClosed", name, err)
			}
		case <-time.After(time.Second):
			t.Errorf("%s still runs a second after Close returned", name)
		}
	}
	if lag, err := f.flusher().FlushLag(ctx); err != nil || lag.Entries != 0 {
		t.Fatalf("FlushLag after Close = %+v, %v; want the stream drained", lag, err)
	}
	f.assertConserved(t, "a")
}
