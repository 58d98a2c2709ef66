package contract

import (
	"strconv"
	"strings"
	"testing"
	"time"

	dropdb "github.com/invgen/invgen/examples/flashsale/inventory/drop/db"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// A repeat of a return that Redis applied again (its op record expired) is
// corrected even when the flush that refuses it races the write of its
// first attempt by another writer (another flusher, here a transaction
// that writes the first attempt's row as a flush does and commits while
// the flush waits on that row). The flush statement's insert then skips
// the repeat because of a row its own snapshot does not show, so the
// statement alone does not report the conflict; without a correction Redis
// keeps the units of both attempts and sells two it does not have. Found
// by the model-based tester with its cuts of every ledger connection: a
// flush that failed left the first attempt pending for another flusher to
// claim, while the next flush wrote the repeat.
func TestStreamRepeatRacingItsFirstAttemptIsCorrected(t *testing.T) {
	if testenv.Engine() != "postgresql" {
		t.Skip("the race is of PostgreSQL's READ COMMITTED insert; the other engines' flush statements are their own")
	}
	f := streamFixture(t, invrt.WithOpTTL(100*time.Millisecond))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	_, err := f.m.Decr(ctx, "a", 5, "buy-1")
	testenv.Must(t, err, "Decr")
	_, err = f.flusher().Flush(ctx)
	testenv.Must(t, err, "Flush")
	_, err = f.m.Incr(ctx, "a", 2, "return-1")
	testenv.Must(t, err, "Incr")
	time.Sleep(200 * time.Millisecond) // Redis forgets return-1
	r, err := f.m.Incr(ctx, "a", 2, "return-1")
	testenv.Must(t, err, "repeat")
	if r.Replayed || r.Available != 9 {
		t.Fatalf("repeat = %+v; the test needs Redis to apply it again (9 left)", r)
	}
	// The first attempt, as the item's unflushed entries list it.
	fields, err := f.rdb.HGetAll(ctx, f.itemKey(t, "a")).Result()
	testenv.Must(t, err, "HGETALL")
	var first string
	var firstAttempt int64
	for k, v := range fields {
		id, ok := strings.CutPrefix(k, "u:")
		parts := strings.Split(v, ":")
		if !ok || len(parts) != 4 || parts[0] != "incr" || first != "" && !streamIDLess(id, first) {
			continue
		}
		first = id
		firstAttempt, err = strconv.ParseInt(parts[2], 10, 64)
		testenv.Must(t, err, "attempt")
	}
	if first == "" {
		t.Fatalf("no unflushed incr entry among %v", fields)
	}
	// Another writer writes the first attempt and holds its row
	// uncommitted.
	tx, err := f.pool.Begin(ctx)
	testenv.Must(t, err, "begin")
	defer tx.Rollback(ctx)
	_, err = dropdb.New(tx).FlushUsage(ctx, dropdb.FlushUsageParams{Items: []string{"a"}, Deltas: []int64{2},
		Kinds: []string{"incr"}, OpKeys: []string{"return-1"}, Attempts: []int64{firstAttempt}})
	testenv.Must(t, err, "the other writer's flush")
	done := make(chan error, 1)
	go func() { _, err := f.flusher().Flush(ctx); done <- err }()
	// Commit once the flush waits on the row.
	deadline := time.Now().Add(10 * time.Second)
	for sumSQL(t, f, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "+
		"AND wait_event_type = 'Lock' AND query LIKE '%FlushUsage%'") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the flush never waited on the other writer's row")
		}
		time.Sleep(5 * time.Millisecond)
	}
	testenv.Must(t, tx.Commit(ctx), "commit")
	testenv.Must(t, <-done, "Flush")
	if got := f.assertConserved(t, "a"); got != 7 {
		t.Fatalf("stock %d, want 7 (10 - 5 + 2)", got)
	}
}

// streamIDLess reports whether stream id a is before b.
func streamIDLess(a, b string) bool {
	ams, aseq, _ := strings.Cut(a, "-")
	bms, bseq, _ := strings.Cut(b, "-")
	am, _ := strconv.ParseUint(ams, 10, 64)
	bm, _ := strconv.ParseUint(bms, 10, 64)
	if am != bm {
		return am < bm
	}
	as, _ := strconv.ParseUint(aseq, 10, 64)
	bs, _ := strconv.ParseUint(bseq, 10, 64)
	return as < bs
}
