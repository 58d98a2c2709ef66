package contract

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	dropdb "github.com/invgen/invgen/examples/flashsale/inventory/drop/db"
	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// An increase is not for sale until its ledger row is committed: if it is
// undone, no unit it added has been sold.
func TestPendingIncreaseIsNotForSale(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 5), "Init")
	_, err := f.m.Decr(ctx, "a", 5, "d1")
	testenv.Must(t, err, "Decr")
	// The returns' insert takes a while, then fails in SQL.
	_, err = f.pool.Exec(ctx, `CREATE FUNCTION slow_fail() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.kind = 'incr' THEN PERFORM pg_sleep(0.4); RAISE EXCEPTION 'no returns today'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER slow_fail BEFORE INSERT ON `+f.usageTable+` FOR EACH ROW EXECUTE FUNCTION slow_fail()`)
	testenv.Must(t, err, "trigger")
	incr := make(chan error, 1)
	go func() { _, err := f.m.Incr(ctx, "a", 5, "i1"); incr <- err }()
	time.Sleep(150 * time.Millisecond) // the Incr is pending now
	if r, err := f.m.Decr(ctx, "a", 5, "d2"); !errors.Is(err, invrt.ErrInsufficientStock) {
		t.Fatalf("Decr during a pending Incr = %+v, %v; want ErrInsufficientStock", r, err)
	}
	if err := <-incr; err == nil {
		t.Fatal("the Incr succeeded without its ledger row")
	}
	if got := f.assertConserved(t, "a"); got != 0 {
		t.Fatalf("stock %d, want 0", got)
	}
}

// A restock (Adjust up) whose ledger row is refused gives back all it
// reserved, its pending capacity too: afterwards Redis holds the ledger's
// capacity, Audit finds nothing, and returns cannot go above it.
func TestAbortedRestockLeavesNoCapacity(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 5), "Init")
	testenv.Must(t, errOf(f.m.Decr(ctx, "a", 2, "d1")), "Decr")
	_, err := f.pool.Exec(ctx, `CREATE FUNCTION refuse_adjust() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.kind = 'adjust' THEN RAISE EXCEPTION 'no restocks today'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_adjust BEFORE INSERT ON `+f.modTable+` FOR EACH ROW EXECUTE FUNCTION refuse_adjust()`)
	testenv.Must(t, err, "trigger")
	if _, err := f.m.Adjust(ctx, "a", 4, "restock"); err == nil || errors.Is(err, invrt.ErrInDoubt) {
		t.Fatalf("Adjust whose row the ledger refuses: %v; want a definite error", err)
	}
	if rep, err := f.m.Audit(ctx); err != nil || len(rep.Drift) != 0 {
		t.Fatalf("Audit after the refused restock = %+v, %v; want no drift", rep.Drift, err)
	}
	if r, err := f.m.Incr(ctx, "a", 2, "back"); err != nil || r.Available != 5 {
		t.Fatalf("Incr of the 2 sold units = %+v, %v; want 5 available", r, err)
	}
	if r, err := f.m.Incr(ctx, "a", 1, "more"); !errors.Is(err, invrt.ErrOverLimit) {
		t.Fatalf("Incr above the capacity of 5 = %+v, %v; want ErrOverLimit", r, err)
	}
	if got := f.assertConserved(t, "a"); got != 5 {
		t.Fatalf("stock %d, want 5", got)
	}
}

// Releasing what an Incr already returned is refused, also at the top of
// the quantity range, where the reply once overflowed the script's number
// format.
func TestReleaseCannotExceedCapacity(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", invrt.MaxQuantity), "Init")
	_, err := f.m.Decr(ctx, "a", invrt.MaxQuantity, "d1")
	testenv.Must(t, err, "Decr")
	_, err = f.m.Incr(ctx, "a", invrt.MaxQuantity, "i1")
	testenv.Must(t, err, "Incr")
	if _, err := f.m.Release(ctx, "a", "d1"); !errors.Is(err, invrt.ErrOverLimit) {
		t.Fatalf("Release of units an Incr returned: err = %v, want ErrOverLimit", err)
	}
	if got := f.assertConserved(t, "a"); got != invrt.MaxQuantity {
		t.Fatalf("stock %d, want %d", got, invrt.MaxQuantity)
	}
}

// In the stream mode an op key repeated after Redis forgot it cannot be
// checked against the ledger at once; the flusher finds the repeat, the
// ledger keeps the first, and Redis is refreshed to match.
func TestStreamRepeatAfterOpTTLIsCorrected(t *testing.T) {
	f := streamFixture(t, invrt.WithOpTTL(100*time.Millisecond))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	_, err := f.m.Decr(ctx, "a", 3, "d1")
	testenv.Must(t, err, "Decr")
	_, err = f.flusher().Flush(ctx)
	testenv.Must(t, err, "Flush")
	time.Sleep(200 * time.Millisecond) // the op record expires
	if _, err := f.m.Decr(ctx, "a", 3, "d1"); err != nil {
		t.Fatal(err)
	}
	var conflicts int
	fctx, stop := context.WithTimeout(ctx, 500*time.Millisecond)
	defer stop()
	f.flusher().RunFlusher(fctx, invrt.FlusherConfig{OnFlush: func(r invrt.FlushReport) { conflicts += r.Conflicts }})
	if conflicts != 1 {
		t.Fatalf("the flusher reported %d conflicts, want 1", conflicts)
	}
	if got := f.assertConserved(t, "a"); got != 7 {
		t.Fatalf("stock %d after the correction, want 7 (one purchase of 3)", got)
	}
}

