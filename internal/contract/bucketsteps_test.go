package contract

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// Faults at the steps of the operations that span several buckets of a
// split item: a process killed between two bucket loads, or after a
// change's ledger row and before its loads, and a purchase stalled while
// it falls over. Whoever comes next (the retry, a read, another process)
// finishes or undoes the step, so that no unit is lost or sold twice.

// errKilled is what every Redis command of a killed process gets.
var errKilled = errors.New("test: the process died here")

// killer is a process that dies at a step: from the first Redis command
// that at accepts on, every command of its client fails before it leaves,
// those of its background work too, as if the process had died there.
type killer struct {
	at   func(cmd redis.Cmder) bool
	dead atomic.Bool
}

func (k *killer) dies(cmd redis.Cmder) bool {
	if k.dead.Load() || k.at(cmd) {
		k.dead.Store(true)
		return true
	}
	return false
}

func (k *killer) DialHook(next redis.DialHook) redis.DialHook { return next }
func (k *killer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if k.dies(cmd) {
			cmd.SetErr(errKilled)
			return errKilled
		}
		return next(ctx, cmd)
	}
}
func (k *killer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if k.dies(cmd) {
				for _, c := range cmds {
					c.SetErr(errKilled)
				}
				return errKilled
			}
		}
		return next(ctx, cmds)
	}
}

// process returns another manager of f's namespace and tables, in a
// process of its own that k kills.
func (k *killer) process(t *testing.T, f *fixture[string], stream bool, opts ...invrt.Option) manager[string] {
	t.Helper()
	rdb := testenv.Redis(t)
	rdb.AddHook(k)
	open := openString
	if stream {
		open = openStream
	}
	opts = append([]invrt.Option{invrt.WithNamespace(f.ns), invrt.WithFenceTTL(stepFence)}, opts...)
	var m manager[string]
	var err error
	if f.pool != nil {
		m, err = open.pg(f.pool, rdb, opts...)
	} else {
		m, err = open.sql[f.engine](f.db, rdb, opts...)
	}
	testenv.Must(t, err, "New")
	return m
}

// scriptSHA is the SHA-1 of a runtime script as Redis names it.
func scriptSHA(t testing.TB, name string) string {
	t.Helper()
	src, err := invrt.Scripts.ReadFile("scripts/" + name)
	testenv.Must(t, err, "read %s", name)
	sum := sha1.Sum(src)
	return hex.EncodeToString(sum[:])
}

// runs reports whether cmd runs the script of sha (EVALSHA, or the EVAL
// that falls back to it).
func runs(cmd redis.Cmder, sha string) bool {
	args := cmd.Args()
	if len(args) < 2 {
		return false
	}
	switch strings.ToLower(fmt.Sprint(args[0])) {
	case "evalsha", "evalsha_ro":
		return fmt.Sprint(args[1]) == sha
	case "eval":
		s := sha1.Sum([]byte(fmt.Sprint(args[1])))
		return hex.EncodeToString(s[:]) == sha
	}
	return false
}

// nthLoad accepts the nth run of load.lua (from 1).
func nthLoad(t testing.TB, n int) func(redis.Cmder) bool {
	sha := scriptSHA(t, "load.lua")
	var seen atomic.Int64
	return func(cmd redis.Cmder) bool {
		return runs(cmd, sha) && seen.Add(1) == int64(n)
	}
}

// firstTake accepts the first command that takes stock off a bucket: a
// load, or step.lua's take.
func firstTake(t testing.TB) func(redis.Cmder) bool {
	load, step := scriptSHA(t, "load.lua"), scriptSHA(t, "step.lua")
	return func(cmd redis.Cmder) bool {
		if runs(cmd, load) {
			return true
		}
		if !runs(cmd, step) {
			return false
		}
		for _, a := range cmd.Args() {
			if a == "take" {
				return true
			}
		}
		return false
	}
}

const stepFence = 300 * time.Millisecond

// killableFixture is a fixture with a short fence, so that the fences of
// a killed process lapse soon.
func killableFixture(t *testing.T, stream bool, opts ...invrt.Option) *fixture[string] {
	return fixtureOn(t, testenv.Redis(t), stream, append([]invrt.Option{invrt.WithFenceTTL(stepFence)}, opts...)...)
}

func eachKillable(t *testing.T, test func(t *testing.T, f *fixture[string], stream bool)) {
	t.Run("sync", func(t *testing.T) { test(t, killableFixture(t, false), false) })
	t.Run("stream", func(t *testing.T) { test(t, killableFixture(t, true), true) })
}

