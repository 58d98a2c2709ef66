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
//
// # Servers that lose writes
//
// A Redis restarted from a snapshot, or a replica promoted by a failover,
// may lack the last writes the processes saw acknowledged. Each Core runs
// reserve.lua under a source of its own, with EVALSHA only: such a server
// has lost its script cache, answers NOSCRIPT, and sells nothing until the
// Core opens its gate (gate.go), after which every item it serves is
// refreshed from the ledger before its next change. On a Redis Cluster a
// call that finds a server gone reloads the cluster's layout and tries
// again (failover.go); [WithReplicaAck] makes each change wait for a
// replica. [WithSoldOutCache] answers purchases of a sold-out item in the
// process (soldout.go).
//
// # One hot item on several servers
//
// [Core.InitBuckets] splits an item's stock into buckets under the tags of
// several shards, which a cluster serves from different masters. A
// purchase goes to its op key's bucket and falls over to the others; the
// changes that need the item's capacity run under the fence of every
// bucket (buckets.go).
package runtime
