package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ncruces/go-sqlite3"
	_ "github.com/ncruces/go-sqlite3/driver" // database/sql driver "sqlite3"
	_ "github.com/ncruces/go-sqlite3/embed"  // the SQLite library

	invrt "github.com/invgen/invgen/runtime"
)

// ledgerDB is the ledger database of the commands, whatever the spec's
// engine: statements are written with $n parameters (generator.Queries
// numbers them so) and run with their arguments in that order.
type ledgerDB interface {
	engine() string
	exec(ctx context.Context, q string, args ...any) (affected int64, err error)
	queryRow(ctx context.Context, q string, args ...any) scanner
	query(ctx context.Context, q string, args ...any) (rows, error)
	// handle is what the runtime's Config.DB gets.
	handle() any
	close()
}

type scanner interface{ Scan(dest ...any) error }

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// defaultDB is the ledger database the commands use when -db is not given:
// by engine, $INVGEN_DATABASE_URL (PostgreSQL), $INVGEN_MYSQL_URL
// (go-sql-driver/mysql's DSN) or $INVGEN_SQLITE_PATH (a file), each with a
// local default.
func defaultDB(engine string) string {
	switch engine {
	case "mysql":
		return envOr("INVGEN_MYSQL_URL", "root@tcp(127.0.0.1:3306)/test")
	case "sqlite":
		return envOr("INVGEN_SQLITE_PATH", "inventory.db")
	}
	return envOr("INVGEN_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable")
}

// dbFlagDoc is the usage of every command's -db flag.
const dbFlagDoc = "the ledger database `DB`, by the spec's engine: a PostgreSQL URL, a MySQL DSN (user@tcp(host:port)/db) or a SQLite file\n" +
	"(default $INVGEN_DATABASE_URL, $INVGEN_MYSQL_URL or $INVGEN_SQLITE_PATH, else the local server or inventory.db)"

// errBadDB is what openDB's error for a -db that the spec's engine cannot
// take matches: a bad argument, refused before any connection.
var errBadDB = errors.New("-db")

// dbMode is how a command opens the ledger. It matters to SQLite, where
// opening a file that is not there would create an empty database.
type dbMode int

const (
	// dbWrite reads and writes a ledger that exists; it creates none.
	dbWrite dbMode = iota
	// dbRead only reads: a SQLite file is opened read-only.
	dbRead
	// dbCreate creates a SQLite file that is missing (invgen migrate).
	dbCreate
)

// The DSN forms of each engine, as the errors name them.
const (
	pgForm     = "a PostgreSQL URL, postgres://user:password@host:port/dbname?sslmode=disable, or key=value settings (host=... dbname=...)"
	mysqlForm  = "go-sql-driver/mysql's DSN, user:password@tcp(host:port)/dbname"
	sqliteForm = "the path of a SQLite file (invgen adds the URI and its parameters)"
)

// urlScheme matches the scheme of a URL, such as mysql:// or postgres://.
var urlScheme = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*)://`)

// openDB opens the ledger database of engine at dsn ("" for defaultDB),
// reading and writing, and checks that it answers. It never creates a
// SQLite file.
func openDB(ctx context.Context, engine, dsn string) (ledgerDB, error) {
	return openLedger(ctx, engine, dsn, dbWrite)
}

