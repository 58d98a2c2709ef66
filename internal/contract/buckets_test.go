package contract

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
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

// The stock buckets of a split item, tested by what docs/buckets.md says:
// a purchase goes to bucket FNV-1a-64(op key) mod 2^32 mod n, falls over
// to the next buckets when short, and the item refuses only when no
// bucket, nor all of them together, can serve it.

// splitter is what a generated Manager offers to split an item.
type splitter interface {
	InitBuckets(ctx context.Context, id string, qty int64, buckets int) error
}

func initBuckets(t *testing.T, f *fixture[string], id string, qty int64, n int) {
	t.Helper()
	testenv.Must(t, f.m.(splitter).InitBuckets(ctx0, id, qty, n), "InitBuckets(%s, %d, %d)", id, qty, n)
}

var ctx0 = context.Background()

// opBucket is the documented bucket of an op key among n.
func opBucket(opKey string, n int) int {
	h := fnv.New64a()
	h.Write([]byte(opKey))
	return int(h.Sum64() & 0xffffffff % uint64(n))
}

// opKeysIn returns count op keys with the prefix whose bucket is b of n.
func opKeysIn(prefix string, b, n, count int) []string {
	var out []string
	for i := 0; len(out) < count; i++ {
		if k := fmt.Sprint(prefix, i); opBucket(k, n) == b {
			out = append(out, k)
		}
	}
	return out
}

// bucketStock reads the stock of every Redis hash of item id, by tag.
func bucketStock(t *testing.T, f *fixture[string], id string) map[string]int64 {
	t.Helper()
	keys, err := testenv.Keys(ctx0, f.rdb, f.ns)
	testenv.Must(t, err, "keys")
	out := map[string]int64{}
	for _, k := range keys {
		if strings.HasSuffix(k, "}:item:"+id) {
			a, err := f.rdb.HGet(ctx0, k, "a").Int64()
			testenv.Must(t, err, "HGET %s a", k)
			out[k] = a
		}
	}
	return out
}

func flushIfStream(t *testing.T, f *fixture[string], stream bool) {
	t.Helper()
	if stream {
		_, err := f.flusher().Flush(ctx0)
		testenv.Must(t, err, "Flush")
	}
}

func eachLedger(t *testing.T, test func(t *testing.T, f *fixture[string], stream bool)) {
	t.Run("sync", func(t *testing.T) { test(t, stringFixture(t), false) })
	t.Run("stream", func(t *testing.T) { test(t, streamFixture(t), true) })
}