// A repeat in the same flush batch as its original: the op record expired
// before any flush, so Redis applied the Incr twice and both entries reach
// the ledger in one batch. The first one is written, the other is a
// conflict, and the item is refreshed to match the ledger.
func TestStreamRepeatInOneBatchIsCorrected(t *testing.T) {
	for _, kind := range []string{"incr", "decr"} {
		t.Run(kind, func(t *testing.T) {
			f := streamFixture(t, invrt.WithOpTTL(100*time.Millisecond))
			ctx := ctxT(t)
			testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
			_, err := f.m.Decr(ctx, "a", 5, "buy-1")
			testenv.Must(t, err, "Decr")
			repeat := func() (invrt.Result, error) {
				if kind == "incr" {
					return f.m.Incr(ctx, "a", 2, "return-1")
				}
				return f.m.Decr(ctx, "a", 2, "buy-2")
			}
			_, err = repeat()
			testenv.Must(t, err, "first")
			time.Sleep(200 * time.Millisecond) // the op record expires, nothing flushed
			r, err := repeat()
			testenv.Must(t, err, "repeat")
			if r.Replayed {
				t.Fatalf("the repeat was replayed; the test needs Redis to have forgotten it")
			}
			n, err := f.flusher().Flush(ctx)
			testenv.Must(t, err, "Flush")
			if n != 3 {
				t.Fatalf("Flush wrote %d entries, want 3", n)
			}
			_, err = f.m.Reconcile(ctx)
			testenv.Must(t, err, "Reconcile")
			want := map[string]int64{"incr": 7, "decr": 3}[kind]
			if got := f.assertConserved(t, "a"); got != want {
				t.Fatalf("stock %d, want %d", got, want)
			}
			if rows := usageRows(t, f); rows != 2 {
				t.Fatalf("%d usage rows, want 2", rows)
			}
		})
	}
}

// The flush statement keeps the first of two entries of one op key with
// different attempts in one batch, and reports the item of the other.
func TestStreamFlushBatchRepeatKeepsTheFirst(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	q := dropdb.New(f.pool)
	conflicts, err := q.FlushUsage(ctx, dropdb.FlushUsageParams{
		Items: []string{"a", "a", "a", "b"}, Deltas: []int64{-1, -2, -1, -4},
		Kinds: []string{"decr", "decr", "decr", "decr"}, OpKeys: []string{"x", "x", "x", "y"},
		Attempts: []int64{11, 22, 11, 33},
	})
	testenv.Must(t, err, "Flush")
	if len(conflicts) != 1 || conflicts[0] != "a" {
		t.Fatalf("conflicts %v, want [a]", conflicts)
	}
	if got := sumSQL(t, f, "SELECT attempt FROM "+f.usageTable+" WHERE op_key = 'x'"); got != 11 {
		t.Fatalf("the ledger kept attempt %d, want the first (11)", got)
	}
	// Written again: the same entries are no conflict for the one kept.
	conflicts, err = q.FlushUsage(ctx, dropdb.FlushUsageParams{Items: []string{"a"}, Deltas: []int64{-1},
		Kinds: []string{"decr"}, OpKeys: []string{"x"}, Attempts: []int64{11}})
	testenv.Must(t, err, "Flush again")
	if len(conflicts) != 0 {
		t.Fatalf("rewriting the kept entry reported conflicts %v", conflicts)
	}
}

// The correction of a stream repeat is not lost when the refresh it needs
// fails for a while (here another refresh holds the item's fence): the
// batch stays unacknowledged, is written again, and the item is refreshed
// once it can be.
func TestStreamConflictRefreshIsRetried(t *testing.T) {
	f := streamFixture(t, invrt.WithOpTTL(100*time.Millisecond), invrt.WithBusyWait(50*time.Millisecond))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	_, err := f.m.Decr(ctx, "a", 3, "d1")
	testenv.Must(t, err, "Decr")
	_, err = f.flusher().Flush(ctx)
	testenv.Must(t, err, "Flush")
	time.Sleep(200 * time.Millisecond) // Redis forgets d1
	if _, err := f.m.Decr(ctx, "a", 3, "d1"); err != nil {
		t.Fatal(err) // applied again in Redis: 4 left, the ledger says 7
	}
	// Another refresh holds the fence for a second.
	fence := strconv.FormatInt(time.Now().Add(time.Second).UnixMilli(), 10)
	testenv.Must(t, f.rdb.HSet(ctx, f.itemKey(t, "a"), "f", fence, "t", "someone else").Err(), "fence")
	fctx, stop := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer stop()
	var errs int
	f.flusher().RunFlusher(fctx, invrt.FlusherConfig{OnError: func(error) { errs++ }})
	if errs == 0 {
		t.Error("the failed refresh of the conflict was not reported")
	}
	if got := f.assertConserved(t, "a"); got != 7 {
		t.Fatalf("stock %d after the correction, want 7 (one purchase of 3)", got)
	}
}

