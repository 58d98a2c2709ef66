package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/ncruces/go-sqlite3/driver" // database/sql driver "sqlite3"
	_ "github.com/ncruces/go-sqlite3/embed"  // the SQLite library, compiled to WebAssembly
)

// DefaultMySQLURL is the local MariaDB (or MySQL) server, in
// go-sql-driver/mysql's DSN form.
const DefaultMySQLURL = "root@tcp(127.0.0.1:3306)/test"

// MySQLURL returns INVGEN_MYSQL_URL or the default.
func MySQLURL() string { return env("INVGEN_MYSQL_URL", DefaultMySQLURL) }

// Engine returns the SQL engine the contract tests run against:
// INVGEN_ENGINE, one of postgresql (the default), mysql and sqlite.
func Engine() string { return env("INVGEN_ENGINE", "postgresql") }

// SQLDB returns a database of the test's own on engine mysql or sqlite:
// on MySQL a database created for the test and dropped when it ends, on
// SQLite a file in the test's temporary directory, in WAL mode with a busy
// timeout, as docs/engines.md advises. It fails the test when the server does
// not answer.
func SQLDB(t testing.TB, engine string) *sql.DB {
	t.Helper()
	dsn := SQLDSN(t, engine)
	var db *sql.DB
	var err error
	if engine == "sqlite" {
		db, err = OpenSQLite(dsn)
	} else {
		db, err = sql.Open("mysql", dsn)
		if err == nil {
			db.SetMaxOpenConns(64)
			db.SetMaxIdleConns(64)
		}
	}
	Must(t, err, "open %s", engine)
	t.Cleanup(func() { db.Close() })
	return db
}

// SQLDSN makes a database of the test's own on engine mysql or sqlite and
// returns where it is: a DSN of go-sql-driver/mysql naming a database
// created for the test (dropped when it ends), or a SQLite file in the
// test's temporary directory.
func SQLDSN(t testing.TB, engine string) string {
	t.Helper()
	switch engine {
	case "mysql":
		return mysqlDB(t)
	case "sqlite":
		return filepath.Join(t.TempDir(), "ledger.db")
	}
	t.Fatalf("SQLDSN: engine %q is not mysql or sqlite", engine)
	return ""
}

// OpenSQLite opens the SQLite file path as invgen's ledger: WAL mode, so
// that readers do not wait for the writer, and a busy timeout, so that
// writers wait for each other instead of failing.
func OpenSQLite(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)")
	if err != nil {
		return nil, err
	}
	return db, db.Ping()
}

// mysqlDB creates a database for the test on the server of MySQLURL and
// returns its DSN.
func mysqlDB(t testing.TB) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(MySQLURL())
	Must(t, err, "INVGEN_MYSQL_URL")
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	Must(t, err, "open MySQL")
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		t.Fatalf("MySQL/MariaDB at %s does not answer (%v); start it with `make services`", cfg.Addr, err)
	}
	name := "t_" + strings.ToLower(rand.Text()[:12])
	Must(t, execSQL(ctx, admin, "CREATE DATABASE "+name), "create database")
	t.Cleanup(func() {
		admin, err := sql.Open("mysql", cfg.FormatDSN())
		if err == nil {
			defer admin.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = execSQL(ctx, admin, "DROP DATABASE "+name)
		}
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

func execSQL(ctx context.Context, db *sql.DB, q string) error {
	_, err := db.ExecContext(ctx, q)
	if err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	return nil
}

// SumSQL runs query on db and returns its one number.
func SumSQL(t testing.TB, db *sql.DB, query string, args ...any) int64 {
	t.Helper()
	var n sql.NullInt64
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n.Int64
}
