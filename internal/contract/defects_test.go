package contract

// One test per defect of the Python library this replaces
// (docs/migrating-from-inventory-manager.md, "What the Python library got
// wrong"): each would have failed against it.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// The last units sold under concurrency took Redis below zero.
func TestDefectOversellAtZero(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "sku", 100), "Init")
	var sold, lowest atomic.Int64
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				r, err := f.m.Decr(ctx, "sku", 1, fmt.Sprintf("w%d-%d", w, i))
				switch {
				case err == nil:
					sold.Add(1)
					if r.Available < lowest.Load() {
						lowest.Store(r.Available)
					}
				case !errors.Is(err, invrt.ErrInsufficientStock):
					t.Error(err)
				}
				if v, err := f.m.Get(ctx, "sku"); err == nil && v < 0 {
					t.Errorf("stock read %d", v)
				}
			}
		}()
	}
	wg.Wait()
	if sold.Load() != 100 || lowest.Load() < 0 {
		t.Fatalf("sold %d of 100, lowest stock seen %d", sold.Load(), lowest.Load())
	}
	if got := f.assertConserved(t, "sku"); got != 0 {
		t.Fatalf("stock %d after selling out, want 0", got)
	}
	// A returned unit is there to sell again, not lost in a negative.
	r, err := f.m.Incr(ctx, "sku", 1, "return")
	if err != nil || r.Available != 1 {
		t.Fatalf("Incr after sell-out = %+v, %v; want 1 available", r, err)
	}
}

// A failed ledger write lost stock for good: here the units come back
// before the error returns.
func TestDefectLedgerFailureReleases(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "sku", 10), "Init")
	// Take the usage table away: the insert fails in SQL, for real.
	f.exec(t, "ALTER TABLE "+f.usageTable+" RENAME TO gone")
	_, err := f.m.Decr(ctx, "sku", 3, "o1")
	if err == nil {
		t.Fatal("Decr succeeded without its ledger row")
	}
	if v, err := f.m.Get(ctx, "sku"); err != nil || v != 10 {
		t.Fatalf("stock %d (%v) after a failed purchase, want 10: units were lost", v, err)
	}
	f.exec(t, "ALTER TABLE gone RENAME TO "+f.usageTable)
	// Nothing happened, so the op key is free to succeed now.
	if r, err := f.m.Decr(ctx, "sku", 3, "o1"); err != nil || r.Replayed || r.Available != 7 {
		t.Fatalf("retry after the ledger came back = %+v, %v; want a fresh purchase", r, err)
	}
	f.assertConserved(t, "sku")
}

// A process killed between the Redis decrement and the SQL commit lost
// stock silently: see TestChaosKill, which kills buyer processes with
// SIGKILL again and again.

// usage_incr returned any amount, even units never taken.
func TestDefectIncrBeyondSold(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "sku", 20), "Init")
	if _, err := f.m.Incr(ctx, "sku", 1000, "r1"); !errors.Is(err, invrt.ErrOverLimit) {
		t.Fatalf("Incr of units never sold: err = %v, want ErrOverLimit", err)
	}
	if got := f.assertConserved(t, "sku"); got != 20 {
		t.Fatalf("stock %d, want 20", got)
	}
}

// The same order bought twice succeeded twice — also after Redis forgot
// the op key.
func TestDefectNoIdempotency(t *testing.T) {
	f := stringFixture(t, invrt.WithOpTTL(time.Millisecond))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "sku", 10), "Init")
	r1, err := f.m.Decr(ctx, "sku", 2, "order-42")
	testenv.Must(t, err, "Decr")
	time.Sleep(20 * time.Millisecond) // Redis forgets the op record
	r2, err := f.m.Decr(ctx, "sku", 2, "order-42")
	if err != nil || !r2.Replayed || r2.Delta != r1.Delta {
		t.Fatalf("second Decr of order-42 = %+v, %v; want a replay of %+v", r2, err, r1)
	}
	if got := f.assertConserved(t, "sku"); got != 8 {
		t.Fatalf("stock %d after one order of 2, want 8", got)
	}
	// Release too is once only, with or without Redis's memory.
	for i := range 3 {
		r, err := f.m.Release(ctx, "sku", "order-42")
		if err != nil || r.Delta != 2 || r.Replayed != (i > 0) {
			t.Fatalf("Release #%d = %+v, %v", i+1, r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := f.assertConserved(t, "sku"); got != 10 {
		t.Fatalf("stock %d after the release, want 10", got)
	}
}

// An unknown item read as stock 0.
func TestDefectUnknownItemReadsZero(t *testing.T) {
	f := stringFixture(t)
	if v, err := f.m.Get(context.Background(), "nope"); !errors.Is(err, invrt.ErrNotFound) {
		t.Fatalf("Get(unknown) = %d, %v; want ErrNotFound", v, err)
	}
}

// Item ids were guarded by asserts: '.' was refused for no reason, and a
// 65-byte id failed deep in the database. Here every character a key scheme
// could trip on works, and the length limit is a clean error with no write.
func TestDefectKeyGuards(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	for _, id := range []string{"a.b", "a:b", "{a}", "a}:{b", "op:1:x", "日本", strings.Repeat("k", 64)} {
		testenv.Must(t, f.m.Init(ctx, id, 5), "Init %q", id)
		if _, err := f.m.Decr(ctx, id, 2, "o"); err != nil {
			t.Fatalf("Decr(%q): %v", id, err)
		}
		if got := f.assertConserved(t, id); got != 3 {
			t.Fatalf("%q: stock %d, want 3", id, got)
		}
	}
	assertRefused(t, f, keyCalls(strings.Repeat("k", 65)))
}