// A Release racing a pending Incr of the same units is refused: if both
// went through, more units would come back than were sold.
func TestReleaseCountsPendingIncreases(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	_, err := f.m.Decr(ctx, "a", 4, "d1")
	testenv.Must(t, err, "Decr")
	f.quiesce(t)
	tx, err := f.pool.Begin(ctx)
	testenv.Must(t, err, "begin")
	_, err = tx.Exec(ctx, "LOCK TABLE "+f.usageTable+" IN ACCESS EXCLUSIVE MODE")
	testenv.Must(t, err, "lock")
	incr := make(chan error, 1)
	go func() { _, err := f.m.Incr(ctx, "a", 4, "i1"); incr <- err }() // pending: its insert waits
	time.Sleep(100 * time.Millisecond)
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, rerr := f.m.Release(rctx, "a", "d1")
	cancel()
	testenv.Must(t, tx.Rollback(ctx), "unlock")
	testenv.Must(t, <-incr, "Incr")
	if !errors.Is(rerr, invrt.ErrOverLimit) {
		t.Errorf("Release while an Incr of its units is pending = %v, want ErrOverLimit", rerr)
	}
	time.Sleep(500 * time.Millisecond) // anything left in the background ends
	if got := f.assertConserved(t, "a"); got != 10 {
		t.Fatalf("stock %d, want 10 = capacity", got)
	}
}

// A commit that comes late (the journal clear of a purchase, batched)
// settles only its own reservation. The op key's record was settled by a
// repeat and then forgotten (its TTL, a partial loss); a second use of the
// op key reserved again and waits on the ledger; the first purchase's
// clear then runs. Found by the model-based tester (seed 9): the clear
// committed the other reservation's delta, and a Release gave back 4 units
// of a purchase that took 2.
func TestLateCommitSettlesOnlyItsAttempt(t *testing.T) {
	f := stringFixture(t, invrt.WithLease(time.Minute))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "x", 10), "Init")
	_, err := f.m.Decr(ctx, "x", 2, "k")
	testenv.Must(t, err, "Decr")
	f.quiesce(t)
	attempt := sumSQL(t, f, "SELECT attempt FROM "+f.usageTable+" WHERE op_key = 'k'")
	tag := fmt.Sprintf("%s:{%s:%d}:", f.ns, flashsale.Prefix, shardOf("x", flashsale.Shards))
	buckets := []string{tag + "s:0", tag + "s:1", tag + "s:2"}
	testenv.Must(t, f.rdb.Del(ctx, buckets...).Err(), "forget the settled record")

	tx, err := f.pool.Begin(ctx)
	testenv.Must(t, err, "begin")
	_, err = tx.Exec(ctx, "LOCK TABLE "+f.usageTable+" IN ACCESS EXCLUSIVE MODE")
	testenv.Must(t, err, "lock")
	second := make(chan error, 1)
	go func() { _, err := f.m.Decr(ctx, "x", 4, "k"); second <- err }() // reserved, its insert waits
	time.Sleep(200 * time.Millisecond)

	// The first purchase's clear, late: commit.lua as the runtime runs it.
	src := func(name string) string {
		b, err := fs.ReadFile(invrt.Scripts, "scripts/"+name)
		testenv.Must(t, err, "script")
		return string(b)
	}
	opRec := tag + "o:1:x:d:k"
	commit := redis.NewScript(src("settled.lua") + src("commit.lua"))
	testenv.Must(t, commit.Run(ctx, f.rdb, append([]string{opRec, tag + "journal", tag + "item:x"}, buckets...),
		opRec[len(tag)+2:], "43200000", "0", attempt).Err(), "late commit")

	testenv.Must(t, tx.Rollback(ctx), "unlock")
	r, err := f.m.Decr(ctx, "x", 4, "k")
	<-second
	if err != nil || r.Delta != -2 || !r.Replayed {
		t.Errorf("repeat of op key k = %+v, %v; want the ledger's first outcome, delta -2", r, err)
	}
	r, err = f.m.Release(ctx, "x", "k")
	if err != nil || r.Delta != 2 {
		t.Errorf("Release of k = %+v, %v; want the 2 units its purchase took", r, err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := f.assertConserved(t, "x"); got != 10 {
		t.Fatalf("stock %d, want 10", got)
	}
}
