package contract

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// usageRows counts the committed usage rows of the fixture.
func usageRows(t *testing.T, f *fixture[string]) int64 {
	t.Helper()
	return sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE state = 'committed'")
}

// In the stream mode a change returns once Redis has decided and recorded
// it; the ledger gets it when the stream is flushed, once.
func TestStreamOperations(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	r, err := f.m.Decr(ctx, "a", 3, "o1")
	if err != nil || r != (invrt.Result{Available: 7, Delta: -3}) {
		t.Fatalf("Decr = %+v, %v", r, err)
	}
	if r, err := f.m.Decr(ctx, "a", 3, "o1"); err != nil || !r.Replayed || r.Available != 7 {
		t.Fatalf("repeated Decr = %+v, %v; want a replay", r, err)
	}
	if _, err := f.m.Decr(ctx, "a", 8, "o2"); !errors.Is(err, invrt.ErrInsufficientStock) {
		t.Fatalf("Decr(8 of 7) err = %v", err)
	}
	if _, err := f.m.Incr(ctx, "a", 4, "r1"); !errors.Is(err, invrt.ErrOverLimit) {
		t.Fatalf("Incr beyond sold err = %v", err)
	}
	if r, err := f.m.Release(ctx, "a", "o1"); err != nil || r.Delta != 3 || r.Available != 10 {
		t.Fatalf("Release = %+v, %v", r, err)
	}
	if n := usageRows(t, f); n != 0 {
		t.Fatalf("the ledger has %d usage rows before any flush; the stream mode writes none itself", n)
	}
	lag, err := f.flusher().FlushLag(ctx)
	if err != nil || lag.Entries != 2 {
		t.Fatalf("FlushLag = %+v, %v; want 2 entries", lag, err)
	}
	if n, err := f.flusher().Flush(ctx); err != nil || n != 2 {
		t.Fatalf("Flush = %d, %v; want 2", n, err)
	}
	if n, err := f.flusher().Flush(ctx); err != nil || n != 0 {
		t.Fatalf("second Flush = %d, %v; want 0", n, err)
	}
	if n := usageRows(t, f); n != 2 {
		t.Fatalf("the ledger has %d usage rows after the flush, want 2", n)
	}
	if lag, err := f.flusher().FlushLag(ctx); err != nil || lag.Entries != 0 {
		t.Fatalf("FlushLag after the flush = %+v, %v", lag, err)
	}
	keys, err := testenv.Keys(ctx, f.rdb, f.ns)
	testenv.Must(t, err, "keys")
	for _, k := range keys {
		if strings.Contains(k, "}:item:") && unflushedOf(t, f, k) != 0 {
			t.Fatalf("%s lists unflushed entries after the flush: the flusher deletes those it wrote", k)
		}
	}
	if got := f.assertConserved(t, "a"); got != 10 {
		t.Fatalf("stock %d, want 10", got)
	}
	// Adjust stays synchronous: its row is there at once.
	if _, err := f.m.Adjust(ctx, "a", 5, "restock"); err != nil {
		t.Fatal(err)
	}
	if got := f.assertConserved(t, "a"); got != 15 {
		t.Fatalf("stock %d after Adjust, want 15", got)
	}
}

// Refresh accounts for entries still in the stream: with no flusher at
// all, it writes them under the fence and loads the exact stock.
func TestStreamRefreshWithoutFlusher(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 100), "Init")
	testenv.Must(t, f.m.Init(ctx, "b", 100), "Init")
	for i := range 20 {
		_, err := f.m.Decr(ctx, []string{"a", "b"}[i%2], 2, "o"+strconv.Itoa(i))
		testenv.Must(t, err, "Decr")
	}
	f.rdb.HSet(ctx, itemKeysOf(t, f)["a"], "a", 5) // damage
	testenv.Must(t, f.m.Refresh(ctx, "a"), "Refresh")
	if got := f.assertConserved(t, "a"); got != 80 {
		t.Fatalf("stock after Refresh = %d, want 80", got)
	}
	// RefreshAll after Redis lost everything: the unflushed entries of b
	// that Refresh(a) wrote (same shard or not) are what the docs bound.
	if n, err := f.m.RefreshAll(ctx); err != nil || n != 2 {
		t.Fatalf("RefreshAll = %d, %v", n, err)
	}
	f.assertConserved(t, "b")
}

// 64 buyers with a flusher running beside them: no oversell, and once the
// flusher has drained, the ledger holds exactly what buyers were told, each
// op key once (I1–I3 in the stream mode).
func TestStreamConcurrent(t *testing.T) {
	const stock = 5000
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", stock), "Init")
	fctx, stopFlusher := context.WithCancel(ctx)
	var (
		lagsMu sync.Mutex
		lags   []time.Duration
	)
	flushed := make(chan error)
	go func() {
		flushed <- f.flusher().RunFlusher(fctx, invrt.FlusherConfig{OnFlush: func(r invrt.FlushReport) {
			lagsMu.Lock()
			lags = append(lags, r.Oldest)
			lagsMu.Unlock()
		}})
	}()
	var (
		sold, released atomic.Int64
		next           atomic.Int64
		wg             sync.WaitGroup
		bad            atomic.Value
		told           sync.Map
	)
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 5))
			for {
				i := next.Add(1)
				if i > 10_000 {
					return
				}
				op := "o" + strconv.FormatInt(i, 10)
				n := int64(1 + rng.IntN(2))
				r, err := f.m.Decr(ctx, "hot", n, op)
				switch {
				case err == nil:
					sold.Add(n)
					told.Store(op, n)
					if r.Available < 0 {
						bad.Store(fmt.Sprintf("available %d", r.Available))
					}
					if rng.IntN(10) == 0 {
						if rr, err := f.m.Release(ctx, "hot", op); err != nil || rr.Delta != n {
							bad.Store(fmt.Sprintf("release %s: %+v %v", op, rr, err))
						} else {
							released.Add(n)
						}
					}
				case !errors.Is(err, invrt.ErrInsufficientStock):
					bad.Store(err.Error())
				}
			}
		}()
	}
	wg.Wait()
	stopFlusher()
	if err := <-flushed; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunFlusher returned %v", err)
	}
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	if lag, _ := f.flusher().FlushLag(ctx); lag.Entries != 0 {
		t.Fatalf("%d entries left after the flusher drained", lag.Entries)
	}
	got := f.assertConserved(t, "hot")
	if got != stock-sold.Load()+released.Load() {
		t.Fatalf("stock %d, buyers were told of %d sold and %d released of %d", got, sold.Load(), released.Load(), stock)
	}
	var purchases int64
	told.Range(func(k, v any) bool {
		purchases++
		n := sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE op_key = $1 AND kind = 'decr' AND delta = $2", k, -v.(int64))
		if n != 1 {
			t.Fatalf("purchase %v is in the ledger %d times", k, n)
		}
		return true
	})
	if n := sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE kind = 'decr'"); n != purchases {
		t.Fatalf("ledger holds %d purchases, buyers were told of %d", n, purchases)
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	if len(lags) > 0 {
		t.Logf("%d batches; oldest entry per batch: p50 %v, p99 %v", len(lags), lags[len(lags)/2], lags[len(lags)*99/100])
	}
}