// TestBucketsSellOutExactly: buyers in parallel sell a 4-bucket item out
// to the last unit (every bucket empties, whatever bucket each op key
// hashes to) and not one unit more.
func TestBucketsSellOutExactly(t *testing.T) {
	eachLedger(t, func(t *testing.T, f *fixture[string], stream bool) {
		const stock, buyers = 240, 12
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		initBuckets(t, f, "hot", stock, 4)
		b := bucketStock(t, f, "hot")
		if len(b) != 4 {
			t.Fatalf("the item has %d Redis hashes %v, want 4 buckets", len(b), b)
		}
		if cc, ok := f.rdb.(*redis.ClusterClient); ok {
			// On a cluster whose masters split the slots evenly (three
			// of them in the cluster pass), four buckets of a 16-shard
			// prefix reach every master.
			masters, err := cc.ClusterShards(ctx0).Result()
			testenv.Must(t, err, "CLUSTER SHARDS")
			seen := map[string]bool{}
			for k := range b {
				m, err := cc.MasterForKey(ctx0, k)
				testenv.Must(t, err, "master of %s", k)
				seen[m.Options().Addr] = true
			}
			if len(seen) != len(masters) {
				t.Fatalf("the 4 buckets are on %d of the %d masters: %v", len(seen), len(masters), seen)
			}
		}
		var sold, refused atomic.Int64
		var wg sync.WaitGroup
		for w := range buyers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Random op keys: sequential ones take the buckets in
				// turn (FNV-1a's low bits), so none would fall over.
				rng := rand.New(rand.NewPCG(seed, uint64(w)))
				for {
					_, err := f.m.Decr(ctx0, "hot", 1, fmt.Sprintf("w%d-%x", w, rng.Uint64()))
					switch {
					case err == nil:
						sold.Add(1)
					case errors.Is(err, invrt.ErrInsufficientStock):
						refused.Add(1)
						return
					default:
						t.Errorf("Decr: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if sold.Load() != stock {
			t.Fatalf("%d units sold of %d", sold.Load(), stock)
		}
		for k, a := range bucketStock(t, f, "hot") {
			if a != 0 {
				t.Errorf("bucket %s holds %d after the sell-out", k, a)
			}
		}
		flushIfStream(t, f, stream)
		f.quiesce(t)
		if got := f.assertConserved(t, "hot"); got != 0 {
			t.Fatalf("stock %d after the sell-out", got)
		}
		rep, err := f.m.Audit(ctx0)
		if err != nil || len(rep.Drift) > 0 {
			t.Fatalf("Audit = %+v, %v", rep, err)
		}
	})
}

// TestBucketsGatherForALargePurchase: 10 units over 4 buckets (3+3+2+2):
// a purchase of 9 fits no bucket, but the item has it, so it is served.
func TestBucketsGatherForALargePurchase(t *testing.T) {
	eachLedger(t, func(t *testing.T, f *fixture[string], stream bool) {
		initBuckets(t, f, "g", 10, 4)
		if r, err := f.m.Decr(ctx0, "g", 9, "big"); err != nil || r.Delta != -9 {
			t.Fatalf("Decr 9 of 10 over 4 buckets = %+v, %v; want it served", r, err)
		}
		if _, err := f.m.Decr(ctx0, "g", 2, "two"); !errors.Is(err, invrt.ErrInsufficientStock) {
			t.Fatalf("Decr 2 of the 1 left = %v, want ErrInsufficientStock", err)
		}
		if r, err := f.m.Decr(ctx0, "g", 9, "big"); err != nil || !r.Replayed || r.Delta != -9 {
			t.Fatalf("repeat of the purchase of 9 = %+v, %v; want its replay", r, err)
		}
		flushIfStream(t, f, stream)
		f.quiesce(t)
		if got := f.assertConserved(t, "g"); got != 1 {
			t.Fatalf("stock %d, want 1", got)
		}
	})
}

// TestBucketsRetryOfAFallenOverPurchase: a purchase served by another
// bucket than its own, retried once its own bucket has stock again,
// replays: the pointer it left in its own bucket leads to the bucket that
// served it.
func TestBucketsRetryOfAFallenOverPurchase(t *testing.T) {
	eachLedger(t, func(t *testing.T, f *fixture[string], stream bool) {
		initBuckets(t, f, "r", 4, 4) // one unit per bucket
		ops := opKeysIn("o", 2, 4, 2)
		for _, op := range ops {
			if _, err := f.m.Decr(ctx0, "r", 1, op); err != nil {
				t.Fatalf("Decr %s: %v", op, err)
			}
		}
		// ops[1] fell over from bucket 2. A restock refills every bucket.
		if _, err := f.m.Adjust(ctx0, "r", 2, "restock"); err != nil {
			t.Fatal(err)
		}
		for k, a := range bucketStock(t, f, "r") {
			if a != 1 {
				t.Fatalf("bucket %s holds %d after the restock, want 1 each", k, a)
			}
		}
		r, err := f.m.Decr(ctx0, "r", 1, ops[1])
		if err != nil || r.Delta != -1 || !r.Replayed {
			t.Fatalf("retry of the purchase that fell over = %+v, %v; want its first outcome", r, err)
		}
		flushIfStream(t, f, stream)
		f.quiesce(t)
		if got := f.assertConserved(t, "r"); got != 4 {
			t.Fatalf("stock %d after the retry, want 4 (4 - 2 sold + 2 restocked)", got)
		}
		if n := sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE item_id = 'r' AND op_key = $1 AND state = 'committed'", ops[1]); n != 1 {
			t.Fatalf("%d committed rows of %s, want 1", n, ops[1])
		}
	})
}

// TestBucketsOtherChanges: Incr, Release and Adjust of a split item keep
// the item's guards (capacity, stock) and replay, though no bucket holds
// the whole item.
func TestBucketsOtherChanges(t *testing.T) {
	eachLedger(t, func(t *testing.T, f *fixture[string], stream bool) {
		initBuckets(t, f, "x", 8, 4)
		step := func(what string, r invrt.Result, err error, want error, delta int64) {
			t.Helper()
			if want != nil {
				if !errors.Is(err, want) {
					t.Fatalf("%s = %+v, %v; want %v", what, r, err, want)
				}
				return
			}
			if err != nil || r.Delta != delta {
				t.Fatalf("%s = %+v, %v; want delta %d", what, r, err, delta)
			}
		}
		r, err := f.m.Incr(ctx0, "x", 1, "i0")
		step("Incr with nothing sold", r, err, invrt.ErrOverLimit, 0)
		r, err = f.m.Decr(ctx0, "x", 3, "d1")
		step("Decr 3", r, err, nil, -3)
		r, err = f.m.Release(ctx0, "x", "d1")
		step("Release d1", r, err, nil, 3)
		r, err = f.m.Release(ctx0, "x", "d1")
		step("repeat Release d1", r, err, nil, 3)
		if !r.Replayed {
			t.Fatalf("repeat Release = %+v, want Replayed", r)
		}
		r, err = f.m.Release(ctx0, "x", "never")
		step("Release of nothing", r, err, invrt.ErrNotFound, 0)
		r, err = f.m.Decr(ctx0, "x", 2, "d2")
		step("Decr 2", r, err, nil, -2)
		r, err = f.m.Incr(ctx0, "x", 3, "i1")
		step("Incr 3 of 2 sold", r, err, invrt.ErrOverLimit, 0)
		r, err = f.m.Incr(ctx0, "x", 1, "i2")
		step("Incr 1", r, err, nil, 1)
		if r.Available != 7 {
			t.Fatalf("Incr reports %d available, want the item's 7", r.Available)
		}
		r, err = f.m.Adjust(ctx0, "x", -8, "a0")
		step("Adjust -8 of 7", r, err, invrt.ErrInsufficientStock, 0)
		r, err = f.m.Adjust(ctx0, "x", -7, "a1")
		step("Adjust -7", r, err, nil, -7)
		r, err = f.m.Decr(ctx0, "x", 1, "d3")
		step("Decr of an emptied item", r, err, invrt.ErrInsufficientStock, 0)
		r, err = f.m.Adjust(ctx0, "x", -7, "a1")
		step("repeat Adjust -7", r, err, nil, -7)
		r, err = f.m.Adjust(ctx0, "x", 5, "a2")
		step("Adjust +5", r, err, nil, 5)
		flushIfStream(t, f, stream)
		f.quiesce(t)
		if got := f.assertConserved(t, "x"); got != 5 {
			t.Fatalf("stock %d, want 5", got)
		}
		rep, err := f.m.Audit(ctx0)
		if err != nil || len(rep.Drift) > 0 {
			t.Fatalf("Audit = %+v, %v", rep, err)
		}
	})
}

// TestBucketsAuditAndRepair: a bucket that drifts is reported by Audit
// with the item's sums and repaired by RefreshAll; a lost bucket is
// rebuilt by the next read.
func TestBucketsAuditAndRepair(t *testing.T) {
	f := stringFixture(t)
	initBuckets(t, f, "y", 40, 4)
	testenv.Must(t, f.m.Init(ctx0, "plain", 7), "Init")
	var some string
	for k := range bucketStock(t, f, "y") {
		some = k
	}
	testenv.Must(t, f.rdb.HIncrBy(ctx0, some, "a", 5).Err(), "tamper")
	rep, err := f.m.Audit(ctx0)
	testenv.Must(t, err, "Audit")
	if len(rep.Drift) != 1 || rep.Drift[0].Item != "y" || rep.Drift[0].Redis != 45 || rep.Drift[0].Ledger != 40 {
		t.Fatalf("Audit drift = %+v, want y: Redis 45, ledger 40", rep.Drift)
	}
	n, err := f.m.RefreshAll(ctx0)
	if err != nil || n != 2 {
		t.Fatalf("RefreshAll = %d, %v; want both items", n, err)
	}
	if rep, err := f.m.Audit(ctx0); err != nil || len(rep.Drift) > 0 {
		t.Fatalf("Audit after RefreshAll = %+v, %v", rep, err)
	}
	testenv.Must(t, f.rdb.Del(ctx0, some).Err(), "lose a bucket")
	if got := f.assertConserved(t, "y"); got != 40 {
		t.Fatalf("stock %d after a bucket was lost, want 40", got)
	}
	if b := bucketStock(t, f, "y"); len(b) != 4 {
		t.Fatalf("buckets after the repair: %v", b)
	}
}

// TestBucketsUnderChurn: purchases, retries, releases, restocks and
// refreshes of a split item race on two managers (two processes) with the
// sold-out fast path on; every unit is accounted for, no purchase is
// answered twice differently, and the ledger never sells more than the
// capacity.
func TestBucketsUnderChurn(t *testing.T) {
	eachLedger(t, func(t *testing.T, f *fixture[string], stream bool) {
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		const period = 50 * time.Millisecond
		f.m = f.reopen(invrt.WithSoldOutCache(period))
		other := f.reopen(invrt.WithSoldOutCache(period))
		initBuckets(t, f, "churn", 30, 4)
		bought, wrong := churn(t, []manager[string]{f.m, other}, "churn", seed, scale(2*time.Second, 15*time.Second),
			churnMix{units: 3, randomKeys: true, refresh: true, adjustDown: true})
		if len(wrong) > 0 {
			t.Fatalf("seed %d: %d repeats of successful purchases were refused, e.g. %s", seed, len(wrong), wrong[0])
		}
		time.Sleep(period)
		flushIfStream(t, f, stream)
		f.quiesce(t)
		f.assertConserved(t, "churn")
		capacity, available := f.ledger(t, "churn")
		if available < 0 || available > capacity {
			t.Fatalf("seed %d: ledger available %d of capacity %d", seed, available, capacity)
		}
		if rep, err := f.m.Audit(ctx0); err != nil || len(rep.Drift) > 0 {
			t.Fatalf("seed %d: Audit = %+v, %v", seed, rep, err)
		}
		t.Logf("%d purchases succeeded; capacity %d, available %d", bought, capacity, available)
	})
}

// TestBucketsSoldOutFastPath: once every bucket is sold out, refusals of
// a split item cost no call to Redis either.
func TestBucketsSoldOutFastPath(t *testing.T) {
	const period = 300 * time.Millisecond
	rdb := testenv.Redis(t)
	var calls countScripts
	rdb.AddHook(&calls)
	f := fixtureOn(t, rdb, false, invrt.WithSoldOutCache(period))
	initBuckets(t, f, "hot", 4, 4)
	for i := range 4 {
		if _, err := f.m.Decr(ctx0, "hot", 1, fmt.Sprint("b", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.m.Decr(ctx0, "hot", 1, "first-refusal"); !errors.Is(err, invrt.ErrInsufficientStock) {
		t.Fatalf("Decr after the sell-out = %v", err)
	}
	before, start := calls.n.Load(), time.Now()
	refused := 0
	for i := 0; time.Since(start) < period/2; i++ {
		if _, err := f.m.Decr(ctx0, "hot", 1, fmt.Sprint("r", i)); !errors.Is(err, invrt.ErrInsufficientStock) {
			t.Fatalf("Decr after the sell-out = %v", err)
		}
		refused++
	}
	if scripts := calls.n.Load() - before; scripts > 4+int64(refused)/200 {
		t.Fatalf("%d scripts for %d refusals within the period, want about none", scripts, refused)
	}
	if r, err := f.m.Decr(ctx0, "hot", 1, "b2"); err != nil || !r.Replayed {
		t.Fatalf("repeat of a purchase during the period = %+v, %v; want its replay", r, err)
	}
}

// watchBuckets checks, after every command the manager's client sends,
// that the buckets of one item hold no more than limit in all.
type watchBuckets struct {
	reader  redis.UniversalClient
	keys    atomic.Pointer[[]string]
	limit   atomic.Int64
	worst   atomic.Int64
	checked atomic.Int64
}

func (w *watchBuckets) DialHook(next redis.DialHook) redis.DialHook { return next }
func (w *watchBuckets) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (w *watchBuckets) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if keys := w.keys.Load(); keys != nil && strings.HasPrefix(cmd.Name(), "eval") {
			// The refresh holds every bucket's fence: nothing else
			// changes them while it waits for this hook.
			var sum int64
			for _, k := range *keys {
				a, _ := w.reader.HGet(ctx, k, "a").Int64()
				sum += a
			}
			w.checked.Add(1)
			if over := sum - w.limit.Load(); over > w.worst.Load() {
				w.worst.Store(over)
			}
		}
		return err
	}
}

// TestBucketsRebalanceNeverShowsMore: a refresh that moves stock between
// buckets lowers before it raises, so at no moment do the buckets offer
// more than the item has.
func TestBucketsRebalanceNeverShowsMore(t *testing.T) {
	rdb := testenv.Redis(t)
	w := &watchBuckets{reader: testenv.Redis(t)}
	rdb.AddHook(w)
	f := fixtureOn(t, rdb, false)
	initBuckets(t, f, "skew", 40, 4) // 10 a bucket
	for _, op := range opKeysIn("s", 0, 4, 8) {
		if _, err := f.m.Decr(ctx0, "skew", 1, op); err != nil {
			t.Fatal(err)
		}
	}
	f.quiesce(t)
	stock := bucketStock(t, f, "skew")
	keys := make([]string, 0, len(stock))
	for k := range stock {
		keys = append(keys, k)
	}
	w.limit.Store(32)
	w.keys.Store(&keys)
	testenv.Must(t, f.m.Refresh(ctx0, "skew"), "Refresh") // 2,10,10,10 -> 8 each
	w.keys.Store(nil)
	if w.checked.Load() < 4 {
		t.Fatalf("only %d script calls watched", w.checked.Load())
	}
	if over := w.worst.Load(); over > 0 {
		t.Fatalf("during the rebalance the buckets offered %d units more than the item's 32", over)
	}
	for k, a := range bucketStock(t, f, "skew") {
		if a != 8 {
			t.Fatalf("bucket %s holds %d after the refresh, want 8", k, a)
		}
	}
}

// onRefusal runs do once, inside the call, when a script on key refuses
// a purchase (reply code 2).
type onRefusal struct {
	key  string
	do   func()
	done atomic.Bool
}

func (o *onRefusal) DialHook(next redis.DialHook) redis.DialHook { return next }
func (o *onRefusal) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (o *onRefusal) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		args := cmd.Args()
		if len(args) > 3 && args[3] == o.key {
			if v, ok := cmd.(*redis.Cmd); ok && strings.HasPrefix(fmt.Sprint(v.Val()), "2:") && o.done.CompareAndSwap(false, true) {
				o.do()
			}
		}
		return err
	}
}

