package contract

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	myflashsale "github.com/invgen/invgen/examples/engines/mysql/flashsale"
	liflashsale "github.com/invgen/invgen/examples/engines/sqlite/flashsale"
	"github.com/invgen/invgen/examples/flashsale/inventory/drop"
	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	flashdb "github.com/invgen/invgen/examples/flashsale/inventory/flashsale/db"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// flashLedger is the flash_sale prefix's ledger over its sqlc queries, as
// the generated package has it, so that a test can build a runtime.Core of
// that prefix with another layout (shards, ledger mode) than the spec's.
type flashLedger struct {
	pool *pgxpool.Pool
	q    *flashdb.Queries
}

func (l flashLedger) CreateTables(ctx context.Context) error {
	schema, err := os.ReadFile("../../examples/flashsale/inventory/flashsale/schema.sql")
	if err != nil {
		return err
	}
	_, err = l.pool.Exec(ctx, string(schema))
	return err
}

// Acquire uses the pool for every statement: this ledger does not need to
// tell a statement never sent apart.
func (l flashLedger) Acquire(context.Context) (invrt.Ledger[string], func(), error) {
	return l, func() {}, nil
}

func (l flashLedger) TablesInitialized(ctx context.Context) (bool, error) {
	return l.q.TablesInitialized(ctx)
}

func flashParams(e invrt.Entry[string]) flashdb.InsertUsageParams {
	return flashdb.InsertUsageParams{ItemID: e.Item, Delta: e.Delta, Kind: string(e.Kind), OpKey: e.OpKey, Attempt: e.Attempt}
}

func (l flashLedger) Insert(ctx context.Context, e invrt.Entry[string]) error {
	if e.Kind.Modification() {
		return l.q.InsertModification(ctx, flashdb.InsertModificationParams(flashParams(e)))
	}
	return l.q.InsertUsage(ctx, flashParams(e))
}

func (l flashLedger) Void(ctx context.Context, e invrt.Entry[string]) (invrt.Row, error) {
	if e.Kind.Modification() {
		r, err := l.q.VoidModification(ctx, flashdb.VoidModificationParams(flashParams(e)))
		return invrt.Row{State: invrt.State(r.State), Delta: r.Delta, Attempt: r.Attempt}, err
	}
	r, err := l.q.VoidUsage(ctx, flashdb.VoidUsageParams(flashParams(e)))
	return invrt.Row{State: invrt.State(r.State), Delta: r.Delta, Attempt: r.Attempt}, err
}

func (l flashLedger) Lookup(ctx context.Context, item string, kind invrt.Kind, opKey string) (invrt.Row, bool, error) {
	var (
		r   flashdb.LookupUsageRow
		err error
	)
	if kind.Modification() {
		var m flashdb.LookupModificationRow
		m, err = l.q.LookupModification(ctx, flashdb.LookupModificationParams{ItemID: item, Kind: string(kind), OpKey: opKey})
		r = flashdb.LookupUsageRow(m)
	} else {
		r, err = l.q.LookupUsage(ctx, flashdb.LookupUsageParams{ItemID: item, Kind: string(kind), OpKey: opKey})
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return invrt.Row{}, false, nil
	}
	return invrt.Row{State: invrt.State(r.State), Delta: r.Delta, Attempt: r.Attempt}, err == nil, err
}

func (l flashLedger) Totals(ctx context.Context, item string) (invrt.Totals[string], bool, error) {
	r, err := l.q.ItemTotals(ctx, item)
	return invrt.Totals[string]{Item: item, Capacity: r.Capacity, Available: r.Capacity + r.Used}, r.Found, err
}

func (l flashLedger) Items(ctx context.Context, after string, first bool, limit int) ([]invrt.Totals[string], error) {
	rows, err := l.q.ItemTotalsPage(ctx, flashdb.ItemTotalsPageParams{First: first, After: after, PageSize: int32(limit)})
	out := make([]invrt.Totals[string], len(rows))
	for i, r := range rows {
		out[i] = invrt.Totals[string]{Item: r.ItemID, Capacity: r.Capacity, Available: r.Capacity + r.Used}
	}
	return out, err
}

func (l flashLedger) Flush(ctx context.Context, b *invrt.Batch) ([]string, error) {
	return l.q.FlushUsage(ctx, flashdb.FlushUsageParams{Items: b.Items, Deltas: b.Deltas, Kinds: b.Kinds, OpKeys: b.OpKeys, Attempts: b.Attempts})
}

