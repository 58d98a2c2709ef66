package contract

// The failure table of docs/contract.md: "a Redis key garbled (wrong
// type, a field that is not a number, a far-future fence, a junk journal
// member) ...
// Audit lists it as corrupt; Refresh(id) or the janitor with Repair
// rebuilds it". Every kind of garbling, in a prefix of 20 items.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// garbling is one way to break the Redis keys of one item.
type garbling struct {
	name   string
	garble func(ctx context.Context, f *fixture[string], id, key string) error
}

// farFence is a fence deadline a year ahead: no refresh sets one (the
// longest fence is 10 minutes).
func farFence() string {
	return strconv.FormatInt(time.Now().Add(24*365*time.Hour).UnixMilli(), 10)
}

// garblings lists every kind of garbling the model-based tester draws.
var garblings = []garbling{
	{"wrong type", func(ctx context.Context, f *fixture[string], _, key string) error {
		return f.rdb.Set(ctx, key, "oops", 0).Err()
	}},
	{"capacity missing", func(ctx context.Context, f *fixture[string], _, key string) error {
		return f.rdb.HDel(ctx, key, "c").Err()
	}},
	{"available missing", func(ctx context.Context, f *fixture[string], _, key string) error {
		return f.rdb.HDel(ctx, key, "a").Err()
	}},
	{"available not a number", func(ctx context.Context, f *fixture[string], _, key string) error {
		return f.rdb.HSet(ctx, key, "a", "x").Err()
	}},
	{"capacity not a number", func(ctx context.Context, f *fixture[string], _, key string) error {
		return f.rdb.HSet(ctx, key, "c", "x").Err()
	}},
	{"pending field not a number", func(ctx context.Context, f *fixture[string], _, key string) error {
		return f.rdb.HSet(ctx, key, "q", "x").Err()
	}},
	{"fence far in the future", func(ctx context.Context, f *fixture[string], _, key string) error {
		return f.rdb.HSet(ctx, key, "f", farFence(), "t", "someone").Err()
	}},
	{"fence far in the future, no stock", func(ctx context.Context, f *fixture[string], _, key string) error {
		if err := f.rdb.Del(ctx, key).Err(); err != nil {
			return err
		}
		return f.rdb.HSet(ctx, key, "f", farFence(), "t", "someone").Err()
	}},
	{"fence not a number", func(ctx context.Context, f *fixture[string], _, key string) error {
		return f.rdb.HSet(ctx, key, "f", "soon", "t", "someone").Err()
	}},
	{"junk journal member", func(ctx context.Context, f *fixture[string], id, key string) error {
		tag := key[:strings.Index(key, "}:")+2]
		member := fmt.Sprintf("%so:%d:%s:d:garbled", tag, len(id), id)
		pipe := f.rdb.TxPipeline()
		pipe.Set(ctx, member, "p:x:garbled", 0)
		pipe.ZAdd(ctx, tag+"journal", redis.Z{Score: 0, Member: member})
		_, err := pipe.Exec(ctx)
		return err
	}},
	{"journal member of the wrong type", func(ctx context.Context, f *fixture[string], id, key string) error {
		tag := key[:strings.Index(key, "}:")+2]
		member := fmt.Sprintf("%so:%d:%s:d:listed", tag, len(id), id)
		pipe := f.rdb.TxPipeline()
		pipe.RPush(ctx, member, "x")
		pipe.ZAdd(ctx, tag+"journal", redis.Z{Score: 0, Member: member})
		_, err := pipe.Exec(ctx)
		return err
	}},
}

// Audit names the garbled item, and only it, as corrupt; the janitor with
// Repair rebuilds it, and the item sells again without anyone calling
// Refresh.
func TestAuditAndJanitorSeeEveryGarbling(t *testing.T) {
	t.Run("sync", func(t *testing.T) { auditAndJanitorSeeEveryGarbling(t, stringFixture) })
	t.Run("stream", func(t *testing.T) { auditAndJanitorSeeEveryGarbling(t, streamFixture) })
}