// TestBucketsSweepSeesARebalance: the last unit of a split item sits in
// bucket 3; a purchase whose own bucket is 0 is refused there, and before
// it looks at buckets 1 to 3 a rebalance moves the unit into bucket 0.
// Each bucket it looked at was empty when it looked, yet the item always
// had the unit: it must look again, not refuse.
func TestBucketsSweepSeesARebalance(t *testing.T) {
	rdb := testenv.Redis(t)
	hook := &onRefusal{}
	rdb.AddHook(hook)
	f := fixtureOn(t, rdb, false)
	other := f.reopen()
	initBuckets(t, f, "last", 4, 4) // one unit a bucket
	for b := range 3 {
		if _, err := f.m.Decr(ctx0, "last", 1, opKeysIn("x", b, 4, 1)[0]); err != nil {
			t.Fatal(err)
		}
	}
	f.quiesce(t)
	hook.key = fmt.Sprintf("%s:{%s:%d}:item:last", f.ns, "flash_sale", shardOf("last", 16))
	hook.do = func() { testenv.Must(t, other.Refresh(ctx0, "last"), "Refresh") } // 0,0,0,1 -> 1,0,0,0
	r, err := f.m.Decr(ctx0, "last", 1, opKeysIn("y", 0, 4, 1)[0])
	if !hook.done.Load() {
		t.Fatal("the purchase was not refused in its own bucket first")
	}
	if err != nil || r.Delta != -1 {
		t.Fatalf("purchase of the last unit, moved during its sweep = %+v, %v; want it served", r, err)
	}
	f.quiesce(t)
	if got := f.assertConserved(t, "last"); got != 0 {
		t.Fatalf("stock %d, want 0", got)
	}
}

