package runtime

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Holds: units a buyer holds while paying.
//
// A hold is a purchase whose ledger row is written together with the
// hold's own row, open until a deadline on the ledger database's clock.
// Its units leave stock when it is taken, exactly as a Decr's do: Redis
// and the ledger count them as sold from the first instant, so no rule of
// the contract changes. What the hold adds is how it ends, once:
//
//	confirmed  Confirm before the deadline: the purchase stands (a later
//	           Release of the op key is a refund of it)
//	cancelled  Cancel before the deadline: a release row gives the units
//	           back, through the journal like any Release
//	expired    neither by the deadline: the janitor (or ExpireHolds, or a
//	           Cancel that comes late) ends it the same way
//
// Only an open hold changes state, in the same ledger statement that
// writes the release row, so a hold resolves at most once however the
// calls race: a Confirm and a Cancel, a Cancel and the janitor, a retry
// and the dead process it retries. The deadline is the database's, one
// clock for every process, as TigerBeetle's pending transfers time out on
// the cluster's clock.

// Hold errors, checked with errors.Is.
var (
	// ErrHoldExpired: the hold's deadline passed before Confirm. Its units
	// are (or are being) given back; the purchase did not happen.
	ErrHoldExpired = errors.New("invgen: hold expired")
	// ErrHoldConfirmed: Cancel of a hold that was confirmed. Release the
	// purchase (a refund) to give its units back.
	ErrHoldConfirmed = errors.New("invgen: hold confirmed")
	// ErrHoldCancelled: Confirm of a hold that was cancelled.
	ErrHoldCancelled = errors.New("invgen: hold cancelled")
	// ErrHoldNotFound: no hold has this key for the item (it was never
	// taken, or its Hold did not succeed, or the op key is a purchase
	// made by Decr).
	ErrHoldNotFound = errors.New("invgen: hold not found")
	// ErrNotSupported: the prefix cannot do this: holds need the sync
	// ledger and a ledger that keeps them (HoldStore).
	ErrNotSupported = errors.New("invgen: not supported")
)

// HoldState is the state of a hold in the ledger.
type HoldState string

// The states of a hold.
const (
	HoldOpen      HoldState = "open"
	HoldConfirmed HoldState = "confirmed"
	HoldCancelled HoldState = "cancelled"
	HoldExpired   HoldState = "expired"
)

// HoldIntent says what a ledger row does to a hold. The zero value: the
// row is an ordinary change (a Release of an op key whose hold is open
// ends the hold, as a Cancel would).
type HoldIntent struct {
	// TTL, on a purchase: the row is a Hold's, written with its hold,
	// open for TTL on the database's clock.
	TTL time.Duration
	// End, on a release: the row is a Cancel's, or the janitor's ending
	// of an expired hold; the hold must be open.
	End bool
	// expiry: the release is ExpireHolds'. It waits for nothing in
	// flight (ErrBusy at once): the hold is still due at the next round,
	// and one busy hold does not hold up the others.
	expiry bool
}

// op is the operation an Observer sees for a change of kind with intent h.
func (h HoldIntent) op(kind Kind) Op {
	switch {
	case h.TTL > 0:
		return OpHold
	case h.End:
		return OpCancel
	}
	return Op(kind)
}

// HoldRow is a hold as the ledger holds it.
type HoldRow struct {
	Units int64
	State HoldState
	// Deadline is when the hold expires, and Now the database's time
	// when it was read, both on the database's clock.
	Deadline, Now time.Time
}

// DueHold names an open hold past its deadline.
type DueHold[K any] struct {
	Item    K
	HoldKey string
}

// HoldStore is the ledger side of holds. The generated ledgers of every
// engine implement it; a Core whose ledger does not refuses holds with
// ErrNotSupported.
type HoldStore[K any] interface {
	// InsertHold writes e, a purchase row, and its hold of -e.Delta
	// units open for ttl, in one transaction. A row with the same item,
	// kind and op key makes it fail with a unique violation.
	InsertHold(ctx context.Context, e Entry[K], ttl time.Duration) error
	// EndHold ends the open hold of e.Item and e.OpKey (cancelled before
	// its deadline, expired after it) and writes e, the release row of its
	// units, in one transaction. ended is false, and nothing was written,
	// when no open hold was there.
	EndHold(ctx context.Context, e Entry[K]) (ended bool, err error)
	// ConfirmHold confirms the open hold of item and holdKey if its
	// deadline has not passed; false when it changed nothing.
	ConfirmHold(ctx context.Context, item K, holdKey string) (bool, error)
	// LookupHold returns the hold of item and holdKey; found is false when
	// there is none.
	LookupHold(ctx context.Context, item K, holdKey string) (h HoldRow, found bool, err error)
	// HeldUnits returns the units of the item's open holds.
	HeldUnits(ctx context.Context, item K) (int64, error)
	// DueHolds returns up to limit open holds past their deadline, the
	// oldest first.
	DueHolds(ctx context.Context, limit int) ([]DueHold[K], error)
}

