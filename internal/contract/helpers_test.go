package contract

import (
	"context"
	"database/sql"
	"regexp"
	"testing"

	"github.com/invgen/invgen/internal/testenv"
)

// sumSQL runs q, written for PostgreSQL with portable SQL but for its $n
// parameters, on the fixture's database, and returns its one number. On
// the other engines each $n becomes ?, so q must use its parameters once
// each, in order.
func sumSQL[K comparable](t testing.TB, f *fixture[K], q string, args ...any) int64 {
	t.Helper()
	if f.db == nil {
		return testenv.Sum(t, f.pool, q, args...)
	}
	return testenv.SumSQL(t, f.db, dollar.ReplaceAllString(q, "?"), args...)
}

// exec runs a statement of portable SQL on the fixture's database.
func (f *fixture[K]) exec(t testing.TB, q string) {
	t.Helper()
	var err error
	if f.db != nil {
		_, err = f.db.ExecContext(context.Background(), q)
	} else {
		_, err = f.pool.Exec(context.Background(), q)
	}
	testenv.Must(t, err, "%s", q)
}

var dollar = regexp.MustCompile(`\$\d+`)

// sqliteWriteLock returns a lock of SQLite file db against every other
// writer (BEGIN IMMEDIATE on a connection of its own), and its release.
func sqliteWriteLock(db *sql.DB) func(ctx context.Context) (func(), error) {
	return func(ctx context.Context) (func(), error) {
		c, err := db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			c.Close()
			return nil, err
		}
		return func() { c.ExecContext(context.Background(), "ROLLBACK"); c.Close() }, nil
	}
}