// TestBucketsGatherKilledBetweenLoads: a purchase of 3 from buckets
// holding 2 and 2 gathers them into its own bucket; its process dies
// after the first load (the bucket that gives) and before the second. The
// retry of the purchase is served, and no unit is lost.
func TestBucketsGatherKilledBetweenLoads(t *testing.T) {
	eachKillable(t, func(t *testing.T, f *fixture[string], stream bool) {
		for own := range 2 {
			id := fmt.Sprint("gk", own)
			initBuckets(t, f, id, 4, 2)
			op := opKeysIn("g", own, 2, 1)[0]
			k := &killer{at: nthLoad(t, 2)}
			if _, err := k.process(t, f, stream).Decr(ctx0, id, 3, op); err == nil {
				t.Fatal("the killed purchase succeeded")
			}
			if !k.dead.Load() {
				t.Fatal("the purchase never loaded a second bucket")
			}
			time.Sleep(stepFence + 50*time.Millisecond)
			r, err := f.m.Decr(ctx0, id, 3, op)
			if err != nil || r.Delta != -3 {
				t.Fatalf("retry of the purchase of 3 of 4 whose gather was killed (own bucket %d) = %+v, %v; want it served (buckets %v)",
					own, r, err, bucketStock(t, f, id))
			}
			flushIfStream(t, f, stream)
			f.quiesce(t)
			if got := f.assertConserved(t, id); got != 1 {
				t.Fatalf("stock %d, want 1", got)
			}
		}
	})
}

// TestBucketsReleaseKilledAfterItsRow: a Release of a split item whose
// process dies after its ledger row and before it loads the buckets. Its
// retry replays, and the units it gave back are on sale.
func TestBucketsReleaseKilledAfterItsRow(t *testing.T) {
	eachKillable(t, func(t *testing.T, f *fixture[string], stream bool) {
		initBuckets(t, f, "rk", 4, 2)
		if _, err := f.m.Decr(ctx0, "rk", 4, "all"); err != nil {
			t.Fatal(err)
		}
		flushIfStream(t, f, stream)
		f.quiesce(t)
		k := &killer{at: nthLoad(t, 1)}
		_, _ = k.process(t, f, stream).Release(ctx0, "rk", "all") // a dead process answers nothing
		if !k.dead.Load() {
			t.Fatal("the Release never loaded a bucket")
		}
		time.Sleep(stepFence + 50*time.Millisecond)
		r, err := f.m.Release(ctx0, "rk", "all")
		if err != nil || r.Delta != 4 {
			t.Fatalf("retry of the killed Release = %+v, %v; want +4", r, err)
		}
		if got := f.assertConserved(t, "rk"); got != 4 {
			t.Fatalf("stock %d after the Release, want 4", got)
		}
		for i := range 4 {
			if _, err := f.m.Decr(ctx0, "rk", 1, fmt.Sprint("again", i)); err != nil {
				t.Fatalf("purchase %d of the 4 released units: %v (buckets %v)", i, err, bucketStock(t, f, "rk"))
			}
		}
	})
}

// TestBucketsAuditOfAStepCutOff: an Adjust of +1 of a split item whose
// process dies after its ledger row, before it loads a bucket, leaves the
// buckets marked. Until someone touches the item, Audit reports it stale,
// short of the ledger by the unit, and not corrupt: invgen wrote every
// field of it. The next read loads it, and then Redis and the ledger
// agree to the unit.
func TestBucketsAuditOfAStepCutOff(t *testing.T) {
	eachKillable(t, func(t *testing.T, f *fixture[string], stream bool) {
		initBuckets(t, f, "ak", 4, 2)
		k := &killer{at: nthLoad(t, 1)}
		_, _ = k.process(t, f, stream).Adjust(ctx0, "ak", 1, "grow") // a dead process answers nothing
		if !k.dead.Load() {
			t.Fatal("the Adjust never loaded a bucket")
		}
		time.Sleep(stepFence + 50*time.Millisecond)
		rep, err := f.m.Audit(ctx0)
		testenv.Must(t, err, "Audit")
		if len(rep.Drift) != 1 || !rep.Drift[0].Stale || rep.Drift[0].Corrupt != "" || rep.Drift[0].Redis != 4 || rep.Drift[0].Ledger != 5 {
			t.Fatalf("Audit of a split item whose Adjust was cut off after its row = %+v; want it stale, 4 in Redis against 5, not corrupt", rep.Drift)
		}
		if got := f.assertConserved(t, "ak"); got != 5 {
			t.Fatalf("stock %d after the read, want 5", got)
		}
		rep, err = f.m.Audit(ctx0)
		testenv.Must(t, err, "Audit")
		if len(rep.Drift) != 0 {
			t.Fatalf("Audit after the read loaded the item = %+v; want no drift", rep.Drift)
		}
	})
}