// openLedger opens the ledger database of engine at dsn ("" for
// defaultDB) as mode says and checks that it answers. A dsn of another
// form than the engine's is refused with an error matching errBadDB that
// names the form; a SQLite file that is not there is created by dbCreate
// only.
func openLedger(ctx context.Context, engine, dsn string, mode dbMode) (ledgerDB, error) {
	if dsn == "" {
		dsn = defaultDB(engine)
	}
	if engine == "postgresql" {
		if m := urlScheme.FindStringSubmatch(dsn); m != nil && m[1] != "postgres" && m[1] != "postgresql" {
			return nil, fmt.Errorf("%w: the postgresql engine takes %s, not a %s:// URL", errBadDB, pgForm, m[1])
		}
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("%w: the postgresql engine takes %s: %v", errBadDB, pgForm, err)
		}
		// Keys travel as text whatever the key type; PostgreSQL converts.
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("PostgreSQL does not answer: %w", err)
		}
		return pgDB{pool}, nil
	}
	driverName, source := "mysql", dsn
	if engine == "sqlite" {
		var err error
		if source, err = sqliteSource(dsn, mode); err != nil {
			return nil, err
		}
		driverName = "sqlite3"
	} else if m := urlScheme.FindStringSubmatch(dsn); m != nil {
		return nil, fmt.Errorf("%w: the mysql engine takes %s, not a %s:// URL", errBadDB, mysqlForm, m[1])
	} else if _, err := mysql.ParseDSN(dsn); err != nil {
		return nil, fmt.Errorf("%w: the mysql engine takes %s: %v", errBadDB, mysqlForm, err)
	}
	db, err := sql.Open(driverName, source)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadDB, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		var x sqlite3.ExtendedErrorCode
		if engine == "sqlite" && errors.As(err, &x) && sqlite3.ErrorCode(x) == sqlite3.CANTOPEN {
			return nil, missingSQLite(dsn)
		}
		return nil, fmt.Errorf("%s does not answer: %w", engine, err)
	}
	return sqlDB{db: db, name: engine}, nil
}

// sqliteSource is the URI that opens the SQLite file at path as mode says:
// read-only, read-write, or created when missing. WAL is set by the modes
// that write; a reader leaves the file's journal mode as it is.
func sqliteSource(path string, mode dbMode) (string, error) {
	if m := urlScheme.FindStringSubmatch(path); m != nil || strings.HasPrefix(path, "file:") {
		return "", fmt.Errorf("%w: the sqlite engine takes %s, not a URL", errBadDB, sqliteForm)
	}
	if path == "" || strings.ContainsRune(path, 0) {
		return "", fmt.Errorf("%w: the sqlite engine takes %s", errBadDB, sqliteForm)
	}
	if mode != dbCreate {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return "", missingSQLite(path)
		}
	}
	// In a URI, ? and # end the path and % escapes.
	uri := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path) + "?_pragma=busy_timeout(10000)"
	switch mode {
	case dbRead:
		return uri + "&mode=ro", nil
	case dbWrite:
		return uri + "&mode=rw&_pragma=journal_mode(wal)", nil
	}
	return uri + "&mode=rwc&_pragma=journal_mode(wal)", nil
}

// missingSQLite is the error of a SQLite ledger file that is not there.
func missingSQLite(path string) error {
	return fmt.Errorf("no SQLite ledger at %s: nothing was created (a mistyped -db? invgen migrate creates it)", path)
}

// pgDB is a pgx pool in the simple protocol.
type pgDB struct{ pool *pgxpool.Pool }

func (d pgDB) engine() string { return "postgresql" }
func (d pgDB) handle() any    { return d.pool }
func (d pgDB) close()         { d.pool.Close() }

func (d pgDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := d.pool.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (d pgDB) queryRow(ctx context.Context, q string, args ...any) scanner {
	return d.pool.QueryRow(ctx, q, args...)
}

func (d pgDB) query(ctx context.Context, q string, args ...any) (rows, error) {
	r, err := d.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// sqlDB is a database/sql database of the mysql or sqlite engine. Its
// statements' $n parameters become ?, each occurrence bound to its
// argument, and its errors are wrapped in runtime.DBError as the generated
// packages wrap them.
type sqlDB struct {
	db   *sql.DB
	name string
}

func (d sqlDB) engine() string { return d.name }
func (d sqlDB) handle() any    { return d.db }
func (d sqlDB) close()         { d.db.Close() }

var dollarParam = regexp.MustCompile(`\$(\d+)`)

// bind rewrites q's $n as ? and lists the arguments in the order of their
// occurrences.
func bind(q string, args []any) (string, []any) {
	var out []any
	text := dollarParam.ReplaceAllStringFunc(q, func(s string) string {
		n, _ := strconv.Atoi(s[1:])
		if n >= 1 && n <= len(args) {
			out = append(out, args[n-1])
		}
		return "?"
	})
	return text, out
}

func (d sqlDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return d.execOn(ctx, d.db, q, args)
}

func (d sqlDB) queryRow(ctx context.Context, q string, args ...any) scanner {
	return d.queryRowOn(ctx, d.db, q, args)
}

// runner is what a sqlDB runs statements on: its *sql.DB, or a
// transaction of it.
type runner interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func (d sqlDB) execOn(ctx context.Context, r runner, q string, args []any) (int64, error) {
	q, args = bind(q, args)
	res, err := r.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, d.wrap(err)
	}
	n, err := res.RowsAffected()
	return n, d.wrap(err)
}

func (d sqlDB) queryRowOn(ctx context.Context, r runner, q string, args []any) scanner {
	q, args = bind(q, args)
	return wrappedRow{r.QueryRowContext(ctx, q, args...), d}
}

func (d sqlDB) query(ctx context.Context, q string, args ...any) (rows, error) {
	q, args = bind(q, args)
	r, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, d.wrap(err)
	}
	return sqlRows{r}, nil
}

