package contract

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

func TestRefreshRestores(t *testing.T) {
	eachKey(t, testRefreshRestores[string], testRefreshRestores[int64], testRefreshRestores[uuid.UUID])
}

// testRefreshRestores damages an item's Redis state in each way Redis can
// lose or garble it, and checks that Refresh (or the next access) restores
// the exact stock from the ledger.
func testRefreshRestores[K comparable](t *testing.T, f *fixture[K]) {
	ctx := ctxT(t)
	a := f.key(7)
	testenv.Must(t, f.m.Init(ctx, a, 50), "Init")
	_, err := f.m.Decr(ctx, a, 4, "o1")
	testenv.Must(t, err, "Decr")
	_, err = f.m.Adjust(ctx, a, 10, "adj")
	testenv.Must(t, err, "Adjust")
	const want = 56

	itemKey := func() string {
		keys, err := testenv.Keys(ctx, f.rdb, f.ns)
		testenv.Must(t, err, "keys")
		for _, k := range keys {
			if f.rdb.Type(ctx, k).Val() == "hash" && f.rdb.HExists(ctx, k, "c").Val() {
				return k
			}
		}
		t.Fatal("no item hash in Redis")
		return ""
	}

	damage := []struct {
		name string
		do   func(key string)
	}{
		{"deleted", func(k string) { f.rdb.Del(ctx, k) }},
		{"stock overwritten", func(k string) { f.rdb.HSet(ctx, k, "a", 99999) }},
		{"stock negative", func(k string) { f.rdb.HSet(ctx, k, "a", -3) }},
		{"stock garbage", func(k string) { f.rdb.HSet(ctx, k, "a", "garbage") }},
		{"capacity lost", func(k string) { f.rdb.HDel(ctx, k, "c") }},
	}
	for _, d := range damage {
		d.do(itemKey())
		if err := f.m.Refresh(ctx, a); err != nil {
			t.Fatalf("%s: Refresh: %v", d.name, err)
		}
		if got := f.assertConserved(t, a); got != want {
			t.Fatalf("%s: stock after Refresh = %d, want %d", d.name, got, want)
		}
	}

	// Without an explicit Refresh, a missing item heals on first access.
	f.rdb.Del(ctx, itemKey())
	r, err := f.m.Decr(ctx, a, 1, "o2")
	if err != nil || r.Available != want-1 {
		t.Fatalf("Decr on an item Redis lost = %+v, %v; want available %d", r, err, want-1)
	}
	// Redis loses the whole namespace: RefreshAll rebuilds every item.
	b := f.key(8)
	testenv.Must(t, f.m.Init(ctx, b, 3), "Init b")
	testenv.Must(t, testenv.DeleteKeys(ctx, f.rdb, f.ns), "wipe")
	if n, err := f.m.RefreshAll(ctx); err != nil || n != 2 {
		t.Fatalf("RefreshAll = %d, %v; want 2", n, err)
	}
	if got := f.assertConserved(t, a); got != want-1 {
		t.Fatalf("stock after RefreshAll = %d, want %d", got, want-1)
	}
	if got := f.assertConserved(t, b); got != 3 {
		t.Fatalf("stock of b after RefreshAll = %d, want 3", got)
	}
	// Idempotency outlives Redis: the ledger still knows o1.
	r, err = f.m.Decr(ctx, a, 4, "o1")
	if err != nil || !r.Replayed || r.Delta != -4 {
		t.Fatalf("retry of o1 after Redis lost it = %+v, %v; want the first outcome", r, err)
	}
	if got := f.assertConserved(t, a); got != want-1 {
		t.Fatalf("stock after retry = %d, want %d", got, want-1)
	}
}