// TestBucketsDecreaseOffSaleBeforeItsRow: an Adjust of -2 of a split
// item takes the units off sale in Redis before its ledger row is
// written. Its process dies as it first takes stock off a bucket: whatever the ledger
// holds then, the buckets never offer more than it, so every unit sold
// afterwards is one the ledger has.
func TestBucketsDecreaseOffSaleBeforeItsRow(t *testing.T) {
	eachKillable(t, func(t *testing.T, f *fixture[string], stream bool) {
		initBuckets(t, f, "dk", 4, 2)
		k := &killer{at: firstTake(t)}
		_, _ = k.process(t, f, stream).Adjust(ctx0, "dk", -2, "shrink")
		if !k.dead.Load() {
			t.Fatal("the Adjust never took stock off a bucket")
		}
		time.Sleep(stepFence + 50*time.Millisecond)
		for i := 0; ; i++ {
			if _, err := f.m.Decr(ctx0, "dk", 1, fmt.Sprint("buy", i)); err != nil {
				if !errors.Is(err, invrt.ErrInsufficientStock) {
					t.Fatal(err)
				}
				break
			}
		}
		flushIfStream(t, f, stream)
		f.quiesce(t)
		if capacity, avail := f.ledger(t, "dk"); avail < 0 {
			t.Fatalf("the ledger holds %d available against a capacity of %d: the buckets sold units the Adjust had removed", avail, capacity)
		}
		f.assertConserved(t, "dk")
	})
}

// TestBucketsGatherIntoEveryBucket: a purchase that no bucket can serve
// alone but all together can is served, whichever bucket is its own
// (bucket 0, the item's own shard, too).
func TestBucketsGatherIntoEveryBucket(t *testing.T) {
	eachLedger(t, func(t *testing.T, f *fixture[string], stream bool) {
		for own := range 3 {
			id := fmt.Sprint("ge", own)
			initBuckets(t, f, id, 6, 3) // 2 a bucket
			op := opKeysIn("big", own, 3, 1)[0]
			if r, err := f.m.Decr(ctx0, id, 5, op); err != nil || r.Delta != -5 {
				t.Fatalf("purchase of 5 of 6 over 3 buckets, own bucket %d = %+v, %v; want it served", own, r, err)
			}
			flushIfStream(t, f, stream)
			f.quiesce(t)
			if got := f.assertConserved(t, id); got != 1 {
				t.Fatalf("stock %d, want 1", got)
			}
		}
	})
}

