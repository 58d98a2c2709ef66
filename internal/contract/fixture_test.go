package contract

import (
	"context"
	"crypto/sha1"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	mycoupon "github.com/invgen/invgen/examples/engines/mysql/coupon"
	mydrop "github.com/invgen/invgen/examples/engines/mysql/drop"
	myflashsale "github.com/invgen/invgen/examples/engines/mysql/flashsale"
	mygiftcard "github.com/invgen/invgen/examples/engines/mysql/giftcard"
	licoupon "github.com/invgen/invgen/examples/engines/sqlite/coupon"
	lidrop "github.com/invgen/invgen/examples/engines/sqlite/drop"
	liflashsale "github.com/invgen/invgen/examples/engines/sqlite/flashsale"
	ligiftcard "github.com/invgen/invgen/examples/engines/sqlite/giftcard"
	"github.com/invgen/invgen/examples/flashsale/inventory/coupon"
	"github.com/invgen/invgen/examples/flashsale/inventory/drop"
	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/examples/flashsale/inventory/giftcard"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// manager is what every generated Manager offers, for key type K.
type manager[K any] interface {
	Ping(ctx context.Context) error
	CreateTables(ctx context.Context) error
	TablesInitialized(ctx context.Context) (bool, error)
	Init(ctx context.Context, id K, qty int64) error
	Adjust(ctx context.Context, id K, delta int64, opKey string) (invrt.Result, error)
	Get(ctx context.Context, id K) (int64, error)
	Decr(ctx context.Context, id K, n int64, opKey string) (invrt.Result, error)
	Incr(ctx context.Context, id K, n int64, opKey string) (invrt.Result, error)
	Release(ctx context.Context, id K, opKey string) (invrt.Result, error)
	Refresh(ctx context.Context, id K) error
	RefreshAll(ctx context.Context) (int, error)
	Reconcile(ctx context.Context) (invrt.ReconcileReport, error)
	Audit(ctx context.Context) (invrt.AuditReport[K], error)
	RunJanitor(ctx context.Context, cfg invrt.JanitorConfig[K]) error
}

// streamer is what the Manager of a stream prefix offers besides.
type streamer interface {
	RunFlusher(ctx context.Context, cfg invrt.FlusherConfig) error
	Flush(ctx context.Context) (int, error)
	FlushLag(ctx context.Context) (invrt.FlushLag, error)
}

var _ streamer = (*drop.Manager)(nil)

// flusher is the fixture's manager as a stream prefix's.
func (f *fixture[K]) flusher() streamer { return f.m.(streamer) }

var (
	_ manager[string]    = (*flashsale.Manager)(nil)
	_ manager[int64]     = (*coupon.Manager)(nil)
	_ manager[uuid.UUID] = (*giftcard.Manager)(nil)
	_ manager[string]    = (*drop.Manager)(nil)
)

// fixture is one generated manager on its own namespace and schema. The
// engine is testenv.Engine(): on postgresql the manager is the package of
// examples/flashsale and pool is set; on mysql and sqlite it is the package
// of examples/engines and db is set.
type fixture[K comparable] struct {
	m          manager[K]
	rdb        redis.UniversalClient
	engine     string
	pool       *pgxpool.Pool
	db         *sql.DB
	ns         string
	key        func(i int) K // distinct valid keys
	modTable   string
	usageTable string
	// reopen builds another manager over the same namespace and schema,
	// with other options.
	reopen func(opts ...invrt.Option) manager[K]
}

// opener builds a fixture's manager: pg on PostgreSQL, sql (by engine) on
// the others.
type opener[K any] struct {
	pg  func(*pgxpool.Pool, redis.UniversalClient, ...invrt.Option) (manager[K], error)
	sql map[string]func(*sql.DB, redis.UniversalClient, ...invrt.Option) (manager[K], error)
}

var (
	openString = opener[string]{
		pg: func(p *pgxpool.Pool, r redis.UniversalClient, o ...invrt.Option) (manager[string], error) {
			return flashsale.New(p, r, o...)
		},
		sql: map[string]func(*sql.DB, redis.UniversalClient, ...invrt.Option) (manager[string], error){
			"mysql": func(d *sql.DB, r redis.UniversalClient, o ...invrt.Option) (manager[string], error) {
				return myflashsale.New(d, r, o...)
			},
			"sqlite": func(d *sql.DB, r redis.UniversalClient, o ...invrt.Option) (manager[string], error) {
				return liflashsale.New(d, r, o...)
			},
		},
	}
	openStream = opener[string]{
		pg: func(p *pgxpool.Pool, r redis.UniversalClient, o ...invrt.Option) (manager[string], error) {
			return drop.New(p, r, o...)
		},
		sql: map[string]func(*sql.DB, redis.UniversalClient, ...invrt.Option) (manager[string], error){
			"mysql": func(d *sql.DB, r redis.UniversalClient, o ...invrt.Option) (manager[string], error) {
				return mydrop.New(d, r, o...)
			},
			"sqlite": func(d *sql.DB, r redis.UniversalClient, o ...invrt.Option) (manager[string], error) {
				return lidrop.New(d, r, o...)
			},
		},
	}
	openInt64 = opener[int64]{
		pg: func(p *pgxpool.Pool, r redis.UniversalClient, o ...invrt.Option) (manager[int64], error) {
			return coupon.New(p, r, o...)
		},
		sql: map[string]func(*sql.DB, redis.UniversalClient, ...invrt.Option) (manager[int64], error){
			"mysql": func(d *sql.DB, r redis.UniversalClient, o ...invrt.Option) (manager[int64], error) {
				return mycoupon.New(d, r, o...)
			},
			"sqlite": func(d *sql.DB, r redis.UniversalClient, o ...invrt.Option) (manager[int64], error) {
				return licoupon.New(d, r, o...)
			},
		},
	}
	openUUID = opener[uuid.UUID]{
		pg: func(p *pgxpool.Pool, r redis.UniversalClient, o ...invrt.Option) (manager[uuid.UUID], error) {
			return giftcard.New(p, r, o...)
		},
		sql: map[string]func(*sql.DB, redis.UniversalClient, ...invrt.Option) (manager[uuid.UUID], error){
			"mysql": func(d *sql.DB, r redis.UniversalClient, o ...invrt.Option) (manager[uuid.UUID], error) {
				return mygiftcard.New(d, r, o...)
			},
			"sqlite": func(d *sql.DB, r redis.UniversalClient, o ...invrt.Option) (manager[uuid.UUID], error) {
				return ligiftcard.New(d, r, o...)
			},
		},
	}
)

func stringFixture(t testing.TB, opts ...invrt.Option) *fixture[string] {
	f := &fixture[string]{key: func(i int) string { return fmt.Sprintf("sku-%d", i) },
		modTable: flashsale.ModificationTable, usageTable: flashsale.UsageTable}
	return setup(t, f, openString, opts)
}

// stringFixtureOn is stringFixture on a Redis of the test's own.
func stringFixtureOn(t testing.TB, rdb *redis.Client, opts ...invrt.Option) *fixture[string] {
	f := &fixture[string]{key: func(i int) string { return fmt.Sprintf("sku-%d", i) },
		modTable: flashsale.ModificationTable, usageTable: flashsale.UsageTable, rdb: rdb}
	return setup(t, f, openString, opts)
}

// stringFixtureWith is stringFixture on a pool of its own, tuned by tune
// (a pool of one connection, for tests of pool pressure).
func stringFixtureWith(t testing.TB, tune func(*pgxpool.Config), opts ...invrt.Option) *fixture[string] {
	f := &fixture[string]{key: func(i int) string { return fmt.Sprintf("sku-%d", i) },
		modTable: flashsale.ModificationTable, usageTable: flashsale.UsageTable, pool: testenv.PoolWith(t, tune)}
	return setup(t, f, openString, opts)
}

// streamFixture is a string-keyed prefix on the stream ledger.
func streamFixture(t testing.TB, opts ...invrt.Option) *fixture[string] {
	f := &fixture[string]{key: func(i int) string { return fmt.Sprintf("sku-%d", i) },
		modTable: drop.ModificationTable, usageTable: drop.UsageTable}
	return setup(t, f, openStream, opts)
}

func int64Fixture(t testing.TB, opts ...invrt.Option) *fixture[int64] {
	f := &fixture[int64]{key: func(i int) int64 { return int64(i)*7919 - 50 },
		modTable: coupon.ModificationTable, usageTable: coupon.UsageTable}
	return setup(t, f, openInt64, opts)
}

func uuidFixture(t testing.TB, opts ...invrt.Option) *fixture[uuid.UUID] {
	f := &fixture[uuid.UUID]{key: func(i int) uuid.UUID {
		return uuid.NewHash(sha1.New(), uuid.NameSpaceOID, []byte(fmt.Sprint(i)), 5)
	}, modTable: giftcard.ModificationTable, usageTable: giftcard.UsageTable}
	return setup(t, f, openUUID, opts)
}

func setup[K comparable](t testing.TB, f *fixture[K], o opener[K], opts []invrt.Option) *fixture[K] {
	t.Helper()
	if f.rdb == nil {
		f.rdb = testenv.Redis(t)
	}
	f.engine = testenv.Engine()
	open := func(more ...invrt.Option) (manager[K], error) { return o.pg(f.pool, f.rdb, more...) }
	switch {
	case f.engine == "postgresql":
		if f.pool == nil {
			f.pool = testenv.Pool(t)
		}
	case o.sql[f.engine] != nil:
		if f.pool != nil {
			t.Fatalf("this test tunes a PostgreSQL pool: run it with INVGEN_ENGINE=postgresql")
		}
		f.db = testenv.SQLDB(t, f.engine)
		open = func(more ...invrt.Option) (manager[K], error) { return o.sql[f.engine](f.db, f.rdb, more...) }
	default:
		t.Fatalf("INVGEN_ENGINE=%q: the engine is postgresql, mysql or sqlite", f.engine)
	}
	f.ns = testenv.Namespace(t, f.rdb)
	f.reopen = func(more ...invrt.Option) manager[K] {
		all := append([]invrt.Option{invrt.WithNamespace(f.ns)}, more...)
		m, err := open(all...)
		testenv.Must(t, err, "New")
		return m
	}
	f.m = f.reopen(opts...)
	testenv.Must(t, f.m.CreateTables(context.Background()), "CreateTables")
	return f
}

// eachKey runs a test once per key type, each on a fixture of its own.
func eachKey(t *testing.T,
	s func(*testing.T, *fixture[string]),
	i func(*testing.T, *fixture[int64]),
	u func(*testing.T, *fixture[uuid.UUID]),
) {
	t.Run("string", func(t *testing.T) { s(t, stringFixture(t)) })
	t.Run("int64", func(t *testing.T) { i(t, int64Fixture(t)) })
	t.Run("uuid", func(t *testing.T) { u(t, uuidFixture(t)) })
}

func ctxT(t *testing.T) context.Context { return testenv.Context(t, 2*time.Minute) }

// ledger returns what the SQL ledger says of item, by plain SQL that does
// not go through the code under test: capacity and available.
func (f *fixture[K]) ledger(t *testing.T, item K) (capacity, available int64) {
	t.Helper()
	capacity = sumSQL(t, f, "SELECT COALESCE(SUM(delta),0) FROM "+f.modTable+" WHERE item_id = $1 AND state = 'committed'", item)
	used := sumSQL(t, f, "SELECT COALESCE(SUM(delta),0) FROM "+f.usageTable+" WHERE item_id = $1 AND state = 'committed'", item)
	return capacity, capacity + used
}

// assertConserved checks I2 for item: Redis available == Σ modifications +
// Σ committed usage, and returns the stock.
func (f *fixture[K]) assertConserved(t *testing.T, item K) int64 {
	t.Helper()
	got, err := f.m.Get(context.Background(), item)
	if err != nil {
		t.Fatalf("Get(%v): %v", item, err)
	}
	_, want := f.ledger(t, item)
	if got != want {
		t.Fatalf("item %v: Redis has %d available, the ledger says %d", item, got, want)
	}
	return got
}

// quiesce waits until every journal entry of the namespace is cleared:
// sync changes clear theirs just after they return.
func (f *fixture[K]) quiesce(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	for i := 0; ; i++ {
		keys, err := testenv.Keys(ctx, f.rdb, f.ns)
		testenv.Must(t, err, "keys")
		busy := false
		for _, k := range keys {
			if strings.HasSuffix(k, "}:journal") {
				busy = true
			}
		}
		if !busy {
			return
		}
		if i == 200 {
			t.Fatalf("journal entries still pending after 2s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// snapshot is everything the fixture's namespace and tables hold, to prove
// that a refused call wrote nothing.
func (f *fixture[K]) snapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	keys, err := testenv.Keys(ctx, f.rdb, f.ns)
	testenv.Must(t, err, "keys")
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if strings.HasSuffix(k, "}:epoch") {
			// A server's gate (gate.go): opened on the first call that
			// reaches it, whatever the call; not inventory.
			continue
		}
		switch typ := f.rdb.Type(ctx, k).Val(); typ {
		case "hash":
			m := f.rdb.HGetAll(ctx, k).Val()
			fields := make([]string, 0, len(m))
			for fk, fv := range m {
				fields = append(fields, fk+"="+fv)
			}
			sort.Strings(fields)
			fmt.Fprintf(&b, "%s hash %v\n", k, fields)
		case "zset":
			fmt.Fprintf(&b, "%s zset %v\n", k, f.rdb.ZRangeWithScores(ctx, k, 0, -1).Val())
		default:
			fmt.Fprintf(&b, "%s %s\n", k, typ)
		}
	}
	for _, tbl := range []string{f.modTable, f.usageTable} {
		n := sumSQL(t, f, "SELECT count(*) FROM "+tbl)
		maxID := sumSQL(t, f, "SELECT COALESCE(max(id),0) FROM "+tbl)
		fmt.Fprintf(&b, "%s rows=%d max_id=%d\n", tbl, n, maxID)
	}
	return b.String()
}
