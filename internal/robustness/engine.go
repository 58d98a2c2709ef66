package robustness

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ncruces/go-sqlite3"
	_ "github.com/ncruces/go-sqlite3/driver" // database/sql driver "sqlite3"
	_ "github.com/ncruces/go-sqlite3/embed"  // the SQLite library
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The other engines' side of the tester: the generated packages of
// examples/engines over a *sql.DB, the validator's reads and the ledger
// faults in each engine's SQL. PostgreSQL keeps its pgx pool.

// ExecContext implements the DBTX of the generated packages of the mysql
// and sqlite engines, as (*sql.DB).ExecContext does, with the failpoint and
// the log of inserts that went out on a connection.
func (d *DB) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	d.pause(ctx)
	c, err := d.SQL.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if id := callOf(ctx); id != "" && isInsert(q) {
		d.mu.Lock()
		d.sent[id] = true
		d.mu.Unlock()
	}
	return c.ExecContext(ctx, q, args...)
}

// Conn takes a connection of the pool, as (*sql.DB).Conn does: the
// generated packages' Acquire takes the connection of a change's ledger
// insert by it, so a failure here is known to have sent nothing. A
// connection taken for a call is logged as its insert gone out.
func (d *DB) Conn(ctx context.Context) (*sql.Conn, error) {
	d.pause(ctx)
	c, err := d.SQL.Conn(ctx)
	if err == nil {
		if id := callOf(ctx); id != "" {
			d.mu.Lock()
			d.sent[id] = true
			d.mu.Unlock()
		}
	}
	return c, err
}

// BeginTx begins a transaction, as (*sql.DB).BeginTx does: the generated
// packages write a hold with its row, and end it with its release row, in
// one (runtime.SQLTx). A transaction begun for a call is logged as its
// insert gone out.
func (d *DB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	d.pause(ctx)
	tx, err := d.SQL.BeginTx(ctx, opts)
	if err == nil {
		if id := callOf(ctx); id != "" {
			d.mu.Lock()
			d.sent[id] = true
			d.mu.Unlock()
		}
	}
	return tx, err
}

// PrepareContext implements DBTX.
func (d *DB) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	d.pause(ctx)
	return d.SQL.PrepareContext(ctx, q)
}

// QueryContext implements DBTX.
func (d *DB) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	d.pause(ctx)
	return d.SQL.QueryContext(ctx, q, args...)
}

// QueryRowContext implements DBTX.
func (d *DB) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	d.pause(ctx)
	return d.SQL.QueryRowContext(ctx, q, args...)
}

// shareSQLiteCompilation has the processes of a run share one compilation
// of the SQLite library, which the driver runs as WebAssembly: a process
// compiles it at its first connection, in about a second, and in 8 to 10
// under the race detector, where a buyer process would spend its first
// calls' deadlines on it. The driver's defaults otherwise. Without a cache
// directory, each process compiles its own.
var shareSQLiteCompilation = sync.OnceFunc(func() {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	cache, err := wazero.NewCompilationCacheWithDir(filepath.Join(dir, "invgen-robustness-sqlite"))
	if err != nil {
		return
	}
	sqlite3.RuntimeConfig = wazero.NewRuntimeConfig().WithMemoryLimitPages(4096).
		WithCoreFeatures(api.CoreFeaturesV2).WithCompilationCache(cache)
})

// OpenSQL opens the ledger of engine mysql or sqlite at dsn (a DSN of
// go-sql-driver/mysql, or a SQLite file) with at most maxConns
// connections. addr, when set, replaces the MySQL server's address (the
// run's proxy).
func OpenSQL(engine, dsn, addr string, maxConns int) (*sql.DB, error) {
	var db *sql.DB
	var err error
	switch engine {
	case "mysql":
		cfg, perr := mysql.ParseDSN(dsn)
		if perr != nil {
			return nil, perr
		}
		if addr != "" {
			cfg.Addr = addr
		}
		cfg.Timeout = 2 * time.Second
		db, err = sql.Open("mysql", cfg.FormatDSN())
	case "sqlite":
		shareSQLiteCompilation()
		db, err = sql.Open("sqlite3", "file:"+dsn+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)")
	default:
		return nil, fmt.Errorf("engine %q is not mysql or sqlite", engine)
	}
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(maxConns)
	return db, nil
}

// mysqlAddr is the server address of a MySQL DSN.
func mysqlAddr(dsn string) (string, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", err
	}
	return cfg.Addr, nil
}

// admin is the run's direct connection to the ledger, for the validator
// and the ledger faults.
type admin interface {
	// sums reads an item's ledger (ledgerSums) by its text form.
	sums(ctx context.Context, p int, id string) (ledgerSums, error)
	// rows calls each for every non-init row of table.
	rows(ctx context.Context, table string, each func(id, kind, op string, rw row)) error
	// lockTable keeps table from being written for d.
	lockTable(ctx context.Context, table string, d time.Duration) error
	// refuseInserts makes table refuse every new row with an error of
	// the server's, until undo.
	refuseInserts(ctx context.Context, table string) (undo func() error, err error)
	close()
}

// sumsSQL is the ledgerSums query: id is the item_id column as text, param
// the parameter, to the cast of each sum ("" for none).
func sumsSQL(p int, id, param, to string) string {
	pr := Prefixes[p]
	sum := func(table, cond string) string {
		return "COALESCE((SELECT SUM(delta) FROM " + table + " WHERE " + id + " = " + param + " AND state = 'committed'" + cond + "), 0)" + to
	}
	return "SELECT " + sum(pr.ModTable, "") + ", " + sum(pr.UsageTable, "") + ", " +
		sum(pr.UsageTable, " AND delta > 0") + ", " + sum(pr.ModTable, " AND kind = 'adjust' AND delta > 0")
}