func flashRecord(r flashdb.LoadLayoutRow) invrt.LayoutRecord {
	return invrt.LayoutRecord{Layout: invrt.Layout{Namespace: r.Namespace, Shards: int(r.Shards), Ledger: r.LedgerMode,
		KeyType: r.KeyType, MaxKeyLen: int(r.MaxKeyLen)}, Retired: r.Retired, Version: r.Version}
}

func (l flashLedger) RecordLayout(ctx context.Context, w invrt.Layout) (invrt.LayoutRecord, error) {
	r, err := l.q.RecordLayout(ctx, flashdb.RecordLayoutParams{Namespace: w.Namespace, Shards: int32(w.Shards),
		LedgerMode: w.Ledger, KeyType: w.KeyType, MaxKeyLen: int32(w.MaxKeyLen)})
	return flashRecord(flashdb.LoadLayoutRow(r)), err
}

func (l flashLedger) LoadLayout(ctx context.Context) (invrt.LayoutRecord, bool, error) {
	r, err := l.q.LoadLayout(ctx)
	if errors.Is(err, pgx.ErrNoRows) {
		return invrt.LayoutRecord{}, false, nil
	}
	return flashRecord(r), err == nil, err
}

func (l flashLedger) RetireLayout(ctx context.Context, version int64) (bool, error) {
	n, err := l.q.RetireLayout(ctx, version)
	return n == 1, err
}

func (l flashLedger) ReplaceLayout(ctx context.Context, version int64, w invrt.Layout) (bool, error) {
	n, err := l.q.ReplaceLayout(ctx, flashdb.ReplaceLayoutParams{Namespace: w.Namespace, Shards: int32(w.Shards),
		LedgerMode: w.Ledger, KeyType: w.KeyType, MaxKeyLen: int32(w.MaxKeyLen), Version: version})
	return n == 1, err
}

// flashCore is a Core of prefix flash_sale with the given layout.
func flashCore(t testing.TB, pool *pgxpool.Pool, rdb redis.UniversalClient, ns string, shards int, stream bool, maxKeyLen int, opts ...invrt.Option) *invrt.Core[string] {
	t.Helper()
	l := flashLedger{pool: pool, q: flashdb.New(pool)}
	c, err := invrt.NewCore(invrt.Config[string]{
		Namespace: ns, Prefix: flashsale.Prefix, Shards: shards, Stream: stream,
		Codec: invrt.StringCodec{MaxLen: maxKeyLen}, KeyType: "string", MaxKeyLen: maxKeyLen,
		Ledger: l, Layouts: l, DB: pool, Redis: rdb,
	}, opts...)
	testenv.Must(t, err, "NewCore")
	return c
}

var _ manager[string] = (*invrt.Core[string])(nil)

// everyCall is one call of each method of a manager, on item id.
func everyCall(id string) map[string]func(context.Context, manager[string]) error {
	return map[string]func(context.Context, manager[string]) error{
		"Ping":         func(ctx context.Context, m manager[string]) error { return m.Ping(ctx) },
		"CreateTables": func(ctx context.Context, m manager[string]) error { return m.CreateTables(ctx) },
		"Init":         func(ctx context.Context, m manager[string]) error { return m.Init(ctx, "new-"+id, 5) },
		"Get":          func(ctx context.Context, m manager[string]) error { _, err := m.Get(ctx, id); return err },
		"Decr": func(ctx context.Context, m manager[string]) error {
			_, err := m.Decr(ctx, id, 1, "other-1")
			return err
		},
		"Incr": func(ctx context.Context, m manager[string]) error {
			_, err := m.Incr(ctx, id, 1, "other-2")
			return err
		},
		"Release": func(ctx context.Context, m manager[string]) error { _, err := m.Release(ctx, id, "mine-1"); return err },
		"Adjust": func(ctx context.Context, m manager[string]) error {
			_, err := m.Adjust(ctx, id, 5, "other-3")
			return err
		},
		"Refresh":    func(ctx context.Context, m manager[string]) error { return m.Refresh(ctx, id) },
		"RefreshAll": func(ctx context.Context, m manager[string]) error { _, err := m.RefreshAll(ctx); return err },
		"Reconcile":  func(ctx context.Context, m manager[string]) error { _, err := m.Reconcile(ctx); return err },
		"Audit":      func(ctx context.Context, m manager[string]) error { _, err := m.Audit(ctx); return err },
		// Long-running calls: a refusal returns at once, anything else by
		// the deadline.
		"RunJanitor": func(ctx context.Context, m manager[string]) error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return m.RunJanitor(ctx, invrt.JanitorConfig[string]{ReconcileEvery: time.Millisecond})
		},
		"RunFlusher": func(ctx context.Context, m manager[string]) error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			s, err := asStreamer(m)
			if err != nil {
				return err
			}
			return s.RunFlusher(ctx, invrt.FlusherConfig{})
		},
		"Flush": func(ctx context.Context, m manager[string]) error {
			s, err := asStreamer(m)
			if err == nil {
				_, err = s.Flush(ctx)
			}
			return err
		},
		"FlushLag": func(ctx context.Context, m manager[string]) error {
			s, err := asStreamer(m)
			if err == nil {
				_, err = s.FlushLag(ctx)
			}
			return err
		},
	}
}

