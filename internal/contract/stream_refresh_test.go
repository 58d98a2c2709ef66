package contract

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// streamOf returns the shard stream of an item, found from its Redis key.
func streamOf(t *testing.T, f *fixture[string], item string) string {
	t.Helper()
	k := itemKeysOf(t, f)[item]
	if k == "" {
		t.Fatalf("item %s has no Redis key", item)
	}
	return k[:strings.Index(k, "}:")+2] + "stream"
}

// backlog appends n unflushed usage entries of item to stream, as a long
// stretch without a flusher leaves them.
func backlog(t *testing.T, f *fixture[string], stream, item string, n int) {
	t.Helper()
	ctx := context.Background()
	for done := 0; done < n; {
		pipe := f.rdb.Pipeline()
		for i := 0; i < 5000 && done < n; i, done = i+1, done+1 {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{
				"i", item, "k", "decr", "d", -1, "o", "bg" + strconv.Itoa(done), "n", done + 1}})
		}
		_, err := pipe.Exec(ctx)
		testenv.Must(t, err, "xadd")
	}
}

// unflushedOf counts the unflushed entries an item hash lists.
func unflushedOf(t *testing.T, f *fixture[string], itemKey string) int64 {
	t.Helper()
	var n int64
	for _, k := range f.rdb.HKeys(context.Background(), itemKey).Val() {
		if strings.HasPrefix(k, "u:") {
			n++
		}
	}
	return n
}

// Refresh of an item costs what that item needs: a backlog of other
// items in its shard's stream is not written under its fence.
func TestStreamRefreshIgnoresOtherItemsBacklog(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 100), "Init")
	for i := range 3 {
		_, err := f.m.Decr(ctx, "a", 2, "o"+strconv.Itoa(i))
		testenv.Must(t, err, "Decr")
	}
	backlog(t, f, streamOf(t, f, "a"), "other", 100_000)
	f.rdb.HSet(ctx, itemKeysOf(t, f)["a"], "a", 5) // damage
	start := time.Now()
	testenv.Must(t, f.m.Refresh(ctx, "a"), "Refresh")
	took := time.Since(start)
	if got := f.assertConserved(t, "a"); got != 94 {
		t.Fatalf("stock %d after Refresh, want 94", got)
	}
	if took > time.Second {
		t.Fatalf("Refresh took %v with 100k entries of another item in the stream", took)
	}
	t.Logf("Refresh took %v", took)
}

// An item with a large backlog of its own is refreshed within a short
// fence, while buyers go on, and what Refresh wrote is not written again
// by the next one.
func TestStreamRefreshOfItemWithLargeBacklog(t *testing.T) {
	f := streamFixture(t, invrt.WithFenceTTL(300*time.Millisecond))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", invrt.MaxQuantity), "Init")
	var (
		wg   sync.WaitGroup
		seq  atomic.Int64
		sold atomic.Int64
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := seq.Add(1); i <= 30_000; i = seq.Add(1) {
				if _, err := f.m.Decr(ctx, "a", 1, "o"+strconv.FormatInt(i, 10)); err == nil {
					sold.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	stop := buyers(t, f, "a", 4) // traffic goes on during the refresh
	start := time.Now()
	err := f.m.Refresh(ctx, "a")
	took := time.Since(start)
	testenv.Must(t, err, "Refresh of an item with %d unflushed entries (after %v)", sold.Load(), took)
	during := stop()
	// What Refresh wrote is acknowledged: only what the buyers added
	// since is left for the next one.
	item := itemKeysOf(t, f)["a"]
	if left := unflushedOf(t, f, item); left > during {
		t.Fatalf("%d unflushed entries left after Refresh, buyers added %d during and after it", left, during)
	}
	start = time.Now()
	testenv.Must(t, f.m.Refresh(ctx, "a"), "second Refresh")
	again := time.Since(start)
	t.Logf("%d entries: Refresh took %v, the next one %v", sold.Load(), took, again)
	if left := unflushedOf(t, f, item); left != 0 {
		t.Fatalf("%d unflushed entries left after a Refresh with no buyers", left)
	}
	_, err = f.flusher().Flush(ctx)
	testenv.Must(t, err, "Flush")
	f.assertConserved(t, "a")
}

// Without a flusher the backlog is reported: FlushLag and Audit say so
// once it passes the documented bounds.
func TestStreamBacklogIsReported(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 100), "Init")
	old := time.Now().Add(-2 * invrt.BacklogAge)
	err := f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: streamOf(t, f, "a"), ID: strconv.FormatInt(old.UnixMilli(), 10) + "-1",
		Values: []any{"i", "a", "k", "decr", "d", -1, "o", "old", "n", 1}}).Err()
	testenv.Must(t, err, "xadd")
	lag, err := f.flusher().FlushLag(ctx)
	testenv.Must(t, err, "FlushLag")
	if !lag.Backlog || lag.Oldest < invrt.BacklogAge {
		t.Fatalf("FlushLag = %+v; want a backlog reported", lag)
	}
	rep, err := f.m.Audit(ctx)
	testenv.Must(t, err, "Audit")
	if !rep.Flush.Backlog || rep.Flush.Entries != 1 {
		t.Fatalf("Audit flush lag = %+v; want the backlog reported", rep.Flush)
	}
	_, err = f.flusher().Flush(ctx)
	testenv.Must(t, err, "Flush")
	if lag, err := f.flusher().FlushLag(ctx); err != nil || lag.Backlog || lag.Entries != 0 {
		t.Fatalf("FlushLag after a flush = %+v, %v", lag, err)
	}
}