// TestBucketsRetryAfterAFailedFallOver: item in 2 buckets, bucket 0
// empty. A purchase whose own bucket is 0 falls over to bucket 1, and its
// ledger write fails: nothing taken, so the op key is free. Bucket 1's
// unit is sold, a Release puts a unit back, into bucket 0. The retry is
// served: a refusal while a unit remains would be an under-sell.
func TestBucketsRetryAfterAFailedFallOver(t *testing.T) {
	f := stringFixture(t)
	initBuckets(t, f, "ff", 2, 2) // 1 a bucket
	first := opKeysIn("a", 0, 2, 1)[0]
	if _, err := f.m.Decr(ctx0, "ff", 1, first); err != nil {
		t.Fatal(err)
	}
	op := opKeysIn("x", 0, 2, 1)[0]
	f.exec(t, "ALTER TABLE "+f.usageTable+" RENAME TO gone")
	_, err := f.m.Decr(ctx0, "ff", 1, op)
	f.exec(t, "ALTER TABLE gone RENAME TO "+f.usageTable)
	if err == nil {
		t.Fatal("the purchase succeeded without its ledger row")
	}
	if _, err := f.m.Decr(ctx0, "ff", 1, opKeysIn("b", 1, 2, 1)[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Release(ctx0, "ff", first); err != nil {
		t.Fatal(err)
	}
	if r, err := f.m.Decr(ctx0, "ff", 1, op); err != nil || r.Delta != -1 {
		t.Fatalf("retry of the purchase whose fall-over failed = %+v, %v; want the unit left (buckets %v)", r, err, bucketStock(t, f, "ff"))
	}
	f.quiesce(t)
	if got := f.assertConserved(t, "ff"); got != 0 {
		t.Fatalf("stock %d, want 0", got)
	}
}

// TestBucketsRepeatFromAProcessThatNeverSawTheItem: a purchase that fell
// over from its own bucket 0, repeated by a process that has never seen
// the item, replays.
func TestBucketsRepeatFromAProcessThatNeverSawTheItem(t *testing.T) {
	eachLedger(t, func(t *testing.T, f *fixture[string], stream bool) {
		initBuckets(t, f, "nv", 2, 2)
		ops := opKeysIn("n", 0, 2, 2)
		for _, op := range ops {
			if _, err := f.m.Decr(ctx0, "nv", 1, op); err != nil {
				t.Fatal(err)
			}
		}
		fresh := f.reopen()
		r, err := fresh.Decr(ctx0, "nv", 1, ops[1])
		if err != nil || !r.Replayed || r.Delta != -1 {
			t.Fatalf("repeat of a fallen-over purchase from a new process = %+v, %v; want its replay", r, err)
		}
		flushIfStream(t, f, stream)
		f.quiesce(t)
		if got := f.assertConserved(t, "nv"); got != 0 {
			t.Fatalf("stock %d, want 0", got)
		}
	})
}

// stall holds every Redis command of a marked call that runs reserve.lua
// with "over" (a purchase falling over to another bucket) until release
// is closed, as a slow network or a long wait at a fenced bucket would.
type stall struct {
	held    chan struct{} // closed once a command is held
	release chan struct{}
	once    sync.Once
}

type stallKey struct{}

func (s *stall) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *stall) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (s *stall) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(stallKey{}) != nil && strings.HasPrefix(strings.ToLower(cmd.Name()), "eval") {
			for _, a := range cmd.Args() {
				if a == "over" {
					s.once.Do(func() { close(s.held) })
					<-s.release
					break
				}
			}
		}
		return next(ctx, cmd)
	}
}

// TestBucketsRepeatWhileTheFirstStalls: a purchase falls over from its
// empty own bucket and stalls before it reaches the next bucket, longer
// than its pointer's lease (a bucket fenced by a refresh whose unfence was
// lost, a slow network). Meanwhile a restock refills the own bucket and a
// repeat of the op key, finding the pointer's lease passed and no bucket
// holding the purchase, is served there. The stalled first attempt must
// then not take a second unit: one op key, one execution.
func TestBucketsRepeatWhileTheFirstStalls(t *testing.T) {
	eachLedger(t, func(t *testing.T, _ *fixture[string], stream bool) {
		rdb := testenv.Redis(t)
		s := &stall{held: make(chan struct{}), release: make(chan struct{})}
		rdb.AddHook(s)
		const lease = 200 * time.Millisecond
		f := fixtureOn(t, rdb, stream, invrt.WithLease(lease))
		initBuckets(t, f, "st", 2, 2)
		if _, err := f.m.Decr(ctx0, "st", 1, opKeysIn("e", 0, 2, 1)[0]); err != nil {
			t.Fatal(err)
		}
		op := opKeysIn("x", 0, 2, 1)[0]
		type answer struct {
			r   invrt.Result
			err error
		}
		firstDone := make(chan answer, 1)
		go func() {
			r, err := f.m.Decr(context.WithValue(ctx0, stallKey{}, true), "st", 1, op)
			firstDone <- answer{r, err}
		}()
		<-s.held
		time.Sleep(lease + 100*time.Millisecond)
		if _, err := f.m.Adjust(ctx0, "st", 2, "restock"); err != nil {
			t.Fatal(err)
		}
		second, err := f.m.Decr(ctx0, "st", 1, op)
		close(s.release)
		first := <-firstDone
		executed := 0
		for _, a := range []answer{first, {second, err}} {
			if a.err == nil && !a.r.Replayed {
				executed++
			}
		}
		flushIfStream(t, f, stream)
		f.quiesce(t)
		rows := sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE item_id = 'st' AND op_key = $1 AND state = 'committed'", op)
		if executed > 1 || rows > 1 {
			t.Fatalf("op key %s executed %d times (first %+v, %v; repeat %+v, %v), %d committed rows; want once",
				op, executed, first.r, first.err, second, err, rows)
		}
		t.Logf("first %+v, %v; repeat %+v, %v; rows %d", first.r, first.err, second, err, rows)
		f.assertConserved(t, "st")
	})
}