// asStreamer is m as a stream prefix's manager, or errNoSuchCall.
func asStreamer(m manager[string]) (streamer, error) {
	if s, ok := m.(streamer); ok {
		return s, nil
	}
	return nil, errNoSuchCall
}

// errNoSuchCall: the manager has no such method (a sync prefix's has no
// stream methods).
var errNoSuchCall = errors.New("no such call")

// Two processes of one prefix with different layouts: the second is
// refused on every call, twice over (the refusal is cached, not forgotten),
// with an error that names both layouts; it writes nothing anywhere, and
// the first sells the stock exactly once.
func TestLayoutMismatchRefused(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", 10), "Init")
	_, err := f.m.Decr(ctx, "hot", 1, "mine-1")
	testenv.Must(t, err, "Decr")
	recorded := invrt.Layout{Namespace: f.ns, Shards: flashsale.Shards, Ledger: "sync", KeyType: "string", MaxKeyLen: flashsale.MaxKeyLen}

	other := testenv.Namespace(t, f.rdb)
	byNamespace, err := flashsale.New(f.pool, f.rdb, flashsale.WithNamespace(other))
	testenv.Must(t, err, "New")
	variants := []struct {
		name string
		m    manager[string]
		has  invrt.Layout
	}{
		{"namespace", byNamespace, invrt.Layout{Namespace: other, Shards: 16, Ledger: "sync", KeyType: "string", MaxKeyLen: 64}},
		{"shards", flashCore(t, f.pool, f.rdb, f.ns, 4, false, 64), invrt.Layout{Namespace: f.ns, Shards: 4, Ledger: "sync", KeyType: "string", MaxKeyLen: 64}},
		{"ledger mode", flashCore(t, f.pool, f.rdb, f.ns, 16, true, 64), invrt.Layout{Namespace: f.ns, Shards: 16, Ledger: "stream", KeyType: "string", MaxKeyLen: 64}},
		{"max key length", flashCore(t, f.pool, f.rdb, f.ns, 16, false, 32), invrt.Layout{Namespace: f.ns, Shards: 16, Ledger: "sync", KeyType: "string", MaxKeyLen: 32}},
	}
	f.quiesce(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			before := f.snapshot(t)
			for round := range 2 {
				for name, call := range everyCall("hot") {
					err := call(ctx, v.m)
					switch {
					case errors.Is(err, errNoSuchCall):
					case !errors.Is(err, invrt.ErrLayoutMismatch):
						t.Errorf("round %d: %s: err = %v, want ErrLayoutMismatch", round, name, err)
					case !strings.Contains(err.Error(), recorded.String()) || !strings.Contains(err.Error(), v.has.String()):
						t.Errorf("%s: error %q does not name both layouts (%s; %s)", name, err, recorded, v.has)
					}
				}
			}
			if after := f.snapshot(t); after != before {
				t.Errorf("a refused manager wrote:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if keys, _ := testenv.Keys(ctx, f.rdb, other); len(keys) > 0 {
				t.Errorf("a refused manager wrote Redis keys %v", keys)
			}
		})
	}
	// The recorded layout's manager still sells the rest, once.
	for i := range 9 {
		_, err := f.m.Decr(ctx, "hot", 1, fmt.Sprint("mine-", i+2))
		testenv.Must(t, err, "Decr %d", i)
	}
	if _, err := f.m.Decr(ctx, "hot", 1, "mine-11"); !errors.Is(err, invrt.ErrInsufficientStock) {
		t.Fatalf("11th unit: err = %v, want ErrInsufficientStock", err)
	}
	if _, avail := f.ledger(t, "hot"); avail != 0 {
		t.Fatalf("ledger stock %d, want 0", avail)
	}
	f.assertConserved(t, "hot")
}

