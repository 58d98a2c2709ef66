package contract

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

func TestMain(m *testing.M) {
	switch os.Getenv("INVGEN_CHILD") {
	case "buyer":
		os.Exit(childBuyer())
	case "holder":
		os.Exit(childHolder())
	}
	os.Exit(m.Run())
}

// outcome is what a client saw for one op key.
type outcome struct {
	item  string
	delta int64 // −n for a purchase that succeeded; 0 when rejected
	rel   int64 // units a successful Release of it gave back
}

// TestConcurrentTraffic: 64 goroutines make 50,000 attempts of 1–3 units
// against a hot SKU (and three cold ones), retrying some op keys and
// releasing some purchases. No sampled instant shows oversell (I1); at the
// end Redis equals the ledger for every item (I2), and the ledger holds
// exactly the purchases and releases that clients were told succeeded (I3).
func TestConcurrentTraffic(t *testing.T) {
	const (
		workers  = 64
		attempts = 50_000
		stock    = 10_000
	)
	f := stringFixture(t)
	ctx := ctxT(t)
	items := []string{"hot", "cold-1", "cold-2", "cold-3"}
	for i, it := range items {
		qty := int64(stock)
		if i > 0 {
			qty = 500
		}
		testenv.Must(t, f.m.Init(ctx, it, qty), "Init %s", it)
	}

	var (
		next      atomic.Int64
		mu        sync.Mutex
		outcomes  = map[string]*outcome{}
		retries   atomic.Int64
		releases  atomic.Int64
		violation atomic.Value
	)
	// The sampler looks at the hot SKU while traffic runs.
	stop := make(chan struct{})
	var samples atomic.Int64
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			v, err := f.m.Get(ctx, "hot")
			if err == nil && (v < 0 || v > stock) {
				violation.Store(fmt.Sprintf("hot SKU stock %d outside [0, %d]", v, stock))
			}
			samples.Add(1)
			time.Sleep(200 * time.Microsecond)
		}
	}()

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			var mine []string
			for {
				i := next.Add(1)
				if i > attempts {
					return
				}
				item := "hot"
				if rng.IntN(10) >= 7 {
					item = items[1+rng.IntN(3)]
				}
				op := "order-" + strconv.FormatInt(i, 10)
				n := int64(1 + rng.IntN(3))
				r, err := f.m.Decr(ctx, item, n, op)
				o := &outcome{item: item}
				switch {
				case err == nil:
					o.delta = r.Delta
					if r.Delta != -n {
						violation.Store(fmt.Sprintf("%s: delta %d, want %d", op, r.Delta, -n))
					}
					mine = append(mine, op)
				case errors.Is(err, invrt.ErrInsufficientStock):
				default:
					violation.Store(fmt.Sprintf("%s: %v", op, err))
				}
				// A client that did not hear the answer retries the same op:
				// a purchase replays; a refusal bound nothing, so its retry
				// is a new attempt that may buy what a release freed.
				if rng.IntN(10) == 0 {
					retries.Add(1)
					r2, err2 := f.m.Decr(ctx, item, n, op)
					switch {
					case err == nil && (err2 != nil || r2.Delta != r.Delta || !r2.Replayed):
						violation.Store(fmt.Sprintf("%s: retry got %+v, %v after %+v", op, r2, err2, r))
					case err == nil:
					case err2 == nil && (r2.Replayed || r2.Delta != -n):
						violation.Store(fmt.Sprintf("%s: retry of a refusal got %+v", op, r2))
					case err2 == nil:
						o.delta = r2.Delta
						mine = append(mine, op)
					case !errors.Is(err2, invrt.ErrInsufficientStock):
						violation.Store(fmt.Sprintf("%s: retry of a refusal: %v", op, err2))
					}
				}
				mu.Lock()
				outcomes[op] = o
				mu.Unlock()
				// Some buyers cancel: release one of their purchases, sometimes twice.
				if len(mine) > 0 && rng.IntN(8) == 0 {
					k := rng.IntN(len(mine))
					rop := mine[k]
					mine = append(mine[:k], mine[k+1:]...)
					mu.Lock()
					ro := outcomes[rop]
					mu.Unlock()
					for range 1 + rng.IntN(2) {
						rr, err := f.m.Release(ctx, ro.item, rop)
						if err != nil || rr.Delta != -ro.delta {
							violation.Store(fmt.Sprintf("release %s: %+v, %v; want +%d", rop, rr, err, -ro.delta))
							break
						}
						if !rr.Replayed {
							releases.Add(1)
							mu.Lock()
							ro.rel += rr.Delta
							mu.Unlock()
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	if v := violation.Load(); v != nil {
		t.Fatal(v)
	}

	// I2 for every item, and the clients' view equals the ledger's.
	sold := map[string]int64{}
	for _, o := range outcomes {
		sold[o.item] += -o.delta - o.rel
	}
	for i, it := range items {
		initial := int64(stock)
		if i > 0 {
			initial = 500
		}
		got := f.assertConserved(t, it)
		if got != initial-sold[it] {
			t.Errorf("%s: stock %d, but clients were told of %d net units sold of %d", it, got, sold[it], initial)
		}
	}
	// Each op key is in the ledger at most once per kind, and exactly the
	// purchases that succeeded are committed.
	dups := sumSQL(t, f, "SELECT count(*) FROM (SELECT 1 FROM "+f.usageTable+" GROUP BY item_id, kind, op_key HAVING count(*) > 1) d")
	if dups != 0 {
		t.Errorf("%d op keys appear twice in the ledger", dups)
	}
	var succeeded, released int64
	for _, o := range outcomes {
		if o.delta != 0 {
			succeeded++
		}
		if o.rel != 0 {
			released++
		}
	}
	if n := sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE kind = 'decr' AND state = 'committed'"); n != succeeded {
		t.Errorf("ledger holds %d committed purchases, clients were told of %d", n, succeeded)
	}
	if n := sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE kind = 'release' AND state = 'committed'"); n != released {
		t.Errorf("ledger holds %d releases, clients were told of %d", n, released)
	}
	if rep, err := f.m.Reconcile(ctx); err != nil || rep.Seen != 0 {
		t.Errorf("Reconcile after clean traffic = %+v, %v; want nothing pending", rep, err)
	}
	t.Logf("%d attempts, %d succeeded, %d retried, %d released, %d samples of the hot SKU",
		attempts, succeeded, retries.Load(), releases.Load(), samples.Load())
}

// TestManyProcesses: four processes with 16 goroutines each buy the same
// hot SKU at once. Together they sell exactly the stock, never more, and
// the ledger agrees with Redis.
func TestManyProcesses(t *testing.T) {
	const procs, stock = 4, 2000
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", stock), "Init")

	exe, err := os.Executable()
	testenv.Must(t, err, "executable")
	var (
		wg   sync.WaitGroup
		outs = make([]bytes.Buffer, procs)
		errs = make([]error, procs)
	)
	for p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, exe)
			cmd.Env = append(os.Environ(), "INVGEN_CHILD=buyer",
				"INVGEN_CHILD_NS="+f.ns, "INVGEN_CHILD_SCHEMA="+testenv.Schema(f.pool),
				"INVGEN_CHILD_ID="+strconv.Itoa(p), "INVGEN_CHILD_ATTEMPTS=1500")
			cmd.Stdout = &outs[p]
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				errs[p] = fmt.Errorf("child %d: %v: %s", p, err, stderr.String())
			}
		}()
	}
	wg.Wait()
	var sold, ok int64
	for p := range procs {
		if errs[p] != nil {
			t.Fatal(errs[p])
		}
		for _, ev := range parseEvents(&outs[p]) {
			switch ev.kind {
			case "ok":
				sold += ev.n
				ok++
			case "start", "short":
			default:
				t.Fatalf("child %d: %s %s %s", p, ev.kind, ev.op, ev.msg)
			}
		}
	}
	if sold != stock {
		t.Errorf("processes sold %d units in %d purchases; the stock was %d (6,000 attempts of 1–3 units must sell out exactly)", sold, ok, stock)
	}
	if got := f.assertConserved(t, "hot"); got != 0 {
		t.Errorf("hot SKU left at %d, want 0", got)
	}
	if n := sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE state = 'committed'"); n != ok {
		t.Errorf("ledger holds %d purchases, processes reported %d", n, ok)
	}
}
