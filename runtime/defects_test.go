package runtime_test

// One test per defect of the Python library this replaces (DESIGN.md
// section 7): each would have failed against it.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
	_, err := f.pool.Exec(ctx, "ALTER TABLE "+f.usageTable+" RENAME TO gone")
	testenv.Must(t, err, "rename")
	_, err = f.m.Decr(ctx, "sku", 3, "o1")
	if err == nil {
		t.Fatal("Decr succeeded without its ledger row")
	}
	if v, _ := f.m.Get(ctx, "sku"); v != 10 {
		t.Fatalf("stock %d after a failed purchase, want 10: units were lost", v)
	}
	_, err = f.pool.Exec(ctx, "ALTER TABLE gone RENAME TO "+f.usageTable)
	testenv.Must(t, err, "rename back")
	// Nothing happened, so the op key is free to succeed now.
	if r, err := f.m.Decr(ctx, "sku", 3, "o1"); err != nil || r.Replayed || r.Available != 7 {
		t.Fatalf("retry after the ledger came back = %+v, %v; want a fresh purchase", r, err)
	}
	f.assertConserved(t, "sku")
}

// A process killed between the Redis decrement and the SQL commit lost
// stock silently. Here buyer processes are killed mid-traffic, again and
// again; after Reconcile the ledger and Redis agree exactly, and every
// purchase a buyer was told of is in the ledger.
func TestDefectCrashMidPurchase(t *testing.T) {
	const kills = 5
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", 100_000), "Init")
	exe, err := os.Executable()
	testenv.Must(t, err, "executable")
	told := map[string]bool{}
	for k := range kills {
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(), "INVGEN_CHILD=buyer",
			"INVGEN_CHILD_NS="+f.ns, "INVGEN_CHILD_SCHEMA="+testenv.Schema(f.pool),
			fmt.Sprintf("INVGEN_CHILD_ID=k%d", k), "INVGEN_CHILD_ATTEMPTS=1000000000",
			"INVGEN_CHILD_LEASE=300ms", "INVGEN_CHILD_STREAM=1")
		out, err := cmd.StdoutPipe()
		testenv.Must(t, err, "pipe")
		testenv.Must(t, cmd.Start(), "start")
		// Let it buy, then kill it without warning.
		var lines bytes.Buffer
		done := make(chan struct{})
		go func() { defer close(done); lines.ReadFrom(out) }()
		time.Sleep(time.Duration(150+50*k) * time.Millisecond)
		testenv.Must(t, cmd.Process.Signal(syscall.SIGKILL), "kill")
		<-done
		cmd.Wait()
		sc := bufio.NewScanner(&lines)
		for sc.Scan() {
			if op, ok := strings.CutPrefix(sc.Text(), "ok "); ok {
				if i := strings.IndexByte(op, ' '); i > 0 {
					told[op[:i]] = true
				}
			}
		}
	}
	if len(told) == 0 {
		t.Fatal("the buyers reported no purchase before they were killed")
	}
	// Leases of the dead buyers' in-flight purchases pass; Reconcile settles them.
	time.Sleep(400 * time.Millisecond)
	rep, err := f.m.Reconcile(ctx)
	testenv.Must(t, err, "Reconcile")
	f.assertConserved(t, "hot")
	for op := range told {
		n := sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE op_key = $1 AND state = 'committed'", op)
		if n != 1 {
			t.Fatalf("purchase %s was reported to its buyer but the ledger holds %d rows of it", op, n)
		}
	}
	t.Logf("%d kills, %d purchases reported, reconcile: %+v", kills, len(told), rep)
}

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
