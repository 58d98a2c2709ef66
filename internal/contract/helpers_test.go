package contract

import (
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

var dollar = regexp.MustCompile(`\$\d+`)
