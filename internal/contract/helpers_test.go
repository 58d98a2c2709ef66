package contract

import (
	"testing"

	"github.com/invgen/invgen/internal/testenv"
)

func sumSQL[K comparable](t *testing.T, f *fixture[K], q string, args ...any) int64 {
	t.Helper()
	return testenv.Sum(t, f.pool, q, args...)
}
