package runtime

import (
	"errors"
	"fmt"
)

// Sentinel errors, checked with errors.Is. Generated packages re-export them.
var (
	// ErrNotFound: the item does not exist (it was never initialized), or a
	// release names a purchase that does not exist.
	ErrNotFound = errors.New("invgen: not found")
	// ErrAlreadyExists: Init of an item that was initialized before.
	ErrAlreadyExists = errors.New("invgen: already exists")
	// ErrInsufficientStock: the item has fewer units available than asked
	// for. It is an ordinary outcome of a sale, not a failure.
	ErrInsufficientStock = errors.New("invgen: insufficient stock")
	// ErrOverLimit: an Incr would return more units than were sold, or an
	// Adjust would take the item's capacity over MaxQuantity.
	ErrOverLimit = errors.New("invgen: over limit")
	// ErrInvalidArgument: an argument is wrong. Nothing was written.
	ErrInvalidArgument = errors.New("invgen: invalid argument")
	// ErrBusy: the item is being refreshed, or an operation with the same op
	// key is still in progress, or the ledger row lost to another
	// transaction every time it was sent (a deadlock or a lock wait
	// timeout on PostgreSQL or InnoDB, a busy or locked SQLite file: a
	// DBErrConflict). In that last case nothing was written: a change
	// gave its units back and its op key is free (a retry completing an
	// earlier attempt leaves that attempt as it was). Retrying later is
	// safe.
	ErrBusy = errors.New("invgen: busy")
	// ErrVoided: an earlier operation with this op key failed and was voided
	// in the ledger. The op key cannot be used again; nothing was taken.
	ErrVoided = errors.New("invgen: operation voided")
	// ErrInDoubt: the outcome of the operation is not known yet. Either the
	// caller's context ended while its ledger row was on its way (the change
	// completes in the background, bounded by WithLedgerTimeout), or the
	// ledger could not be reached to learn whether the row was committed
	// (its units stay held until Reconcile settles it after its lease).
	// Retrying with the same op key is safe and returns the outcome.
	ErrInDoubt = errors.New("invgen: outcome in doubt")
	// ErrCorrupt: Redis holds a key of the item, or the op record of the op
	// key, that invgen did not write (a wrong type, a field that is not a
	// number). Only that item or op key is affected; Refresh of the item
	// rebuilds it from the ledger, and Audit lists it.
	ErrCorrupt = errors.New("invgen: corrupt Redis state")
	// ErrLayoutMismatch: this process's layout of the prefix (Redis
	// namespace, shards, ledger mode, key type, key length) is not the one
	// its ledger database records, or the recorded one is retired by a
	// layout switch. Nothing was done; a layout changes only by
	// SwitchLayout.
	ErrLayoutMismatch = errors.New("invgen: layout mismatch")
	// ErrUnsafeRedis: the Redis server may evict keys (its maxmemory-policy
	// is not noeviction), which would drop op records and items that
	// only Redis holds. Nothing was done on it. Set maxmemory-policy
	// noeviction on the server; WithEvictionAllowed lets such a server
	// serve, with a warning.
	ErrUnsafeRedis = errors.New("invgen: unsafe redis configuration")
	// ErrClosed: the manager was closed.
	ErrClosed = errors.New("invgen: closed")
)

// busyIfConflict returns err matching ErrBusy too when it is a ledger
// conflict (isConflict): the statement lost to another transaction and
// wrote nothing. Any other err is returned as it is.
func busyIfConflict(err error) error {
	if !isConflict(err) {
		return err
	}
	return fmt.Errorf("%w: the ledger row lost to another transaction: %w", ErrBusy, err)
}

// argError reports a bad argument; it matches ErrInvalidArgument.
func argError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArgument, fmt.Sprintf(format, args...))
}