type pgAdmin struct{ pool *pgxpool.Pool }

func (a pgAdmin) sums(ctx context.Context, p int, id string) (s ledgerSums, err error) {
	err = a.pool.QueryRow(ctx, sumsSQL(p, "item_id::text", "$1", "::bigint"), id).Scan(&s.cap, &s.usage, &s.returns, &s.restocks)
	return s, err
}

func (a pgAdmin) rows(ctx context.Context, table string, each func(id, kind, op string, rw row)) error {
	rows, err := a.pool.Query(ctx, "SELECT item_id::text, kind, op_key, delta, state, attempt FROM "+table+" WHERE kind <> 'init'")
	if err != nil {
		return err
	}
	defer rows.Close()
	return scanRows(rows.Next, rows.Scan, rows.Err, each)
}

// scanRows calls each for every change row of a query of the rows method.
func scanRows(next func() bool, scan func(...any) error, rerr func() error, each func(id, kind, op string, rw row)) error {
	for next() {
		var id, kind, op string
		var rw row
		if err := scan(&id, &kind, &op, &rw.delta, &rw.state, &rw.attempt); err != nil {
			return err
		}
		each(id, kind, op, rw)
	}
	return rerr()
}

func (a pgAdmin) lockTable(ctx context.Context, table string, d time.Duration) error {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err = tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err == nil {
		sleep(ctx, d)
	}
	return err
}

// refuseInserts: a CHECK (false) constraint, NOT VALID so that the rows
// there stay.
func (a pgAdmin) refuseInserts(ctx context.Context, table string) (func() error, error) {
	name := "quiet_refuse_" + strings.ReplaceAll(table, ".", "_")
	if _, err := a.pool.Exec(ctx, "ALTER TABLE "+table+" ADD CONSTRAINT "+name+" CHECK (false) NOT VALID"); err != nil {
		return nil, err
	}
	return func() error {
		_, err := a.pool.Exec(context.WithoutCancel(ctx), "ALTER TABLE "+table+" DROP CONSTRAINT "+name)
		return err
	}, nil
}

func (a pgAdmin) close() { a.pool.Close() }

// sqlAdmin is the admin of the mysql and sqlite engines.
type sqlAdmin struct {
	db     *sql.DB
	engine string
}

// itemText is item_id as text.
func (a sqlAdmin) itemText() string {
	if a.engine == "mysql" {
		return "CAST(item_id AS CHAR)"
	}
	return "CAST(item_id AS TEXT)"
}

func (a sqlAdmin) sums(ctx context.Context, p int, id string) (s ledgerSums, err error) {
	var v [4]sql.NullInt64
	err = a.db.QueryRowContext(ctx, sumsSQL(p, a.itemText(), "?", ""), id, id, id, id).Scan(&v[0], &v[1], &v[2], &v[3])
	s.cap, s.usage, s.returns, s.restocks = v[0].Int64, v[1].Int64, v[2].Int64, v[3].Int64
	return s, err
}

func (a sqlAdmin) rows(ctx context.Context, table string, each func(id, kind, op string, rw row)) error {
	rows, err := a.db.QueryContext(ctx, "SELECT "+a.itemText()+", kind, op_key, delta, state, attempt FROM "+table+" WHERE kind <> 'init'")
	if err != nil {
		return err
	}
	defer rows.Close()
	return scanRows(rows.Next, rows.Scan, rows.Err, each)
}

// lockTable: MySQL's LOCK TABLES ... WRITE on a connection of its own;
// SQLite's write lock of the whole file (BEGIN IMMEDIATE).
func (a sqlAdmin) lockTable(ctx context.Context, table string, d time.Duration) error {
	c, err := a.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	lock, unlock := "LOCK TABLES "+table+" WRITE", "UNLOCK TABLES"
	if a.engine == "sqlite" {
		lock, unlock = "BEGIN IMMEDIATE", "ROLLBACK"
	}
	if _, err := c.ExecContext(ctx, lock); err != nil {
		return err
	}
	sleep(ctx, d)
	_, err = c.ExecContext(context.Background(), unlock)
	return err
}

// refuseInserts: a trigger that raises an error before every insert.
func (a sqlAdmin) refuseInserts(ctx context.Context, table string) (func() error, error) {
	trigger := "CREATE TRIGGER quiet_refuse BEFORE INSERT ON " + table +
		" FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the robustness tester'"
	if a.engine == "sqlite" {
		trigger = "CREATE TRIGGER quiet_refuse BEFORE INSERT ON " + table +
			" BEGIN SELECT RAISE(ABORT, 'refused by the robustness tester'); END"
	}
	if _, err := a.db.ExecContext(ctx, trigger); err != nil {
		return nil, err
	}
	return func() error {
		_, err := a.db.ExecContext(context.WithoutCancel(ctx), "DROP TRIGGER quiet_refuse")
		return err
	}, nil
}

func (a sqlAdmin) close() { a.db.Close() }

// holdConns takes n connections of db for d: a pool the managers wait on.
func holdConns(ctx context.Context, db *sql.DB, n int, d time.Duration) error {
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	sleep(ctx, d)
	return nil
}
