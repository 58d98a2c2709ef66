package runtime

import (
	"context"
	"encoding/json"
	"slices"
)

// Kind says what a ledger row records.
type Kind string

// The kinds of ledger rows. Init and adjust rows live in the prefix's
// modification table, the others in its usage table.
const (
	KindInit    Kind = "init"    // first stock of an item
	KindAdjust  Kind = "adjust"  // an operator's correction, + or −
	KindDecr    Kind = "decr"    // a purchase, −n
	KindIncr    Kind = "incr"    // units returned to stock, +n
	KindRelease Kind = "release" // a purchase given back whole, +n
)

// Modification reports whether rows of kind k belong to the modification
// table (they change an item's capacity) rather than the usage table.
func (k Kind) Modification() bool { return k == KindInit || k == KindAdjust }

// State is the state of a ledger row.
type State string

// Ledger row states. Only committed rows count towards stock.
const (
	StateCommitted State = "committed"
	StateVoid      State = "void"
)

// Entry is one ledger row as the runtime sees it.
type Entry[K any] struct {
	Item  K
	Kind  Kind
	Delta int64
	OpKey string
	// Attempt identifies the Redis reservation the row belongs to (0 for
	// Init), so that a row of an earlier use of the op key is told apart.
	Attempt int64
	// Hold says what the row does to a hold (holds.go).
	Hold HoldIntent
}

// Row is what the ledger holds for one op key.
type Row struct {
	State   State
	Delta   int64
	Attempt int64
}

// Totals is an item's stock as the ledger computes it.
type Totals[K any] struct {
	Item K
	// Capacity is the sum of the item's committed modifications.
	Capacity int64
	// Available is Capacity plus the sum of its committed usage.
	Available int64
	// Buckets is the item's number of stock buckets, as its init row's
	// attempt holds it (0 for one).
	Buckets int
}

// Ledger is the SQL side of a prefix. Generated packages implement it with
// their sqlc queries; the runtime never writes SQL itself. Errors are
// returned as the driver gives them: the runtime classifies them.
type Ledger[K any] interface {
	// CreateTables creates the prefix's tables and indexes if they are
	// missing.
	CreateTables(ctx context.Context) error
	// TablesInitialized reports whether both tables exist.
	TablesInitialized(ctx context.Context) (bool, error)
	// Acquire returns a Ledger bound to one connection, taken from the pool
	// under ctx, and the function that gives the connection back. An error
	// means that nothing was sent. A Ledger over a single connection may
	// return itself and a no-op.
	Acquire(ctx context.Context) (Ledger[K], func(), error)
	// Insert writes e as a committed row. A row with the same item, kind
	// and op key makes it fail with a unique violation.
	Insert(ctx context.Context, e Entry[K]) error
	// Void writes e as a void row unless a row with its item, kind and op
	// key exists, and returns the row that exists afterwards.
	Void(ctx context.Context, e Entry[K]) (Row, error)
	// Lookup returns the row of item, kind and op key; found is false when
	// there is none.
	Lookup(ctx context.Context, item K, kind Kind, opKey string) (row Row, found bool, err error)
	// Totals returns the stock of one item; found is false when the item
	// was never initialized.
	Totals(ctx context.Context, item K) (t Totals[K], found bool, err error)
	// Items returns up to limit items in key order, starting after the
	// item after (or from the first item when first is true).
	Items(ctx context.Context, after K, first bool, limit int) ([]Totals[K], error)
	BatchWriter
}

// Batch is a batch of usage rows for the stream ledger's flusher, column by
// column, items in their Redis form (the SQL casts them to the key type).
type Batch struct {
	Items    []string
	Deltas   []int64
	Kinds    []string
	OpKeys   []string
	Attempts []int64
}

// Len is the number of rows in b.
func (b *Batch) Len() int { return len(b.Items) }

// JSON returns b as a JSON array of [item, delta, kind, op key, attempt]
// arrays, in order: the one parameter of the flush statements of the mysql
// and sqlite engines (JSON_TABLE, json_each). Items and op keys are valid
// UTF-8, as the runtime checks them, so they travel unchanged.
func (b *Batch) JSON() (string, error) {
	rows := make([][5]any, b.Len())
	for i := range rows {
		rows[i] = [5]any{b.Items[i], b.Deltas[i], b.Kinds[i], b.OpKeys[i], b.Attempts[i]}
	}
	out, err := json.Marshal(rows)
	return string(out), err
}

// releasesPerPurchase sets each release of b to give back what the first
// purchase of its item and op key earlier in b took: that purchase's row is
// the one the ledger keeps (the flush statement looks up the ledger's
// own). It returns the items of the releases it changed: Redis gave back
// the units of a repeat of the purchase, which the ledger refuses.
func (b *Batch) releasesPerPurchase() []string {
	var changed []string
	var took map[[2]string]int64
	for i, kind := range b.Kinds {
		if kind != string(KindRelease) && kind != string(KindDecr) {
			continue
		}
		if took == nil {
			took = map[[2]string]int64{}
		}
		key := [2]string{b.Items[i], b.OpKeys[i]}
		t, seen := took[key]
		switch {
		case kind == string(KindDecr) && !seen:
			took[key] = b.Deltas[i]
		case kind == string(KindRelease) && seen && t < 0 && b.Deltas[i] != -t:
			b.Deltas[i] = -t
			if !slices.Contains(changed, b.Items[i]) {
				changed = append(changed, b.Items[i])
			}
		}
	}
	return changed
}

func (b *Batch) reset() {
	b.Items, b.Deltas, b.Kinds, b.OpKeys, b.Attempts = b.Items[:0], b.Deltas[:0], b.Kinds[:0], b.OpKeys[:0], b.Attempts[:0]
}

// BatchWriter writes usage rows to the ledger in one statement, skipping
// rows whose item, kind and op key are there already, so that writing a
// batch twice changes nothing. A release row gives back what the ledger's
// row of its purchase took, when there is one. It returns the items (in
// Redis form) of rows that are not what Redis applied: their op key the
// ledger holds from another attempt (changes Redis made a second time
// after it had forgotten their op key, which the ledger refused), or a
// release the ledger gives back another number of units for. Redis must
// be refreshed from the ledger for those.
type BatchWriter interface {
	Flush(ctx context.Context, b *Batch) (conflicts []string, err error)
}