// New makes no call; without a recorded layout Ping passes, the first call
// fails, and CreateTables records the layout.
func TestLayoutFirstUseNeedsCreateTables(t *testing.T) {
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	pool := testenv.Pool(t)
	ctx := ctxT(t)
	m, err := flashsale.New(pool, rdb, flashsale.WithNamespace(ns))
	testenv.Must(t, err, "New")
	testenv.Must(t, m.Ping(ctx), "Ping before CreateTables")
	if _, err := m.Get(ctx, "a"); !errors.Is(err, invrt.ErrLayoutMismatch) || !strings.Contains(err.Error(), "CreateTables") {
		t.Fatalf("Get before CreateTables: err = %v, want ErrLayoutMismatch telling to run CreateTables", err)
	}
	testenv.Must(t, m.CreateTables(ctx), "CreateTables")
	testenv.Must(t, m.Init(ctx, "a", 1), "Init")
	var ns2 string
	testenv.Must(t, pool.QueryRow(ctx, "SELECT namespace FROM "+flashsale.LayoutTable).Scan(&ns2), "layout row")
	if ns2 != ns {
		t.Fatalf("recorded namespace %q, want %q", ns2, ns)
	}
}

// A process whose layout is retired stops within LayoutRecheck, while it
// is busy selling.
func TestLayoutRetiredStopsWithinBound(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", 1_000_000), "Init")
	for i := range 20 {
		_, err := f.m.Decr(ctx, "hot", 1, fmt.Sprint("warm-", i))
		testenv.Must(t, err, "Decr")
	}
	store := flashLedger{pool: f.pool, q: flashdb.New(f.pool)}
	rec, _, err := store.LoadLayout(ctx)
	testenv.Must(t, err, "LoadLayout")
	ok, err := store.RetireLayout(ctx, rec.Version)
	if err != nil || !ok {
		t.Fatalf("RetireLayout = %v, %v", ok, err)
	}
	retired := time.Now()
	for i := 0; ; i++ {
		_, err := f.m.Decr(ctx, "hot", 1, fmt.Sprint("after-", i))
		if errors.Is(err, invrt.ErrLayoutMismatch) {
			if !strings.Contains(err.Error(), "retired") {
				t.Fatalf("refusal %q does not say the layout is retired", err)
			}
			break
		}
		testenv.Must(t, err, "Decr")
		if time.Since(retired) > invrt.LayoutRecheck+250*time.Millisecond {
			t.Fatalf("still selling %v after its layout was retired (bound %v)", time.Since(retired), invrt.LayoutRecheck)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for name, call := range everyCall("hot") {
		if err := call(ctx, f.m); !errors.Is(err, invrt.ErrLayoutMismatch) && !errors.Is(err, errNoSuchCall) {
			t.Errorf("%s after retirement: err = %v, want ErrLayoutMismatch", name, err)
		}
	}
	f.quiesce(t)
	_, avail := f.ledger(t, "hot")
	if got := f.rdb.HGet(ctx, redisItemKey(f.ns, "hot"), "a").Val(); got != fmt.Sprint(avail) {
		t.Fatalf("Redis %s, ledger %d", got, avail)
	}
}

// redisItemKey is the Redis key of a flash_sale item under the spec's shard
// count (FNV-1a of the key, as the runtime's keyspace has it).
func redisItemKey(ns, item string) string {
	h := uint32(2166136261)
	for i := 0; i < len(item); i++ {
		h ^= uint32(item[i])
		h *= 16777619
	}
	return fmt.Sprintf("%s:{%s:%d}:item:%s", ns, flashsale.Prefix, h%flashsale.Shards, item)
}

// The rolling deploy, done right: 16 shards become 4 in the same
// namespace while buyers buy through both builds. The old build sells
// until the switch retires its layout, the new one from when it records
// its own; no unit is sold twice or lost, every other item moves too, and
// a retry of a purchase made under the old layout is a replay under the new.
func TestLayoutSwitchUnderTraffic(t *testing.T) {
	const stock = 5000
	f := stringFixture(t, invrt.WithLease(time.Second))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", stock), "Init")
	for i := range 20 {
		testenv.Must(t, f.m.Init(ctx, fmt.Sprint("sku-", i), 5), "Init")
	}
	next := flashCore(t, f.pool, f.rdb, f.ns, 4, false, 64, invrt.WithLease(time.Second))

	var (
		sold       sync.Map // op key -> which build sold it
		oldN, newN atomic.Int64
		refused    atomic.Int64
		bad        atomic.Value
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				op := fmt.Sprintf("g%d-%d", g, i)
				m, which := manager[string](f.m), "old"
				if (g+i)%2 == 1 {
					m, which = next, "new"
				}
				_, err := m.Decr(ctx, "hot", 1, op)
				switch {
				case err == nil:
					sold.Store(op, which)
					if which == "old" {
						oldN.Add(1)
					} else {
						newN.Add(1)
					}
				case errors.Is(err, invrt.ErrLayoutMismatch):
					refused.Add(1)
					time.Sleep(time.Millisecond)
				case errors.Is(err, invrt.ErrInsufficientStock):
				default:
					bad.CompareAndSwap(nil, fmt.Errorf("%s Decr %s: %w", which, op, err))
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	sw, err := next.SwitchLayout(ctx)
	testenv.Must(t, err, "SwitchLayout")
	oldAtSwitch := oldN.Load()
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	if e, _ := bad.Load().(error); e != nil {
		t.Fatal(e)
	}
	if sw.From.Shards != 16 || sw.To.Shards != 4 || sw.Refreshed != 21 {
		t.Fatalf("switch = %+v; want 16 -> 4 shards, 21 items rebuilt", sw)
	}
	if oldAtSwitch == 0 || newN.Load() == 0 || oldN.Load() != oldAtSwitch {
		t.Fatalf("old build sold %d (%d by the end of the switch), new build %d; want both > 0 and none by the old after", oldAtSwitch, oldN.Load(), newN.Load())
	}
	var units int64
	var anOld string
	sold.Range(func(k, v any) bool {
		units++
		if v == "old" {
			anOld = k.(string)
		}
		return true
	})
	_, avail := f.ledger(t, "hot")
	if avail != stock-units {
		t.Fatalf("ledger stock %d; %d units sold of %d", avail, units, stock)
	}
	if used := sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE state = 'committed'"); used != units {
		t.Fatalf("%d usage rows for %d purchases", used, units)
	}
	got, err := next.Get(ctx, "hot")
	if err != nil || got != avail {
		t.Fatalf("new layout: Redis %d (%v), ledger %d", got, err, avail)
	}
	for i := range 20 {
		if v, err := next.Get(ctx, fmt.Sprint("sku-", i)); err != nil || v != 5 {
			t.Fatalf("sku-%d under the new layout: %d, %v", i, v, err)
		}
	}
	r, err := next.Decr(ctx, "hot", 1, anOld)
	if err != nil || !r.Replayed {
		t.Fatalf("retry of %s under the new layout = %+v, %v; want a replay", anOld, r, err)
	}
	if _, err := f.m.Get(ctx, "hot"); !errors.Is(err, invrt.ErrLayoutMismatch) {
		t.Fatalf("old build after the switch: err = %v, want ErrLayoutMismatch", err)
	}
	if a, err := next.Audit(ctx); err != nil || len(a.Drift) > 0 {
		t.Fatalf("Audit after the switch = %+v, %v", a, err)
	}
	t.Logf("sold %d under 16 shards, %d under 4; %d calls refused", oldAtSwitch, newN.Load(), refused.Load())
}

// stream -> sync: an entry the flusher has not written is not stranded. A
// switch refuses while stream entries are older than LayoutRecheck (no
// flusher runs), and writes the fresh ones itself, so Redis under the sync
// layout is rebuilt from a ledger that holds every purchase.
func TestLayoutSwitchStreamToSync(t *testing.T) {
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	pool := testenv.Pool(t)
	ctx := ctxT(t)
	old := flashCore(t, pool, rdb, ns, 16, true, 64)
	testenv.Must(t, old.CreateTables(ctx), "CreateTables")
	testenv.Must(t, old.Init(ctx, "hot", 10), "Init")
	for i := range 3 {
		_, err := old.Decr(ctx, "hot", 1, fmt.Sprint("o", i))
		testenv.Must(t, err, "Decr")
	}
	syncM, err := flashsale.New(pool, rdb, flashsale.WithNamespace(ns))
	testenv.Must(t, err, "New")
	time.Sleep(invrt.LayoutRecheck + 100*time.Millisecond)
	_, err = syncM.SwitchLayout(ctx)
	if !errors.Is(err, invrt.ErrBusy) || !strings.Contains(err.Error(), "flusher") {
		t.Fatalf("switch with stale unflushed entries: err = %v, want ErrBusy asking for the flusher", err)
	}
	if _, err := old.Decr(ctx, "hot", 1, "o3"); err != nil {
		t.Fatalf("the refused switch left the old layout unusable: %v", err)
	}
	n, err := old.Flush(ctx)
	if err != nil || n != 4 {
		t.Fatalf("Flush = %d, %v", n, err)
	}
	// One more purchase the flusher has not seen: the switch writes it.
	_, err = old.Decr(ctx, "hot", 2, "o4")
	testenv.Must(t, err, "Decr")
	sw, err := syncM.SwitchLayout(ctx)
	testenv.Must(t, err, "SwitchLayout")
	if sw.From.Ledger != "stream" || sw.To.Ledger != "sync" {
		t.Fatalf("switch = %+v", sw)
	}
	used := testenv.Sum(t, pool, "SELECT COALESCE(SUM(delta),0)::bigint FROM "+flashsale.UsageTable+" WHERE state = 'committed'")
	if used != -6 {
		t.Fatalf("ledger usage %d, want -6", used)
	}
	if got, err := syncM.Get(ctx, "hot"); err != nil || got != 4 {
		t.Fatalf("sync layout: Get = %d, %v; want 4", got, err)
	}
	if _, err := old.Decr(ctx, "hot", 1, "o5"); !errors.Is(err, invrt.ErrLayoutMismatch) {
		t.Fatalf("stream build after the switch: err = %v", err)
	}
	r, err := syncM.Decr(ctx, "hot", 4, "s1")
	if err != nil || r.Available != 0 {
		t.Fatalf("Decr under sync = %+v, %v", r, err)
	}
}

// A pgx.Tx passed as the pool is refused by New: the manager commits each
// change itself and could not undo Redis when the transaction rolls back.
// TestNewRefusesSQLTx: a *sql.Tx of the mysql and sqlite engines is refused
// like a pgx transaction, whatever INVGEN_ENGINE says.
func TestNewRefusesSQLTx(t *testing.T) {
	rdb := testenv.Redis(t)
	ctx := ctxT(t)
	for _, engine := range []string{"mysql", "sqlite"} {
		t.Run(engine, func(t *testing.T) {
			db := testenv.SQLDB(t, engine)
			tx, err := db.BeginTx(ctx, nil)
			testenv.Must(t, err, "Begin")
			defer tx.Rollback()
			var newErr, poolErr error
			if engine == "mysql" {
				_, newErr = myflashsale.New(tx, rdb)
				_, poolErr = myflashsale.New(db, rdb)
			} else {
				_, newErr = liflashsale.New(tx, rdb)
				_, poolErr = liflashsale.New(db, rdb)
			}
			if !errors.Is(newErr, invrt.ErrInvalidArgument) || !strings.Contains(newErr.Error(), "transaction") {
				t.Fatalf("New(*sql.Tx) err = %v, want ErrInvalidArgument naming the transaction", newErr)
			}
			if poolErr != nil {
				t.Fatalf("New(*sql.DB): %v", poolErr)
			}
		})
	}
}

func TestNewRefusesTx(t *testing.T) {
	rdb := testenv.Redis(t)
	pool := testenv.Pool(t)
	ctx := ctxT(t)
	tx, err := pool.Begin(ctx)
	testenv.Must(t, err, "Begin")
	defer tx.Rollback(ctx)
	_, err = flashsale.New(tx, rdb)
	if !errors.Is(err, invrt.ErrInvalidArgument) || !strings.Contains(err.Error(), "transaction") {
		t.Fatalf("flashsale.New(tx) err = %v, want ErrInvalidArgument naming the transaction", err)
	}
	if _, err := drop.New(tx, rdb); !errors.Is(err, invrt.ErrInvalidArgument) {
		t.Fatalf("drop.New(tx) err = %v, want ErrInvalidArgument", err)
	}
	conn, err := pool.Acquire(ctx)
	testenv.Must(t, err, "Acquire")
	defer conn.Release()
	ctx2, err := conn.Begin(ctx)
	testenv.Must(t, err, "Begin on a connection")
	defer ctx2.Rollback(ctx)
	if _, err := flashsale.New(ctx2, rdb); !errors.Is(err, invrt.ErrInvalidArgument) {
		t.Fatalf("New(tx of a connection) err = %v", err)
	}
	if _, err := flashsale.New(pool, rdb); err != nil {
		t.Fatalf("New(pool): %v", err)
	}
}