// holdsRefuser is a HoldStore that can tell it keeps no holds after all:
// a database/sql pool that cannot begin a transaction (SQLTx).
type holdsRefuser interface{ RefuseHolds() error }

// holdsRefused is why hs keeps no holds, or nil.
func holdsRefused(hs any) error {
	if r, ok := hs.(holdsRefuser); ok {
		return r.RefuseHolds()
	}
	return nil
}

// holdStore returns l's holds, if it keeps them. A ledger that refuses
// them has none open: its changes are rows alone.
func holdStore[K any](l Ledger[K]) (HoldStore[K], bool) {
	hs, ok := l.(HoldStore[K])
	if !ok || holdsRefused(hs) != nil {
		return nil, false
	}
	return hs, true
}

// MaxHoldTTL is the longest a hold may stay open.
const MaxHoldTTL = 7 * 24 * time.Hour

// holdRefusal is a ledger's refusal of a hold's row: the hold is not open
// (or there is none). Nothing was written. It wraps the matching sentinel.
type holdRefusal struct{ err error }

func (e *holdRefusal) Error() string { return e.err.Error() }
func (e *holdRefusal) Unwrap() []error {
	return []error{e.err, &DBError{Kind: DBErrRejected, Err: e.err}}
}

// enterHolds is holds and enter: a call on holds begins. The caller
// defers c.wg.Done() when it returns no error.
func (c *Core[K]) enterHolds(ctx context.Context) (HoldStore[K], error) {
	hs, err := c.holds()
	if err != nil {
		return nil, err
	}
	return hs, c.enter(ctx)
}

// checkHold refuses a bad item or hold key, as a change does.
func (c *Core[K]) checkHold(id K, holdKey string) error {
	if _, err := c.codec.Encode(id); err != nil {
		return err
	}
	return checkOpKey(holdKey)
}

// noHold is the error of a hold key that holds nothing.
func noHold(id any, holdKey string) error {
	return fmt.Errorf("%w: item %v has no hold %q", ErrHoldNotFound, id, holdKey)
}

// holds returns the Core's hold store, or ErrNotSupported.
func (c *Core[K]) holds() (HoldStore[K], error) {
	hs, ok := c.ledger.(HoldStore[K])
	if !ok {
		return nil, fmt.Errorf("%w: the ledger of prefix %s keeps no holds", ErrNotSupported, c.prefix)
	}
	switch refused := holdsRefused(hs); {
	case refused != nil:
		return nil, fmt.Errorf("prefix %s: %w", c.prefix, refused)
	case c.stream:
		return nil, fmt.Errorf("%w: holds need the sync ledger (prefix %s is stream): a hold must be in the ledger before its holder is told it holds", ErrNotSupported, c.prefix)
	}
	return hs, nil
}

// Hold takes n units of an item out of sale for ttl under holdKey: a
// purchase that the holder confirms (Confirm) or gives back (Cancel), and
// that gives its units back by itself once ttl has passed on the ledger
// database's clock (the janitor ends it; see JanitorConfig). It returns
// ErrInsufficientStock, and takes nothing, when fewer than n are
// available. It succeeds once the purchase row and the hold are committed
// in the ledger. Repeating it with the same hold key returns the first
// outcome; the hold key is the purchase's op key, so a Decr of the same
// key is the same purchase.
func (c *Core[K]) Hold(ctx context.Context, id K, n int64, holdKey string, ttl time.Duration) (Result, error) {
	bad := checkUnits(n)
	if bad == nil && (ttl < time.Millisecond || ttl > MaxHoldTTL) {
		bad = argError("hold ttl %v is out of range 1ms..%v", ttl, MaxHoldTTL)
	}
	if bad == nil {
		if _, err := c.holds(); err != nil {
			bad = err
		}
	}
	res, err := c.change(ctx, KindDecr, id, strconv.FormatInt(n, 10), holdKey, HoldIntent{TTL: ttl}, bad)
	if err != nil || !res.Replayed {
		return res, err
	}
	// A repeat: the op key may have been an ordinary purchase's.
	if _, found, lerr := c.lookupHold(ctx, id, holdKey); lerr != nil {
		return res, lerr
	} else if !found {
		return Result{}, fmt.Errorf("%w: op key %q of item %v is a purchase, not a hold", ErrInvalidArgument, holdKey, id)
	}
	return res, nil
}

