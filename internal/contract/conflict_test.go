package contract

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"

	myflashsale "github.com/invgen/invgen/examples/engines/mysql/flashsale"
	liflashsale "github.com/invgen/invgen/examples/engines/sqlite/flashsale"
	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// TestLedgerConflictIsRetried: a purchase whose usage row loses to another
// transaction (a lock wait that times out on PostgreSQL and MySQL, a busy
// file on SQLite), which wrote nothing, is sent again and succeeds once the
// other transaction ends, instead of failing the buyer. A crowd on InnoDB
// meets deadlocks this way in ordinary traffic.
func TestLedgerConflictIsRetried(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	const hold = 1500 * time.Millisecond
	var (
		m interface {
			CreateTables(context.Context) error
			Init(context.Context, string, int64) error
			Decr(context.Context, string, int64, string) (invrt.Result, error)
			Get(context.Context, string) (int64, error)
		}
		lock  func(ctx context.Context) (release func(), err error)
		count func() int64
		err   error
	)
	opts := []invrt.Option{invrt.WithNamespace(ns), invrt.WithLease(30 * time.Second)}
	switch engine := testenv.Engine(); engine {
	case "postgresql":
		// The manager's statements give up a lock wait after 400ms.
		pool := testenv.PoolWith(t, func(c *pgxpool.Config) { c.ConnConfig.RuntimeParams["lock_timeout"] = "400ms" })
		m, err = flashsale.New(pool, rdb, opts...)
		lock = func(ctx context.Context) (func(), error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return nil, err
			}
			if _, err := tx.Exec(ctx, "LOCK TABLE "+flashsale.UsageTable+" IN ACCESS EXCLUSIVE MODE"); err != nil {
				tx.Rollback(ctx)
				return nil, err
			}
			return func() { tx.Rollback(context.Background()) }, nil
		}
		count = func() int64 {
			return testenv.Sum(t, pool, "SELECT count(*) FROM "+flashsale.UsageTable+" WHERE op_key = 'o1' AND state = 'committed'")
		}
	case "mysql":
		// The manager's statements give up a row lock wait after 1s.
		cfg, perr := mysql.ParseDSN(testenv.SQLDSN(t, "mysql"))
		testenv.Must(t, perr, "dsn")
		cfg.Params = map[string]string{"innodb_lock_wait_timeout": "1"}
		db, oerr := sql.Open("mysql", cfg.FormatDSN())
		testenv.Must(t, oerr, "open")
		t.Cleanup(func() { db.Close() })
		m, err = myflashsale.New(db, rdb, opts...)
		lock = func(ctx context.Context) (func(), error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			// A gap lock where the purchase's row goes.
			if _, err := tx.ExecContext(ctx, "SELECT id FROM "+myflashsale.UsageTable+" WHERE item_id = 'sku' AND kind = 'decr' AND op_key = 'o1' FOR UPDATE"); err != nil {
				tx.Rollback()
				return nil, err
			}
			return func() { tx.Rollback() }, nil
		}
		count = func() int64 {
			return testenv.SumSQL(t, db, "SELECT count(*) FROM "+myflashsale.UsageTable+" WHERE op_key = 'o1' AND state = 'committed'")
		}
	case "sqlite":
		// The manager's statements give up on a busy file after 400ms.
		file := testenv.SQLDSN(t, "sqlite")
		db, oerr := sql.Open("sqlite3", "file:"+file+"?_pragma=busy_timeout(400)&_pragma=journal_mode(wal)")
		testenv.Must(t, oerr, "open")
		t.Cleanup(func() { db.Close() })
		m, err = liflashsale.New(db, rdb, opts...)
		lock = sqliteWriteLock(db)
		count = func() int64 {
			return testenv.SumSQL(t, db, "SELECT count(*) FROM "+liflashsale.UsageTable+" WHERE op_key = 'o1' AND state = 'committed'")
		}
	default:
		t.Fatalf("INVGEN_ENGINE=%q", engine)
	}
	testenv.Must(t, err, "New")
	testenv.Must(t, m.CreateTables(ctx), "CreateTables")
	testenv.Must(t, m.Init(ctx, "sku", 5), "Init")

	release, err := lock(ctx)
	testenv.Must(t, err, "lock")
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(hold)
		release()
	}()
	start := time.Now()
	r, err := m.Decr(ctx, "sku", 2, "o1")
	took := time.Since(start)
	<-done
	if err != nil {
		t.Fatalf("Decr while another transaction held the ledger for %v: %v (after %v)", hold, err, took.Round(time.Millisecond))
	}
	if r.Delta != -2 || r.Available != 3 {
		t.Errorf("Decr = %+v, want -2 with 3 left", r)
	}
	if took < hold/2 {
		t.Errorf("Decr returned after %v, before the lock could have been released: the test held nothing", took)
	}
	if n := count(); n != 1 {
		t.Errorf("%d committed rows of the purchase, want 1", n)
	}
	if got, _ := m.Get(ctx, "sku"); got != 3 {
		t.Errorf("Redis holds %d, want 3", got)
	}
}
