package contract

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
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

// busyManager is what the tests of ledger conflicts call.
type busyManager interface {
	CreateTables(context.Context) error
	Init(context.Context, string, int64) error
	Decr(context.Context, string, int64, string) (invrt.Result, error)
	Get(context.Context, string) (int64, error)
}

// TestLedgerConflictIsErrBusy: a purchase whose usage row keeps losing to
// another transaction after the runtime's retries (a lock wait that times
// out on PostgreSQL (55P03) and InnoDB (1205), a busy file on SQLite) is
// refused with ErrBusy, and nothing is taken: Redis keeps its stock, the
// ledger has no row of it, and a retry of the op key once the lock is gone
// buys. An Init that loses the same way is ErrBusy too, and writes nothing.
func TestLedgerConflictIsErrBusy(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	var (
		m     busyManager
		lock  func(ctx context.Context) (release func(), err error)
		count func(opKey string) int64
		err   error
	)
	// The ledger timeout outlasts the retries of a 1s lock wait on InnoDB.
	opts := []invrt.Option{invrt.WithNamespace(ns), invrt.WithLease(30 * time.Second), invrt.WithLedgerTimeout(30 * time.Second)}
	switch engine := testenv.Engine(); engine {
	case "postgresql":
		pool := testenv.PoolWith(t, func(c *pgxpool.Config) { c.ConnConfig.RuntimeParams["lock_timeout"] = "50ms" })
		m, err = flashsale.New(pool, rdb, opts...)
		lock = func(ctx context.Context) (func(), error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return nil, err
			}
			if _, err := tx.Exec(ctx, "LOCK TABLE "+flashsale.UsageTable+", "+flashsale.ModificationTable+" IN ACCESS EXCLUSIVE MODE"); err != nil {
				tx.Rollback(ctx)
				return nil, err
			}
			return func() { tx.Rollback(context.Background()) }, nil
		}
		count = func(opKey string) int64 {
			return testenv.Sum(t, pool, "SELECT count(*) FROM "+flashsale.UsageTable+" WHERE op_key = $1", opKey)
		}
	case "mysql":
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
			// Gap locks where the purchase's and the init's rows go.
			for _, q := range []string{
				"SELECT id FROM " + myflashsale.UsageTable + " WHERE item_id = 'sku' AND kind = 'decr' AND op_key = 'o1' FOR UPDATE",
				"SELECT id FROM " + myflashsale.ModificationTable + " WHERE item_id = 'sku2' AND kind = 'init' AND op_key = 'init' FOR UPDATE",
			} {
				if _, err := tx.ExecContext(ctx, q); err != nil {
					tx.Rollback()
					return nil, err
				}
			}
			return func() { tx.Rollback() }, nil
		}
		count = func(opKey string) int64 {
			return testenv.SumSQL(t, db, "SELECT count(*) FROM "+myflashsale.UsageTable+" WHERE op_key = ?", opKey)
		}
	case "sqlite":
		file := testenv.SQLDSN(t, "sqlite")
		db, oerr := sql.Open("sqlite3", "file:"+file+"?_pragma=busy_timeout(0)&_pragma=journal_mode(wal)")
		testenv.Must(t, oerr, "open")
		t.Cleanup(func() { db.Close() })
		m, err = liflashsale.New(db, rdb, opts...)
		lock = sqliteWriteLock(db)
		count = func(opKey string) int64 {
			return testenv.SumSQL(t, db, "SELECT count(*) FROM "+liflashsale.UsageTable+" WHERE op_key = ?", opKey)
		}
	default:
		t.Fatalf("INVGEN_ENGINE=%q", engine)
	}
	testenv.Must(t, err, "New")
	testenv.Must(t, m.CreateTables(ctx), "CreateTables")
	testenv.Must(t, m.Init(ctx, "sku", 5), "Init")

	release, err := lock(ctx)
	testenv.Must(t, err, "lock")
	_, derr := m.Decr(ctx, "sku", 2, "o1")
	ierr := m.Init(ctx, "sku2", 7)
	release()
	if !errors.Is(derr, invrt.ErrBusy) {
		t.Errorf("Decr whose ledger row lost to a lock every time: %v, want ErrBusy", derr)
	} else {
		t.Logf("Decr: %v", derr)
	}
	if !errors.Is(ierr, invrt.ErrBusy) {
		t.Errorf("Init whose ledger row lost to a lock: %v, want ErrBusy", ierr)
	}
	if n := count("o1"); n != 0 {
		t.Errorf("%d ledger rows of the refused purchase, want none", n)
	}
	if got, err := m.Get(ctx, "sku"); err != nil || got != 5 {
		t.Errorf("Redis holds %d (%v) after the refused purchase, want 5", got, err)
	}
	if _, err := m.Get(ctx, "sku2"); !errors.Is(err, invrt.ErrNotFound) {
		t.Errorf("Get of the item whose Init was refused: %v, want ErrNotFound", err)
	}
	// Nothing was taken: the op key buys once the lock is gone.
	r, err := m.Decr(ctx, "sku", 2, "o1")
	if err != nil || r.Replayed || r.Available != 3 {
		t.Errorf("retry of the refused op key = %+v, %v; want a new purchase with 3 left", r, err)
	}
	testenv.Must(t, m.Init(ctx, "sku2", 7), "Init again")
}

