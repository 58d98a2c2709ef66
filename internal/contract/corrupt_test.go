package contract

// One key that invgen did not write affects its own item only: maintenance
// goes on for every other item, Audit names it, and Refresh repairs it.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// itemKey finds the Redis key of item id in the fixture's namespace.
func (f *fixture[K]) itemKey(t *testing.T, id string) string {
	t.Helper()
	keys, err := testenv.Keys(context.Background(), f.rdb, f.ns)
	testenv.Must(t, err, "keys")
	for _, k := range keys {
		if strings.HasSuffix(k, "}:item:"+id) {
			return k
		}
	}
	t.Fatalf("no Redis key for item %q", id)
	return ""
}

func TestCorruptKeysAreIsolated(t *testing.T) {
	cases := []struct {
		name   string
		garble func(ctx context.Context, f *fixture[string], key string) error
	}{
		{"wrong type", func(ctx context.Context, f *fixture[string], key string) error {
			return f.rdb.Set(ctx, key, "oops", 0).Err()
		}},
		{"available not a number", func(ctx context.Context, f *fixture[string], key string) error {
			return f.rdb.HSet(ctx, key, "a", "x").Err()
		}},
		{"capacity not a number", func(ctx context.Context, f *fixture[string], key string) error {
			return f.rdb.HSet(ctx, key, "c", "x").Err()
		}},
		{"capacity off", func(ctx context.Context, f *fixture[string], key string) error {
			return f.rdb.HSet(ctx, key, "c", "1000").Err()
		}},
		{"fence far in the future", func(ctx context.Context, f *fixture[string], key string) error {
			far := time.Now().Add(24 * 365 * time.Hour).UnixMilli()
			return f.rdb.HSet(ctx, key, "f", strconv.FormatInt(far, 10), "t", "someone").Err()
		}},
		{"fence not a number", func(ctx context.Context, f *fixture[string], key string) error {
			return f.rdb.HSet(ctx, key, "f", "soon", "t", "someone").Err()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := stringFixture(t, invrt.WithBusyWait(200*time.Millisecond))
			ctx := ctxT(t)
			for i := range 5 {
				testenv.Must(t, f.m.Init(ctx, f.key(i), 10), "Init")
			}
			bad := f.key(2)
			testenv.Must(t, tc.garble(ctx, f, f.itemKey(t, bad)), "garble")

			// Audit names the item and only it.
			rep, err := f.m.Audit(ctx)
			if err != nil {
				t.Fatalf("Audit: %v", err)
			}
			if rep.Items != 5 {
				t.Fatalf("Audit compared %d items, want 5", rep.Items)
			}
			if len(rep.Drift) != 1 || rep.Drift[0].Item != bad || rep.Drift[0].Corrupt == "" {
				t.Fatalf("Audit drift = %+v; want %s listed as corrupt", rep.Drift, bad)
			}
			// RefreshAll loads every item, the bad one repaired, and leaves
			// none fenced.
			n, err := f.m.RefreshAll(ctx)
			if err != nil || n != 5 {
				t.Fatalf("RefreshAll = %d, %v; want 5 items loaded", n, err)
			}
			for i := range 5 {
				if r, err := f.m.Decr(ctx, f.key(i), 1, "after"); err != nil || r.Available != 9 {
					t.Fatalf("Decr %s after RefreshAll = %+v, %v", f.key(i), r, err)
				}
				f.assertConserved(t, f.key(i))
			}
			if rep, err := f.m.Audit(ctx); err != nil || len(rep.Drift) != 0 {
				t.Fatalf("Audit after repair = %+v, %v; want no drift", rep, err)
			}
		})
	}
}

// A purchase of a garbled item repairs it from the ledger and goes on.
func TestChangeRepairsCorruptItem(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	_, err := f.m.Decr(ctx, "a", 3, "o1")
	testenv.Must(t, err, "Decr")
	f.quiesce(t)
	testenv.Must(t, f.rdb.HSet(ctx, f.itemKey(t, "a"), "a", "x").Err(), "garble")
	if r, err := f.m.Decr(ctx, "a", 2, "o2"); err != nil || r.Available != 5 {
		t.Fatalf("Decr of a garbled item = %+v, %v; want it repaired and 5 left", r, err)
	}
	testenv.Must(t, f.rdb.Set(ctx, f.itemKey(t, "a"), "oops", 0).Err(), "wrong type")
	if v, err := f.m.Get(ctx, "a"); err != nil || v != 5 {
		t.Fatalf("Get of a wrong-type item = %d, %v; want it repaired and 5", v, err)
	}
	f.assertConserved(t, "a")
}