// TestBucketsPointerOfADeadAttempt: a purchase whose process died while
// it fell over leaves its pointer behind, its lease passed. A repeat finds
// the bucket that reserved it, if one did, and replays; if none did, the
// op key is free and the repeat is served like a new purchase.
func TestBucketsPointerOfADeadAttempt(t *testing.T) {
	eachLedger(t, testPointerOfADeadAttempt)
}

func testPointerOfADeadAttempt(t *testing.T, f *fixture[string], stream bool) {
	initBuckets(t, f, "dead", 4, 4) // one unit a bucket
	prefix := "flash_sale"
	if stream {
		prefix = "drop"
	}
	ownKey := func(op string) string {
		// The op record key of a purchase in its own bucket 0, the item's
		// shard: tag, "o:", the item's length and the item, "d", the op key.
		return fmt.Sprintf("%s:{%s:%d}:o:4:dead:d:%s", f.ns, prefix, shardOf("dead", 16), op)
	}
	ops := opKeysIn("z", 0, 4, 3)
	// Nothing reserved: the dead attempt's pointer is dropped, and the
	// purchase is served by its own bucket.
	testenv.Must(t, f.rdb.Set(ctx0, ownKey(ops[0]), "g:77:1", time.Minute).Err(), "plant a pointer")
	if r, err := f.m.Decr(ctx0, "dead", 1, ops[0]); err != nil || r.Replayed || r.Delta != -1 {
		t.Fatalf("purchase behind a dead attempt's pointer = %+v, %v; want it served", r, err)
	}
	// A purchase that fell over (its own bucket is empty now), whose
	// process died before it pointed its own bucket at the one that
	// served it: the repeat finds that bucket and replays.
	if _, err := f.m.Decr(ctx0, "dead", 1, ops[1]); err != nil {
		t.Fatal(err)
	}
	testenv.Must(t, f.rdb.Set(ctx0, ownKey(ops[1]), "g:78:1", time.Minute).Err(), "unsettle its pointer")
	// A restock puts a unit in every bucket, its own too.
	if _, err := f.m.Adjust(ctx0, "dead", 2, "restock"); err != nil {
		t.Fatal(err)
	}
	if r, err := f.m.Decr(ctx0, "dead", 1, ops[1]); err != nil || !r.Replayed || r.Delta != -1 {
		t.Fatalf("repeat of a fallen-over purchase behind a dead pointer = %+v, %v; want its replay", r, err)
	}
	flushIfStream(t, f, stream)
	f.quiesce(t)
	if got := f.assertConserved(t, "dead"); got != 4 {
		t.Fatalf("stock %d, want 4", got)
	}
}
