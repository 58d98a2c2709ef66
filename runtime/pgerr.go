package runtime

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// isUniqueViolation reports whether err is a unique violation: a DBError
// that says so, or PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	if k, ok := dbErrorKind(err); ok {
		return k == DBErrUniqueViolation
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// definitelyNotWritten reports whether err proves that a single-statement
// insert committed nothing: nothing reached the server (no connection could
// be made, or pgx says so), or the server rejected the statement with an
// ERROR (by its unlocalized severity), which rolled it back (or a DBError of another kind than
// DBErrUnknown says so). Everything else, a bare context error
// included (pgx returns one when the context ends while it waits for the
// answer to a statement it sent), is in doubt and settled through the
// ledger.
func definitelyNotWritten(err error) bool {
	if k, ok := dbErrorKind(err); ok {
		return k != DBErrUnknown
	}
	var (
		pe *pgconn.PgError
		ce *pgconn.ConnectError
	)
	switch {
	case pgconn.SafeToRetry(err), errors.As(err, &ce):
		return true
	case errors.As(err, &pe):
		return severity(pe) == "ERROR"
	}
	return false
}

// severity is the unlocalized severity of a server error (PostgreSQL 9.6
// and later send it beside the one in lc_messages' language). A server
// too old to send it gets its localized severity: read as English, a
// German "FEHLER" stays in doubt, the safe side.
func severity(pe *pgconn.PgError) string {
	if pe.SeverityUnlocalized != "" {
		return pe.SeverityUnlocalized
	}
	return pe.Severity
}
