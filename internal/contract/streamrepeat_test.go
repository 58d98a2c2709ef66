package contract

import (
	"errors"
	dropdb "github.com/invgen/invgen/examples/flashsale/inventory/drop/db"
	"testing"
	"time"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// In the stream mode, an increase repeated after Redis forgot its op key
// is applied in Redis again, and the ledger keeps only the first. Its units
// must not go on sale before the flusher has seen that: a purchase of them
// would be a unit the ledger never had (the ledger below zero).
func TestStreamForgottenIncreaseRepeatSellsNothing(t *testing.T) {
	f := streamFixture(t, invrt.WithOpTTL(100*time.Millisecond))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 3), "Init")
	_, err := f.m.Decr(ctx, "a", 3, "buy-1")
	testenv.Must(t, err, "Decr buy-1")
	_, err = f.m.Incr(ctx, "a", 3, "restock-1")
	testenv.Must(t, err, "Incr restock-1")
	_, err = f.flusher().Flush(ctx)
	testenv.Must(t, err, "Flush")
	// Written, the restock is on sale.
	_, err = f.m.Decr(ctx, "a", 3, "buy-2")
	testenv.Must(t, err, "Decr buy-2 after the restock was flushed")

	time.Sleep(250 * time.Millisecond) // Redis forgets restock-1
	r, err := f.m.Incr(ctx, "a", 3, "restock-1")
	testenv.Must(t, err, "repeat of restock-1")
	if r.Replayed {
		t.Fatalf("the repeat was replayed; the test needs Redis to have forgotten it")
	}
	if _, err := f.m.Decr(ctx, "a", 1, "buy-3"); !errors.Is(err, invrt.ErrInsufficientStock) {
		t.Fatalf("a purchase after the forgotten repeat: err = %v, want ErrInsufficientStock (the ledger holds 0)", err)
	}
	_, err = f.flusher().Flush(ctx)
	testenv.Must(t, err, "Flush")
	_, err = f.m.Reconcile(ctx)
	testenv.Must(t, err, "Reconcile")
	if got := f.assertConserved(t, "a"); got != 0 {
		t.Fatalf("stock %d after settling, want 0", got)
	}
}

// A Release gives back what the ledger says its purchase took, in the
// stream mode too: when Redis forgot the purchase's op key and a repeat of
// it took other units again (which the ledger refuses), the release of it
// must not return the repeat's units, or stock is created.
func TestStreamReleaseGivesBackWhatTheLedgerSays(t *testing.T) {
	for _, flushed := range []bool{true, false} {
		name := map[bool]string{true: "purchase-flushed", false: "one-batch"}[flushed]
		t.Run(name, func(t *testing.T) {
			f := streamFixture(t, invrt.WithOpTTL(100*time.Millisecond))
			ctx := ctxT(t)
			testenv.Must(t, f.m.Init(ctx, "a", 5), "Init")
			_, err := f.m.Decr(ctx, "a", 1, "p")
			testenv.Must(t, err, "Decr p")
			if flushed {
				_, err = f.flusher().Flush(ctx)
				testenv.Must(t, err, "Flush")
			}
			time.Sleep(250 * time.Millisecond) // Redis forgets p
			r, err := f.m.Decr(ctx, "a", 4, "p")
			testenv.Must(t, err, "repeat of p")
			if r.Replayed {
				t.Fatalf("the repeat was replayed; the test needs Redis to have forgotten it")
			}
			_, err = f.m.Release(ctx, "a", "p")
			testenv.Must(t, err, "Release p")
			_, err = f.flusher().Flush(ctx)
			testenv.Must(t, err, "Flush")
			_, err = f.m.Reconcile(ctx)
			testenv.Must(t, err, "Reconcile")
			if got := sumSQL(t, f, "SELECT COALESCE(SUM(delta),0) FROM "+f.usageTable+" WHERE item_id = 'a' AND kind = 'release'"); got != 1 {
				t.Fatalf("the ledger's release of p gives back %d units, want 1 (what its purchase took per the ledger)", got)
			}
			if got := f.assertConserved(t, "a"); got != 5 {
				t.Fatalf("stock %d after settling, want 5 (capacity 5, nothing sold)", got)
			}
		})
	}
}

// Two flushers write two attempts of one op key at once (a repeat Redis
// made after forgetting it, read by another flusher than the first): the
// one whose row loses must report the item, even though the winner
// committed after its statement began (PostgreSQL reads the table as of
// the statement's start). Unreported, the repeat's correction is lost, and
// a repeated increase would go on sale.
func TestStreamConcurrentFlushesReportTheRepeat(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	tx, err := f.pool.Begin(ctx)
	testenv.Must(t, err, "Begin")
	defer tx.Rollback(ctx)
	first := dropdb.FlushUsageParams{Items: []string{"a"}, Deltas: []int64{2}, Kinds: []string{"incr"}, OpKeys: []string{"x"}, Attempts: []int64{11}}
	conflicts, err := dropdb.New(tx).FlushUsage(ctx, first)
	testenv.Must(t, err, "first flush")
	if len(conflicts) != 0 {
		t.Fatalf("first flush: conflicts %v", conflicts)
	}
	done := make(chan []string, 1)
	go func() {
		repeat := first
		repeat.Attempts = []int64{22}
		c, err := dropdb.New(f.pool).FlushUsage(ctx, repeat)
		if err != nil {
			t.Errorf("second flush: %v", err)
		}
		done <- c
	}()
	time.Sleep(200 * time.Millisecond) // the second waits for the first's row
	testenv.Must(t, tx.Commit(ctx), "Commit")
	if c := <-done; len(c) != 1 || c[0] != "a" {
		t.Fatalf("the flush whose repeat lost to a row committed meanwhile reported %v, want [a]", c)
	}
}