// Cancel ends the open hold holdKey of an item and gives its units back,
// once. A hold past its deadline that the janitor has not ended yet is
// ended by Cancel, as expired. Repeating it returns the first outcome
// (Replayed). A confirmed hold gets ErrHoldConfirmed, and an op key that
// holds nothing ErrHoldNotFound or ErrNotFound.
func (c *Core[K]) Cancel(ctx context.Context, id K, holdKey string) (Result, error) {
	var bad error
	if _, err := c.holds(); err != nil {
		bad = err
	}
	res, err := c.change(ctx, KindRelease, id, "", holdKey, HoldIntent{End: true}, bad)
	if err != nil || !res.Replayed {
		return res, err
	}
	// A repeat of the op key's release: Redis answered its record, which a
	// refund (Release) of a confirmed hold, or the release of a purchase
	// that was never a hold, wrote as well as a Cancel. The hold says
	// which it was.
	h, found, err := c.lookupHold(ctx, id, holdKey)
	switch {
	case err != nil:
		return Result{}, err
	case !found:
		return Result{}, noHold(id, holdKey)
	case h.State == HoldConfirmed:
		return Result{}, fmt.Errorf("%w: hold %q of item %v (and refunded)", ErrHoldConfirmed, holdKey, id)
	}
	return res, nil
}

// Confirm turns the open hold holdKey of an item into a purchase for good,
// if its deadline has not passed on the ledger database's clock. It
// touches neither Redis nor the stock: the hold's units left stock when it
// was taken, so the holder of the last unit confirms it while Get reports
// 0. Repeating it succeeds; a hold that expired gets ErrHoldExpired (even
// if its units are not given back yet), one that was cancelled
// ErrHoldCancelled, and a key that holds nothing ErrHoldNotFound.
func (c *Core[K]) Confirm(ctx context.Context, id K, holdKey string) (err error) {
	ctx, done := c.observe(ctx, OpConfirm)
	defer func() { done(false, err) }()
	hs, err := c.enterHolds(ctx)
	if err != nil {
		return err
	}
	defer c.wg.Done()
	if err := c.checkHold(id, holdKey); err != nil {
		return err
	}
	ok, err := hs.ConfirmHold(ctx, id, holdKey)
	if err != nil {
		return fmt.Errorf("invgen: confirm %v: %w", id, err)
	}
	if ok {
		return nil
	}
	h, found, err := c.lookupHold(ctx, id, holdKey)
	switch {
	case err != nil:
		return err
	case !found:
		return noHold(id, holdKey)
	case h.State == HoldConfirmed:
		return nil
	case h.State == HoldCancelled:
		return fmt.Errorf("%w: hold %q of item %v", ErrHoldCancelled, holdKey, id)
	}
	return fmt.Errorf("%w: hold %q of item %v expired at %v", ErrHoldExpired, holdKey, id, h.Deadline.UTC().Format(time.RFC3339Nano))
}

// LookupHold returns the hold holdKey of an item as the ledger holds it;
// found is false when there is none.
func (c *Core[K]) LookupHold(ctx context.Context, id K, holdKey string) (HoldRow, bool, error) {
	if _, err := c.enterHolds(ctx); err != nil {
		return HoldRow{}, false, err
	}
	defer c.wg.Done()
	if err := c.checkHold(id, holdKey); err != nil {
		return HoldRow{}, false, err
	}
	return c.lookupHold(ctx, id, holdKey)
}

func (c *Core[K]) lookupHold(ctx context.Context, id K, holdKey string) (HoldRow, bool, error) {
	hs, err := c.holds()
	if err != nil {
		return HoldRow{}, false, err
	}
	h, found, err := hs.LookupHold(ctx, id, holdKey)
	if err != nil {
		return HoldRow{}, false, fmt.Errorf("invgen: hold %q of item %v: %w", holdKey, id, err)
	}
	return h, found, nil
}