// TestRefreshUnderLoad: Refresh and RefreshAll run in a loop while 32
// buyers hammer the hot SKU. No sample shows oversell, no purchase is lost
// or counted twice, and the end state is exact (I6).
func TestRefreshUnderLoad(t *testing.T) {
	const stock, buyers, attempts = 6000, 32, 10000
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", stock), "Init hot")
	for i := range 20 {
		testenv.Must(t, f.m.Init(ctx, "other-"+strconv.Itoa(i), 10), "Init other")
	}

	var (
		next      atomic.Int64
		sold      atomic.Int64
		refreshes atomic.Int64
		busy      atomic.Int64
		violation atomic.Value
		wg        sync.WaitGroup
		done      = make(chan struct{})
	)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // the refresher
		defer bg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			var err error
			if i%5 == 4 {
				_, err = f.m.RefreshAll(ctx)
			} else {
				err = f.m.Refresh(ctx, "hot")
			}
			if err != nil && !errors.Is(err, invrt.ErrBusy) {
				violation.Store(fmt.Sprintf("refresh: %v", err))
			}
			refreshes.Add(1)
			confirmed := sold.Load() // before the read: it can only lag what the read shows
			if v, err := f.m.Get(ctx, "hot"); err == nil && (v < 0 || v > stock || stock-v < confirmed) {
				violation.Store(fmt.Sprintf("hot stock %d with %d sold of %d", v, confirmed, stock))
			}
		}
	}()
	for w := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for {
				i := next.Add(1)
				if i > attempts {
					return
				}
				n := int64(1 + rng.IntN(2))
				r, err := f.m.Decr(ctx, "hot", n, "o"+strconv.FormatInt(i, 10))
				switch {
				case err == nil:
					sold.Add(-r.Delta)
				case errors.Is(err, invrt.ErrInsufficientStock):
				case errors.Is(err, invrt.ErrBusy):
					busy.Add(1)
				default:
					violation.Store(fmt.Sprintf("decr: %v", err))
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	bg.Wait()
	if v := violation.Load(); v != nil {
		t.Fatal(v)
	}
	got := f.assertConserved(t, "hot")
	if got != stock-sold.Load() {
		t.Fatalf("hot stock %d, buyers were told of %d sold of %d", got, sold.Load(), stock)
	}
	if refreshes.Load() < 10 {
		t.Fatalf("only %d refreshes ran during the traffic", refreshes.Load())
	}
	t.Logf("%d refreshes during %d attempts: %d units sold, %d busy answers", refreshes.Load(), attempts, sold.Load(), busy.Load())
}

// A refresh whose fence expired while it read the ledger loads nothing: a
// change that came after the fence expired would be overwritten with the
// stock of before it.
func TestRefreshDoesNotLoadAfterItsFenceExpired(t *testing.T) {
	f := streamFixture(t, invrt.WithFenceTTL(300*time.Millisecond), invrt.WithBusyWait(100*time.Millisecond))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	tx, err := f.pool.Begin(ctx)
	testenv.Must(t, err, "begin")
	// A failure below must not leave the lock held: the pool's cleanup
	// would wait for the refresh's connection until the test timed out.
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, "LOCK TABLE "+f.usageTable+" IN ACCESS EXCLUSIVE MODE")
	testenv.Must(t, err, "lock")
	refreshed := make(chan error, 1)
	go func() { refreshed <- f.m.Refresh(ctx, "a") }() // its ledger read waits for the lock
	time.Sleep(500 * time.Millisecond)                 // its fence expires
	if _, err := f.m.Decr(ctx, "a", 2, "after-the-fence"); err != nil {
		t.Fatalf("Decr after the fence expired: %v", err)
	}
	testenv.Must(t, tx.Rollback(ctx), "unlock")
	if err := <-refreshed; !errors.Is(err, invrt.ErrBusy) {
		t.Errorf("Refresh whose fence expired = %v, want ErrBusy", err)
	}
	_, err = f.flusher().Flush(ctx)
	testenv.Must(t, err, "Flush")
	if got := f.assertConserved(t, "a"); got != 8 {
		t.Fatalf("stock %d, want 8", got)
	}
}