// TestSQLiteBusyIsErrBusy: 64 goroutines buy on SQLite with busy_timeout(0),
// so that many purchases lose the database file's lock even after the
// runtime's retries. Every such purchase is ErrBusy, and took nothing:
// what Redis holds and what the ledger sold add up, and no refused op key
// has a row.
func TestSQLiteBusyIsErrBusy(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	file := testenv.SQLDSN(t, "sqlite")
	db, err := sql.Open("sqlite3", "file:"+file+"?_pragma=busy_timeout(0)&_pragma=journal_mode(wal)")
	testenv.Must(t, err, "open")
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(64)
	m, err := liflashsale.New(db, rdb, invrt.WithNamespace(ns), invrt.WithLease(30*time.Second))
	testenv.Must(t, err, "New")
	testenv.Must(t, m.CreateTables(ctx), "CreateTables")
	const stock = 100000
	testenv.Must(t, m.Init(ctx, "sku", stock), "Init")

	const buyers, each = 64, 10
	var (
		mu      sync.Mutex
		bought  int64
		busy    []string
		other   []error
		wg      sync.WaitGroup
		started = make(chan struct{})
	)
	for w := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-started
			for i := range each {
				op := fmt.Sprintf("b%d-%d", w, i)
				_, err := m.Decr(ctx, "sku", 1, op)
				mu.Lock()
				switch {
				case err == nil:
					bought++
				case errors.Is(err, invrt.ErrBusy):
					busy = append(busy, op)
				default:
					other = append(other, err)
				}
				mu.Unlock()
			}
		}()
	}
	close(started)
	wg.Wait()
	t.Logf("%d bought, %d busy, %d other errors", bought, len(busy), len(other))
	for i, err := range other {
		if i == 5 {
			break
		}
		t.Errorf("a purchase failed with %v, not ErrBusy", err)
	}
	if len(busy) == 0 && len(other) == 0 {
		t.Logf("no purchase lost the file's lock: the test held nothing this run")
	}
	sold := testenv.SumSQL(t, db, "SELECT count(*) FROM "+liflashsale.UsageTable+" WHERE state = 'committed'")
	if sold != bought {
		t.Errorf("the ledger sold %d, the buyers were told %d", sold, bought)
	}
	for _, op := range busy {
		if n := testenv.SumSQL(t, db, "SELECT count(*) FROM "+liflashsale.UsageTable+" WHERE op_key = ?", op); n != 0 {
			t.Errorf("op key %s was refused with ErrBusy but has %d ledger rows", op, n)
		}
	}
	if got, err := m.Get(ctx, "sku"); err != nil || got != stock-bought {
		t.Errorf("Redis holds %d (%v), want %d", got, err, stock-bought)
	}
}