// Held returns the units of an item's open holds: out of stock (Get does
// not count them) and not sold for good yet. Open holds past their
// deadline count until they are ended.
func (c *Core[K]) Held(ctx context.Context, id K) (int64, error) {
	hs, err := c.enterHolds(ctx)
	if err != nil {
		return 0, err
	}
	defer c.wg.Done()
	if _, err := c.codec.Encode(id); err != nil {
		return 0, err
	}
	n, err := hs.HeldUnits(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("invgen: held units of %v: %w", id, err)
	}
	return n, nil
}

// expirePage is how many due holds one ExpireHolds round reads at a time.
const expirePage = 256

// ExpireHolds ends every open hold whose deadline has passed and gives its
// units back, each through the journal like a Cancel. It returns how many
// it ended. Holds confirmed or cancelled meanwhile are left as they are.
// The janitor runs it on a schedule; several may run at once.
func (c *Core[K]) ExpireHolds(ctx context.Context) (int, error) {
	hs, err := c.enterHolds(ctx)
	if err != nil {
		return 0, err
	}
	defer c.wg.Done()
	ended := 0
	for {
		due, err := hs.DueHolds(ctx, expirePage)
		if err != nil {
			return ended, fmt.Errorf("invgen: expire holds: %w", err)
		}
		var errs []error
		page := 0
		for _, d := range due {
			res, err := c.change(ctx, KindRelease, d.Item, "", d.HoldKey, HoldIntent{End: true, expiry: true}, nil)
			switch {
			case err == nil && !res.Replayed:
				page++
			case err == nil, errors.Is(err, ErrHoldConfirmed), errors.Is(err, ErrBusy):
				// Ended by another, confirmed at its deadline, or in
				// flight: the next round sees it again if it is still due.
			default:
				errs = append(errs, err)
			}
		}
		ended += page
		// Another page only while this one was full and moved: holds
		// that stay due (busy items) wait for the next round.
		if len(errs) > 0 || len(due) < expirePage || page == 0 {
			return ended, errors.Join(errs...)
		}
	}
}

// insertRow writes the ledger row of a reserved change over l: a hold's
// with its hold, a release's ending the hold of its op key when one is
// open, else the row alone.
func (c *Core[K]) insertRow(ctx context.Context, l Ledger[K], e Entry[K]) error {
	if e.Hold.TTL == 0 && e.Kind != KindRelease {
		return l.Insert(ctx, e) // a purchase, a return, a restock: the row alone
	}
	hs, ok := holdStore(l)
	switch {
	case !ok:
		return l.Insert(ctx, e)
	case e.Hold.TTL > 0:
		return hs.InsertHold(ctx, e, e.Hold.TTL)
	}
	ended, err := hs.EndHold(ctx, e)
	if err != nil || ended {
		return err
	}
	if !e.Hold.End {
		// A Release of an op key with no open hold: a refund of a
		// confirmed hold, or an ordinary release.
		return l.Insert(ctx, e)
	}
	return c.refuseEnd(ctx, hs, e)
}

// refuseEnd answers a Cancel (or an expiry) that found no open hold: a
// hold cancelled or expired already has its release row, which the
// caller's unique-violation path replays; any other is refused.
func (c *Core[K]) refuseEnd(ctx context.Context, hs HoldStore[K], e Entry[K]) error {
	h, found, err := hs.LookupHold(ctx, e.Item, e.OpKey)
	switch {
	case err != nil:
		return &DBError{Kind: DBErrUnknown, Err: err}
	case !found:
		return &holdRefusal{noHold(e.Item, e.OpKey)}
	case h.State == HoldConfirmed:
		return &holdRefusal{fmt.Errorf("%w: hold %q of item %v", ErrHoldConfirmed, e.OpKey, e.Item)}
	}
	return &DBError{Kind: DBErrUniqueViolation, Err: fmt.Errorf("hold %q of item %v is %s already", e.OpKey, e.Item, h.State)}
}

// voidRow settles a pending change over l: a void row goes in unless the
// op key has a row, and the row that exists is returned. A release whose
// op key has an open hold is rolled forward instead (the hold ended and
// its release row written): a void release row would leave the hold open
// for good, its units out of stock.
func (c *Core[K]) voidRow(ctx context.Context, l Ledger[K], e Entry[K]) (Row, error) {
	if hs, ok := holdStore(l); ok && e.Kind == KindRelease {
		ended, err := hs.EndHold(ctx, e)
		if err != nil {
			return Row{}, err
		}
		if ended {
			row, found, err := l.Lookup(ctx, e.Item, e.Kind, e.OpKey)
			if err == nil && !found {
				err = errors.New("the release row of an ended hold is gone")
			}
			return row, err
		}
	}
	return l.Void(ctx, e)
}
