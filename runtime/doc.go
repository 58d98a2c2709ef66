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
// # The states of an op record
//
// Each change's op key (item, kind, op key) has a record in Redis:
//
//	absent     never seen, or forgotten after the op TTL: reserve.lua
//	           decides afresh, and a refusal asks the ledger first whether
//	           the op key is a repeat of a change that happened (recall)
//	pending    "p:delta:available:attempt:lease": decided in Redis, its
//	           ledger row on its way; in the shard's journal until
//	           commit.lua (row committed) or abort.lua (row not written)
//	           settles it, or Reconcile once its lease has passed
//	settled    a field of one of the shard's record buckets, kept for the
//	           op TTL at least: a repeat replays its first outcome
//	pointer    in the own bucket of a purchase of a split item that fell
//	           over: "g:attempt:lease" while that attempt tries the other
//	           buckets, "f:bucket" once one reserved it
//
// # The fields of an item hash
//
// a available, c capacity; the fence f and t of a refresh; what pending
// changes hold: q (sync increases), r (restocks' capacity), p (purchases'
// units), d (adjustments below zero), i (stream increases not yet
// written); w the units a load holds for changes the journal lost; h when
// Init created the item; e the shard's epoch it was loaded in; m the size
// of its filter of purchases' op keys; z a sold-out period; n and b the
// buckets of a split item; v its load count; u:<id> a stream prefix's
// unflushed entries. reserve.lua's header says each in full.
//
// # Where each step is
//
//	change.go          a change as a loop over reserve.lua's replies, one
//	                   function per reply: reserved, duplicate and
//	                   inFlight, heal, repair, busy, unknownRelease, refused
//	change_buckets.go  a purchase of a split item: its own bucket first,
//	                   fallOver, forward (a pointer), gather, lookAgain
//	buckets.go         buckets: spread, pointers, changes other than
//	                   purchases under every bucket's fence (changeHeld),
//	                   rebalance, and a split item's refresh (settleSplit)
//	core.go            reserve, record (the ledger row, then commit or
//	                   abort), replay, settle through the pool, recall
//	lost.go            a refresh after Redis lost a journal: rejournal and
//	                   hold the units of changes in flight
//	refresh.go         Refresh and RefreshAll (fence, load, unfence), and
//	                   Reconcile
//	holds.go           holds: Hold, Confirm, Cancel and the expiry; the
//	                   ledger row of a hold or of its end (insertRow), and
//	                   a release settled by ending its hold (voidRow)
//	janitor.go         Audit and the janitor
//	stream.go          the stream ledger: its flusher's rounds (read,
//	                   collect, write, ack) and the unflushed entries a
//	                   refresh writes itself
//	gate.go, failover.go, soldout.go, layout.go
//	                   servers that lose writes, cluster failovers, the
//	                   sold-out fast path, the layout record
//	scripts/*.lua      the atomic steps in Redis, each with a header
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