// sqlTx is a transaction of a sqlDB, for the statements of a hold that
// go together.
type sqlTx struct {
	tx *sql.Tx
	d  sqlDB
}

// inTx runs fn in a transaction: committed when it returns nil, rolled
// back when it returns an error.
func (d sqlDB) inTx(ctx context.Context, fn func(sqlTx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return d.wrap(err)
	}
	if err := fn(sqlTx{tx, d}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return d.wrap(tx.Commit())
}

func (t sqlTx) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return t.d.execOn(ctx, t.tx, q, args)
}

func (t sqlTx) queryRow(ctx context.Context, q string, args ...any) scanner {
	return t.d.queryRowOn(ctx, t.tx, q, args)
}

type wrappedRow struct {
	row *sql.Row
	d   sqlDB
}

func (r wrappedRow) Scan(dest ...any) error { return r.d.wrap(r.row.Scan(dest...)) }

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

// wrap tells the runtime what a driver error means, as the generated
// packages' dbError does: by MySQL error number and SQLSTATE, or by SQLite
// result code.
func (d sqlDB) wrap(err error) error {
	if err == nil || errors.Is(err, sql.ErrNoRows) {
		return err
	}
	kind := invrt.DBErrUnknown
	var (
		me *mysql.MySQLError
		oe *net.OpError
		// ncruces returns an *sqlite3.Error or a bare result code: both
		// convert to the extended code, whose low byte is the primary one.
		x sqlite3.ExtendedErrorCode
	)
	switch {
	case errors.As(err, &me) && me.Number == 1062:
		kind = invrt.DBErrUniqueViolation
	case errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205):
		kind = invrt.DBErrConflict
	case errors.As(err, &me) && me.SQLState[0] == '4' && me.SQLState[1] == '2':
		kind = invrt.DBErrSchema
	case errors.As(err, &me):
		kind = invrt.DBErrRejected
	case errors.Is(err, driver.ErrBadConn), errors.As(err, &oe) && oe.Op == "dial":
		kind = invrt.DBErrNotSent
	case !errors.As(err, &x):
	case x == sqlite3.CONSTRAINT_UNIQUE || x == sqlite3.CONSTRAINT_PRIMARYKEY:
		kind = invrt.DBErrUniqueViolation
	case sqlite3.ErrorCode(x) == sqlite3.ERROR:
		kind = invrt.DBErrSchema
	case sqlite3.ErrorCode(x) == sqlite3.BUSY || sqlite3.ErrorCode(x) == sqlite3.LOCKED:
		kind = invrt.DBErrConflict
	case slices.Contains([]sqlite3.ErrorCode{sqlite3.READONLY, sqlite3.CONSTRAINT, sqlite3.TOOBIG, sqlite3.MISMATCH, sqlite3.RANGE}, sqlite3.ErrorCode(x)):
		kind = invrt.DBErrRejected
	}
	return &invrt.DBError{Kind: kind, Err: err}
}

// isNoRows reports whether err is pgx's or database/sql's "no rows".
func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) || errors.Is(err, sql.ErrNoRows) }

// truthy reads a boolean column: PostgreSQL's boolean, or the 0/1 integer
// of MySQL's expressions and SQLite.
func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int64:
		return x != 0
	case []byte:
		return string(x) != "0" && len(x) > 0
	}
	return false
}
