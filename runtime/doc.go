// Package runtime is the engine behind every package that invgen generates.
//
// A generated package is a thin typed facade: it knows its prefix, its key
// type and its sqlc queries, and hands everything else to a [Core] from this
// package. The algorithm lives here once: hash-tagged Redis keys, the Lua
// scripts that decide each change in one atomic step, the journal of changes
// whose ledger row is not yet committed, the fenced refresh and the
// reconciliation that settles what a crash left behind.
//
// Generated code imports this package as invrt. Applications rarely need to:
// the generated packages re-export the sentinel errors and options.
//
// # How a change flows (sync ledger)
//
//  1. reserve.lua checks the op record, the fence and the stock, applies the
//     delta, records the op as pending and journals it with a lease.
//  2. The ledger row is inserted in SQL (unique on item, kind and op key).
//  3. commit.lua marks the op committed and clears the journal entry.
//
// When step 2 fails for certain, abort.lua gives the units back before the
// error returns. When its outcome is unknown, a void row is written (or the
// committed row found) to settle it; if SQL cannot be reached at all the
// entry stays in the journal and [Core.Reconcile] settles it once its lease
// has passed. Redis never holds a negative stock and never counts a unit
// twice; the ledger holds exactly the changes that happened.
package runtime
