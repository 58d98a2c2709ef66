package runtime

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// isUniqueViolation reports whether err is PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// definitelyNotWritten reports whether err proves that a single-statement
// insert committed nothing: either nothing reached the server, or the
// server rejected the statement (which then rolled back on its own).
func definitelyNotWritten(err error) bool {
	var pe *pgconn.PgError
	return pgconn.SafeToRetry(err) || errors.As(err, &pe)
}
