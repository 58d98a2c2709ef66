package main

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// TestDBErrorKinds provokes real errors of MariaDB and SQLite and checks
// what the commands' ledger tells the runtime of them: the kind decides
// whether a change is settled as not written or looked up in the ledger.
func TestDBErrorKinds(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	kind := func(err error) invrt.DBErrorKind {
		t.Helper()
		var de *invrt.DBError
		if !errors.As(err, &de) {
			t.Fatalf("%v (%T) is no DBError", err, err)
		}
		return de.Kind
	}
	for _, engine := range []string{"mysql", "sqlite"} {
		t.Run(engine, func(t *testing.T) {
			db, err := openLedger(ctx, engine, testenv.SQLDSN(t, engine), dbCreate)
			testenv.Must(t, err, "open")
			defer db.close()
			_, err = db.exec(ctx, "CREATE TABLE t (k VARCHAR(8) NOT NULL PRIMARY KEY, n INTEGER NOT NULL CHECK (n >= 0))")
			testenv.Must(t, err, "create")
			_, err = db.exec(ctx, "INSERT INTO t (k, n) VALUES ($1, $2)", "a", 1)
			testenv.Must(t, err, "insert")
			cases := []struct {
				what string
				q    string
				args []any
				want invrt.DBErrorKind
			}{
				{"duplicate key", "INSERT INTO t (k, n) VALUES ($1, $2)", []any{"a", 2}, invrt.DBErrUniqueViolation},
				{"missing table", "INSERT INTO nope (k) VALUES ($1)", []any{"a"}, invrt.DBErrSchema},
				{"syntax", "INSERT INTO t VALUES VALUES", nil, invrt.DBErrSchema},
				{"check constraint", "INSERT INTO t (k, n) VALUES ($1, $2)", []any{"b", -1}, invrt.DBErrRejected},
			}
			for _, c := range cases {
				_, err := db.exec(ctx, c.q, c.args...)
				if got := kind(err); got != c.want {
					t.Errorf("%s: %v is kind %d, want %d", c.what, err, got, c.want)
				}
			}
		})
	}
	t.Run("mysql unreachable", func(t *testing.T) {
		// Port 1 is privileged and nothing listens on it: the dial fails.
		sq, err := sql.Open("mysql", "root@tcp(127.0.0.1:1)/test?timeout=1s")
		testenv.Must(t, err, "open")
		defer sq.Close()
		d := sqlDB{db: sq, name: "mysql"}
		_, err = d.exec(ctx, "SELECT 1")
		if got := kind(err); got != invrt.DBErrNotSent {
			t.Errorf("a refused dial (%v) is kind %d, want not sent", err, got)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if got := kind(d.wrap(cctx.Err())); got != invrt.DBErrUnknown {
			t.Errorf("a context error is kind %d, want unknown (in doubt)", got)
		}
	})
}

// TestDBFlagForms: a -db of another engine's form is refused, before any
// connection, with an error naming the form the spec's engine takes, by
// every command that takes -db; a bad -db is a bad argument (exit 2) for
// admin and migrate.
func TestDBFlagForms(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	cases := []struct {
		engine, dsn, want string
	}{
		{"mysql", "mysql://root@127.0.0.1:3306/test", "user:password@tcp(host:port)/dbname"},
		{"mysql", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "user:password@tcp(host:port)/dbname"},
		{"mysql", "inventory.db", "user:password@tcp(host:port)/dbname"},
		{"postgresql", "root@tcp(127.0.0.1:3306)/test", "postgres://user:password@host:port/dbname"},
		{"postgresql", "mysql://root@127.0.0.1:3306/test", "postgres://user:password@host:port/dbname"},
		{"sqlite", "postgres://postgres@127.0.0.1:5432/test", "the path of a SQLite file"},
		{"sqlite", "file:inventory.db?mode=rw", "the path of a SQLite file"},
	}
	for _, c := range cases {
		db, err := openDB(ctx, c.engine, c.dsn)
		if err == nil {
			db.close()
			t.Errorf("%s -db %s: opened", c.engine, c.dsn)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "default addr") || !errors.Is(err, errBadDB) {
			t.Errorf("%s -db %s: %v; want an error naming %q", c.engine, c.dsn, err, c.want)
		}
	}

	// Through every command of a mysql spec.
	inModule(t)
	writeFile(t, "inventory.yaml", "version: 1\noutput: gen\nengine: mysql\nprefixes:\n  - name: shop\n    key: string\n    ledger: stream\n")
	for _, args := range [][]string{
		{"admin", "-redis", testRedisURL(), "-db", "mysql://root@127.0.0.1:3306/test", "get", "shop", "x"},
		{"admin", "-redis", testRedisURL(), "-db", "mysql://root@127.0.0.1:3306/test", "init", "shop", "x", "1"},
		{"migrate", "-db", "mysql://root@127.0.0.1:3306/test"},
		{"migrate", "-dry-run", "-db", "postgres://postgres@127.0.0.1:5432/test"},
		{"flush", "-once", "-redis", testRedisURL(), "-db", "mysql://root@127.0.0.1:3306/test"},
		{"adopt", "-redis", testRedisURL(), "-old-redis", testRedisURL(), "-db", "mysql://root@127.0.0.1:3306/test"},
	} {
		r := invgen(t, args...)
		if !strings.Contains(r.stderr, "user:password@tcp(host:port)/dbname") || strings.Contains(r.stderr, "default addr") {
			t.Errorf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		if r.code != exitUsage {
			t.Errorf("%v: exit %d, want %d (bad arguments)", args, r.code, exitUsage)
		}
	}
}
