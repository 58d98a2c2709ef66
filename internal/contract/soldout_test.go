package contract

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// countScripts counts the scripts a client runs.
type countScripts struct{ n atomic.Int64 }

func (c *countScripts) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *countScripts) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.HasPrefix(cmd.Name(), "eval") {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *countScripts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if strings.HasPrefix(cmd.Name(), "eval") {
				c.n.Add(1)
			}
		}
		return next(ctx, cmds)
	}
}

// TestSoldOutFastPath: once an item is sold out, rejected buyers cost no
// call to Redis; a repeat of a purchase that succeeded still replays; a
// unit that comes back becomes sellable within the period.
func TestSoldOutFastPath(t *testing.T) {
	const period = 300 * time.Millisecond
	rdb := testenv.Redis(t)
	var calls countScripts
	rdb.AddHook(&calls)
	f := fixtureOn(t, rdb, false, invrt.WithSoldOutCache(period))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", 3), "Init")
	for i := range 3 {
		if _, err := f.m.Decr(ctx, "hot", 1, fmt.Sprint("b", i)); err != nil {
			t.Fatal(err)
		}
	}
	// 16 buyers for a second and a half: one asks Redis when a period
	// ends, the others wait for its answer.
	before, start := calls.n.Load(), time.Now()
	var rejected atomic.Int64
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Since(start) < 1500*time.Millisecond; i++ {
				if _, err := f.m.Decr(ctx, "hot", 1, fmt.Sprint("r", w, "-", i)); !errors.Is(err, invrt.ErrInsufficientStock) {
					t.Errorf("Decr after sell-out = %v, want ErrInsufficientStock", err)
					return
				}
				rejected.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	scripts := calls.n.Load() - before
	t.Logf("%d purchases refused by 16 buyers in %v with %d scripts run", rejected.Load(), elapsed.Round(time.Millisecond), scripts)
	// One per period, and the op keys the filter may hold (its false
	// positives: 3 purchases set at most 6 of its 256 bits, so about one
	// op key in 1,800 is sent to Redis).
	if limit := int64(elapsed/period) + 3 + rejected.Load()/500; scripts > limit {
		t.Fatalf("%d scripts for %d refusals in %v; want at most %d (one per period, and the filter's false positives)", scripts, rejected.Load(), elapsed, limit)
	}
	// A repeat of a purchase that succeeded replays, sold out or not.
	r, err := f.m.Decr(ctx, "hot", 1, "b1")
	if err != nil || !r.Replayed || r.Delta != -1 {
		t.Fatalf("repeat of a purchase during the sold-out period = %+v, %v; want its replay", r, err)
	}
	// A unit comes back: it is sold within the period.
	if _, err := f.m.Release(ctx, "hot", "b0"); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for i := 0; ; i++ {
		_, err := f.m.Decr(ctx, "hot", 1, fmt.Sprint("again", i))
		if err == nil {
			break
		}
		if !errors.Is(err, invrt.ErrInsufficientStock) {
			t.Fatal(err)
		}
		if time.Since(back) > period+time.Second {
			t.Fatalf("a returned unit is not sellable %v after it came back (period %v)", time.Since(back), period)
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("a returned unit sold %v after it came back (period %v)", time.Since(back).Round(time.Millisecond), period)
	f.assertConserved(t, "hot")
}

// TestSoldOutFastPathIsExact: buyers on two managers (two processes) with
// the fast path on, some purchases repeated on the other manager as a
// client whose reply was lost does, while units come back (Release,
// Incr, Adjust) and the item sells out again and again. Every op key gets
// one outcome: a repeat of a purchase that succeeded never hears
// "insufficient stock", and the ledger never sells more than the
// capacity.
func TestSoldOutFastPathIsExact(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	const period = 50 * time.Millisecond
	f := stringFixture(t, invrt.WithSoldOutCache(period))
	other := f.reopen(invrt.WithSoldOutCache(period))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", 5), "Init")
	bought, wrong := churn(t, []manager[string]{f.m, other}, "hot", seed, scale(2*time.Second, 20*time.Second), churnMix{})
	if len(wrong) > 0 {
		t.Fatalf("seed %d: %d repeats of successful purchases were refused, e.g. %s", seed, len(wrong), wrong[0])
	}
	time.Sleep(period)
	f.quiesce(t)
	f.assertConserved(t, "hot")
	capacity, available := f.ledger(t, "hot")
	if available < 0 || available > capacity {
		t.Fatalf("seed %d: ledger available %d of capacity %d", seed, available, capacity)
	}
	t.Logf("%d purchases succeeded; capacity %d, available %d", bought, capacity, available)
}

// churnMix says what churn does besides purchases of one unit with
// sequential op keys, returns of them, Incr and Adjust +1.
type churnMix struct {
	units      int  // purchases of 1..units (default 1)
	randomKeys bool // random op keys instead of sequential ones
	refresh    bool // some steps Refresh the item
	adjustDown bool // Adjust by -1..3 instead of +1
}

// churn runs 8 workers for d on item over the managers (processes): 70-75%
// purchases, a third of them repeats of a purchase that succeeded, sent to
// either manager as a client whose reply was lost does; returns of
// purchases, Incr and Adjust. It returns how many purchases succeeded and
// the repeats of successful purchases that were refused.
func churn(t *testing.T, ms []manager[string], item string, seed uint64, d time.Duration, mix churnMix) (int, []string) {
	t.Helper()
	ctx := ctxT(t)
	var (
		mu       sync.Mutex
		bought   = map[string]bool{} // op keys whose purchase succeeded
		wrong    []string
		seq      atomic.Int64
		wg       sync.WaitGroup
		deadline = time.Now().Add(d)
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			var mine []string
			for time.Now().Before(deadline) {
				m := ms[rng.IntN(len(ms))]
				switch x := rng.IntN(100); {
				case x < 72:
					op := fmt.Sprintf("w%d-%d", w, seq.Add(1))
					if mix.randomKeys {
						op = fmt.Sprintf("w%d-%x", w, rng.Uint64())
					}
					if len(mine) > 0 && rng.IntN(3) == 0 {
						op = mine[rng.IntN(len(mine))] // a repeat
					}
					_, err := m.Decr(ctx, item, int64(1+rng.IntN(max(mix.units, 1))), op)
					mu.Lock()
					switch {
					case err == nil:
						bought[op] = true
						mine = append(mine, op)
					case errors.Is(err, invrt.ErrInsufficientStock) && bought[op]:
						wrong = append(wrong, op)
					}
					mu.Unlock()
				case x < 85 && len(mine) > 0:
					m.Release(ctx, item, mine[rng.IntN(len(mine))])
				case x < 93:
					m.Incr(ctx, item, 1, fmt.Sprintf("i%d-%d", w, seq.Add(1)))
				case x < 97 || !mix.refresh:
					delta := int64(1)
					if mix.adjustDown {
						delta = int64(rng.IntN(5) - 1) // 0 is refused as a bad argument
					}
					m.Adjust(ctx, item, delta, fmt.Sprintf("a%d-%d", w, seq.Add(1)))
				default:
					m.Refresh(ctx, item)
				}
			}
		}()
	}
	wg.Wait()
	return len(bought), wrong
}