func auditAndJanitorSeeEveryGarbling(t *testing.T, open func(testing.TB, ...invrt.Option) *fixture[string]) {
	const items = 20
	for _, g := range garblings {
		t.Run(g.name, func(t *testing.T) {
			f := open(t, invrt.WithBusyWait(200*time.Millisecond))
			ctx := ctxT(t)
			for i := range items {
				testenv.Must(t, f.m.Init(ctx, f.key(i), 10), "Init")
			}
			_, err := f.m.Decr(ctx, f.key(7), 3, "before")
			testenv.Must(t, err, "Decr")
			f.quiesce(t)
			f.flushed(t)
			bad := f.key(7)
			testenv.Must(t, g.garble(ctx, f, bad, f.itemKey(t, bad)), "garble")

			rep, err := f.m.Audit(ctx)
			if err != nil {
				t.Fatalf("Audit: %v", err)
			}
			if rep.Items != items {
				t.Fatalf("Audit compared %d items, want %d", rep.Items, items)
			}
			if len(rep.Drift) != 1 || rep.Drift[0].Item != bad || rep.Drift[0].Corrupt == "" {
				t.Fatalf("Audit drift = %+v; want %s, and only it, listed as corrupt", rep.Drift, bad)
			}

			// The janitor with Repair rebuilds it.
			jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			repaired := 0
			err = f.m.RunJanitor(jctx, invrt.JanitorConfig[string]{ReconcileEvery: time.Hour, AuditEvery: 20 * time.Millisecond, Repair: true,
				OnReport: func(r invrt.JanitorReport[string]) {
					if r.Err != nil {
						t.Logf("janitor round: %v", r.Err)
					}
					repaired += r.Repaired
					if r.Audit != nil && len(r.Audit.Drift) == 0 {
						cancel()
					}
				}})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("the janitor did not repair %s within 5s (%d repairs): %v", bad, repaired, err)
			}
			if repaired == 0 {
				t.Fatalf("the janitor found nothing to repair")
			}
			if rep, err := f.m.Audit(ctx); err != nil || len(rep.Drift) != 0 {
				t.Fatalf("Audit after the janitor = %+v, %v; want no drift", rep, err)
			}
			if r, err := f.m.Decr(ctx, bad, 1, "after"); err != nil || r.Available != 6 {
				t.Fatalf("Decr of the repaired item = %+v, %v; want 6 left", r, err)
			}
			f.flushed(t)
			for i := range items {
				f.assertConserved(t, f.key(i))
			}
		})
	}
}

// A purchase of an item whose fence lies beyond the longest fence any
// refresh takes does not wait for it: the fence is not invgen's, and the
// purchase repairs the item from the ledger and goes on. Nobody calls
// Refresh.
func TestAbsurdFenceDoesNotStopSales(t *testing.T) {
	for _, g := range garblings {
		if !strings.HasPrefix(g.name, "fence") {
			continue
		}
		t.Run(g.name, func(t *testing.T) {
			f := stringFixture(t, invrt.WithBusyWait(200*time.Millisecond))
			ctx := ctxT(t)
			testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
			testenv.Must(t, g.garble(ctx, f, "a", f.itemKey(t, "a")), "garble")
			if r, err := f.m.Decr(ctx, "a", 2, "o1"); err != nil || r.Available != 8 {
				t.Fatalf("Decr of an item with an absurd fence = %+v, %v; want it repaired and 8 left", r, err)
			}
			testenv.Must(t, g.garble(ctx, f, "a", f.itemKey(t, "a")), "garble again")
			if v, err := f.m.Get(ctx, "a"); err != nil || v != 8 {
				t.Fatalf("Get = %d, %v; want 8", v, err)
			}
			if r, err := f.m.Incr(ctx, "a", 1, "i1"); err != nil || r.Available != 9 {
				t.Fatalf("Incr of an item with an absurd fence = %+v, %v; want it repaired and 9", r, err)
			}
			f.assertConserved(t, "a")
		})
	}
}

// The same in one bucket of an item split into four: Audit names the item,
// the janitor rebuilds it, and every unit sells.
func TestAuditAndJanitorSeeEveryGarblingOfABucket(t *testing.T) {
	for _, g := range garblings {
		t.Run(g.name, func(t *testing.T) {
			f := stringFixture(t, invrt.WithBusyWait(200*time.Millisecond))
			ctx := ctxT(t)
			initBuckets(t, f, "y", 40, 4)
			for i := range 5 {
				testenv.Must(t, f.m.Init(ctx, f.key(i), 10), "Init")
			}
			var some string
			for k := range bucketStock(t, f, "y") {
				if some == "" || k > some {
					some = k
				}
			}
			testenv.Must(t, g.garble(ctx, f, "y", some), "garble")
			rep, err := f.m.Audit(ctx)
			if err != nil {
				t.Fatalf("Audit: %v", err)
			}
			if len(rep.Drift) != 1 || rep.Drift[0].Item != "y" || rep.Drift[0].Corrupt == "" {
				t.Fatalf("Audit drift = %+v; want y, and only it, listed as corrupt", rep.Drift)
			}
			jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			err = f.m.RunJanitor(jctx, invrt.JanitorConfig[string]{ReconcileEvery: time.Hour, AuditEvery: 20 * time.Millisecond, Repair: true,
				OnReport: func(r invrt.JanitorReport[string]) {
					if r.Audit != nil && len(r.Audit.Drift) == 0 {
						cancel()
					}
				}})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("the janitor did not repair y within 5s: %v", err)
			}
			for i := range 40 {
				if _, err := f.m.Decr(ctx, "y", 1, fmt.Sprint("buy", i)); err != nil {
					t.Fatalf("purchase %d of the repaired item: %v", i, err)
				}
			}
			if got := f.assertConserved(t, "y"); got != 0 {
				t.Fatalf("stock %d after selling every unit, want 0", got)
			}
		})
	}
}

// flushed writes the stream mode's unflushed entries to the ledger
// (nothing in the sync mode).
func (f *fixture[K]) flushed(t *testing.T) {
	t.Helper()
	if s, ok := f.m.(streamer); ok {
		if _, err := s.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	}
}
