package runtime

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// DBErrorKind is what an error of the ledger's database means to the
// runtime: whether the statement that failed may have been committed, and
// whether retrying it can help.
type DBErrorKind int

// The kinds of ledger errors.
const (
	// DBErrUnknown: the statement may have been committed or not (a
	// connection lost after it was sent, a deadline that ended while the
	// answer was on its way). The runtime settles such a change through
	// the ledger.
	DBErrUnknown DBErrorKind = iota
	// DBErrUniqueViolation: a unique key refused the row; nothing was
	// written.
	DBErrUniqueViolation
	// DBErrRejected: the server refused the statement and rolled it back;
	// nothing was written (a constraint, a read-only server).
	DBErrRejected
	// DBErrNotSent: the statement never reached the server.
	DBErrNotSent
	// DBErrSchema: the statement does not fit the database (a missing table
	// or column, a syntax or permission error); nothing was written and a
	// retry will fail the same way.
	DBErrSchema
	// DBErrConflict: the statement lost to another transaction and was
	// rolled back (a deadlock, a lock wait timeout, a busy database file):
	// nothing was written, and the same statement may succeed when sent
	// again. The runtime sends a change's ledger row again a few times
	// before it gives the change up.
	DBErrConflict
)

// DBError is an error of the ledger's database with its kind. Generated
// packages of the mysql and sqlite engines return their driver's errors
// wrapped in one, so that the runtime needs no driver of its own; errors of
// pgx (the postgresql engine) the runtime reads itself, by SQLSTATE.
type DBError struct {
	Kind DBErrorKind
	Err  error
}

func (e *DBError) Error() string { return e.Err.Error() }

// Unwrap returns the driver's error.
func (e *DBError) Unwrap() error { return e.Err }

// dbErrorKind returns the kind of a DBError in err's chain.
func dbErrorKind(err error) (DBErrorKind, bool) {
	var de *DBError
	if errors.As(err, &de) {
		return de.Kind, true
	}
	return 0, false
}

// isConflict reports whether err is a statement that lost to another
// transaction and wrote nothing: a DBError of kind DBErrConflict, or
// PostgreSQL's deadlock_detected, serialization_failure or
// lock_not_available.
func isConflict(err error) bool {
	if err == nil {
		return false
	}
	if k, ok := dbErrorKind(err); ok {
		return k == DBErrConflict
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001" || pe.Code == "55P03")
}

// SQLStatements splits a script of invgen's SQL templates (schema.sql) into
// its statements, for drivers that run one statement per call: at each
// semicolon that ends a line, dropping pieces that hold only comments.
// The templates keep semicolons out of their comments and literals.
func SQLStatements(script string) []string {
	var out []string
	for _, piece := range strings.Split(script, ";\n") {
		code := false
		for _, line := range strings.Split(piece, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "--") {
				code = true
				break
			}
		}
		if code {
			out = append(out, strings.TrimSpace(piece))
		}
	}
	return out
}

// NamedSQL returns the statements of a file of invgen's templates whose
// statements each follow a "-- name: Name" line (direct.sql), by name,
// without their trailing semicolons.
func NamedSQL(file string) map[string]string {
	out := map[string]string{}
	for _, block := range strings.Split(file, "-- name: ")[1:] {
		name, body, _ := strings.Cut(block, "\n")
		out[strings.TrimSpace(name)] = strings.TrimSuffix(strings.TrimSpace(body), ";")
	}
	return out
}

// SQLTx runs fn in a transaction of db, which the generated ledgers of the
// mysql and sqlite engines hold (a *sql.DB, a *sql.Conn, or a wrapper
// with their BeginTx): committed when fn returns nil, rolled back when it
// returns an error. Those ledgers write a hold with its purchase row, and
// end it with its release row, through it.
func SQLTx(ctx context.Context, db any, fn func(*sql.Tx) error) error {
	b, ok := db.(txBeginner)
	if !ok {
		return SQLTxRefusal(db)
	}
	tx, err := b.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// SQLTxRefusal is nil when db can begin a transaction (SQLTx), else an
// ErrNotSupported that says so: the generated ledgers of the mysql and
// sqlite engines keep no holds over such a pool (their RefuseHolds).
func SQLTxRefusal(db any) error {
	if _, ok := db.(txBeginner); ok {
		return nil
	}
	return fmt.Errorf("%w: holds: the ledger's pool (%T) cannot begin a transaction (it has no BeginTx)", ErrNotSupported, db)
}

type txBeginner interface {
	BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
}
