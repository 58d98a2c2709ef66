package runtime

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// isUniqueViolation reports whether err is PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// definitelyNotWritten reports whether err proves that a single-statement
// insert committed nothing: nothing reached the server (no connection could
// be made or acquired, or pgx says so), or the server rejected the
// statement, which then rolled back on its own.
func definitelyNotWritten(err error) bool {
	var (
		pe *pgconn.PgError
		ce *pgconn.ConnectError
	)
	switch {
	case pgconn.SafeToRetry(err), errors.As(err, &pe), errors.As(err, &ce):
		return true
	case err == context.Canceled || err == context.DeadlineExceeded:
		// Unwrapped, these come from acquiring a pool connection: the
		// statement was never sent. (A deadline during the statement comes
		// wrapped by pgconn, and stays in doubt.)
		return true
	}
	return false
}