// Audit counts an item's unflushed entries: an item whose changes wait
// for the flusher is no drift.
func TestStreamAuditCountsUnflushedEntries(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 100), "Init")
	testenv.Must(t, f.m.Init(ctx, "b", 100), "Init")
	for i := range 3 {
		_, err := f.m.Decr(ctx, "a", 2, "o"+strconv.Itoa(i))
		testenv.Must(t, err, "Decr")
	}
	_, err := f.m.Incr(ctx, "a", 1, "r1")
	testenv.Must(t, err, "Incr")
	f.rdb.HSet(ctx, itemKeysOf(t, f)["b"], "a", 7) // real drift
	rep, err := f.m.Audit(ctx)
	testenv.Must(t, err, "Audit")
	if len(rep.Drift) != 1 || rep.Drift[0].Item != "b" {
		t.Fatalf("Audit drift %+v; want only b", rep.Drift)
	}
	if rep.Flush.Entries != 4 {
		t.Fatalf("Audit flush lag %+v, want 4 entries", rep.Flush)
	}
}

// RefreshAll writes the unflushed entries of a page of items from several
// shards, whose stream ids may be equal: each item's entries reach the
// ledger before its stock is loaded (they were once dropped as duplicates
// of another item's entry, and Redis offered units the ledger had sold).
func TestStreamRefreshAllWritesEveryItemsEntries(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	const items, buys = 6, 150
	for i := range items {
		testenv.Must(t, f.m.Init(ctx, f.key(i), 1000), "Init")
	}
	var wg sync.WaitGroup
	for i := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range buys {
				if _, err := f.m.Decr(ctx, f.key(i), 1, fmt.Sprintf("o%d-%d", i, j)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if _, err := f.m.RefreshAll(ctx); err != nil {
		t.Fatalf("RefreshAll: %v", err)
	}
	_, err := f.flusher().Flush(ctx)
	testenv.Must(t, err, "Flush")
	for i := range items {
		if got := f.assertConserved(t, f.key(i)); got != 1000-buys {
			t.Fatalf("%s: stock %d, want %d", f.key(i), got, 1000-buys)
		}
	}
}

// An item hash that is lost or garbled while the item's entries wait in
// its shard's stream takes its list of them (its "u:" fields) with it.
// Its refresh must still count them: the stream holds them, and a load
// from the ledger alone would put every unit they took back on sale, to
// be sold twice once the flusher writes them.
func TestStreamRefreshOfALostItemHash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(ctx context.Context, f *fixture[string], key string)
	}{
		{"deleted", func(ctx context.Context, f *fixture[string], key string) { f.rdb.Del(ctx, key) }},
		{"not a hash", func(ctx context.Context, f *fixture[string], key string) { f.rdb.Set(ctx, key, "garbage", 0) }},
		{"stock and capacity gone", func(ctx context.Context, f *fixture[string], key string) { f.rdb.HDel(ctx, key, "a", "c") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := streamFixture(t)
			ctx := ctxT(t)
			testenv.Must(t, f.m.Init(ctx, "a", 100), "Init")
			testenv.Must(t, f.m.Init(ctx, "b", 100), "Init")
			for i := range 20 {
				_, err := f.m.Decr(ctx, []string{"a", "b"}[i%2], 2, "o"+strconv.Itoa(i))
				testenv.Must(t, err, "Decr")
			}
			_, err := f.m.Incr(ctx, "a", 3, "back")
			testenv.Must(t, err, "Incr")
			tc.damage(ctx, f, itemKeysOf(t, f)["a"])
			testenv.Must(t, f.m.Refresh(ctx, "a"), "Refresh")
			if got, err := f.m.Get(ctx, "a"); err != nil || got != 83 {
				t.Fatalf("Get after the refresh of a lost item hash = %d, %v; want 83 (its 10 purchases of 2 and its increase of 3 are in the stream: the refresh writes them)", got, err)
			}
			if _, err := f.flusher().Flush(ctx); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			testenv.Must(t, f.m.Refresh(ctx, "a"), "Refresh")
			for _, item := range []string{"a", "b"} {
				if got, want := f.assertConserved(t, item), map[string]int64{"a": 83, "b": 80}[item]; got != want {
					t.Fatalf("item %s: %d available once flushed, want %d", item, got, want)
				}
			}
		})
	}
}
