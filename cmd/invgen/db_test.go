package main

import (
	"context"
	"database/sql"
	"errors"
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
			db, err := openDB(ctx, engine, testenv.SQLDSN(t, engine))
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