// A garbled journal member stops neither Reconcile nor the other shards:
// the expired entries of every shard are settled and the member reported.
func TestReconcileSkipsGarbledJournalMember(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	const items = 6
	for i := range items + 1 {
		testenv.Must(t, f.m.Init(ctx, f.key(i), 10), "Init")
	}
	// What a process killed between its Redis step and its ledger insert
	// leaves behind (reserve.lua's format): one unit taken, a pending op
	// record, a journal entry whose lease has passed.
	past := time.Now().Add(-time.Minute).UnixMilli()
	journals := map[string]bool{}
	for i := range items {
		key := f.itemKey(t, f.key(i))
		tag := key[:strings.Index(key, "}:")+2]
		rec := fmt.Sprintf("%so:%d:%s:d:killed", tag, len(f.key(i)), f.key(i))
		testenv.Must(t, f.rdb.HIncrBy(ctx, key, "a", -1).Err(), "take")
		testenv.Must(t, f.rdb.Set(ctx, rec, fmt.Sprintf("p:-1:9:77:%d", past), 0).Err(), "record")
		testenv.Must(t, f.rdb.ZAdd(ctx, tag+"journal", redis.Z{Score: float64(past), Member: rec}).Err(), "journal")
		journals[tag+"journal"] = true
	}
	// A member that names no op record, in every one of those journals.
	for j := range journals {
		testenv.Must(t, f.rdb.ZAdd(ctx, j, redis.Z{Member: "garbage member"}).Err(), "zadd")
	}
	// And an op record of another item holding something invgen never writes.
	k := f.itemKey(t, f.key(items))
	tag := k[:strings.Index(k, "}:")+2]
	junk := fmt.Sprintf("%so:%d:%s:d:junk", tag, len(f.key(items)), f.key(items))
	testenv.Must(t, f.rdb.Set(ctx, junk, "nonsense", 0).Err(), "set")
	testenv.Must(t, f.rdb.ZAdd(ctx, tag+"journal", redis.Z{Member: junk}).Err(), "zadd")

	rep, err := f.m.Reconcile(ctx)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if rep.Seen != items || rep.Voided != items || len(rep.Corrupt) != len(journals)+1 {
		t.Fatalf("Reconcile = %+v; want %d entries voided and %d corrupt members", rep, items, len(journals)+1)
	}
	for i := range items + 1 {
		if got := f.assertConserved(t, f.key(i)); got != 10 {
			t.Fatalf("%s: stock %d, want 10", f.key(i), got)
		}
	}
	if rep, err := f.m.Audit(ctx); err != nil || len(rep.Drift) != 0 || rep.Expired != 0 {
		t.Fatalf("Audit after Reconcile = %+v, %v; want nothing left", rep, err)
	}
}

// In the stream mode too, a wrong-type item key is its item's problem
// alone: Refresh rebuilds it, and the flusher acknowledges and trims the
// entries of that item like any other.
func TestStreamCorruptItemIsRepaired(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	testenv.Must(t, f.m.Init(ctx, "b", 10), "Init")
	for _, id := range []string{"a", "b"} {
		_, err := f.m.Decr(ctx, id, 2, "o1")
		testenv.Must(t, err, "Decr")
	}
	testenv.Must(t, f.rdb.Set(ctx, f.itemKey(t, "a"), "oops", 0).Err(), "garble")
	if n, err := f.flusher().Flush(ctx); err != nil || n != 2 {
		t.Fatalf("Flush = %d, %v; want both entries written", n, err)
	}
	if lag, err := f.flusher().FlushLag(ctx); err != nil || lag.Entries != 0 {
		t.Fatalf("FlushLag after Flush = %+v, %v; want nothing left", lag, err)
	}
	testenv.Must(t, f.m.Refresh(ctx, "a"), "Refresh of the garbled item")
	for _, id := range []string{"a", "b"} {
		if got := f.assertConserved(t, id); got != 8 {
			t.Fatalf("%s: stock %d, want 8", id, got)
		}
	}
}
