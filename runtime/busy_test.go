package runtime

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestConflictsAreErrBusy: every ledger conflict (a DBError of kind
// DBErrConflict from the mysql and sqlite engines, PostgreSQL's 40P01,
// 40001 and 55P03) matches ErrBusy once given up, keeping its cause; any
// other error is left as it is.
func TestConflictsAreErrBusy(t *testing.T) {
	driver := errors.New("driver error")
	for _, err := range []error{
		&DBError{Kind: DBErrConflict, Err: driver},
		fmt.Errorf("wrapped: %w", &DBError{Kind: DBErrConflict, Err: driver}),
		&pgconn.PgError{Code: "40P01"},
		&pgconn.PgError{Code: "40001"},
		&pgconn.PgError{Code: "55P03"},
	} {
		got := busyIfConflict(err)
		if !errors.Is(got, ErrBusy) || !errors.Is(got, err) {
			t.Errorf("busyIfConflict(%v) = %v: want ErrBusy, keeping the cause", err, got)
		}
	}
	for _, err := range []error{
		&DBError{Kind: DBErrRejected, Err: driver},
		&DBError{Kind: DBErrNotSent, Err: driver},
		&pgconn.PgError{Code: "23514"},
		driver,
	} {
		if got := busyIfConflict(err); got != err {
			t.Errorf("busyIfConflict(%v) = %v, want it unchanged", err, got)
		}
	}
}
