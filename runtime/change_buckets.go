package runtime

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// The steps of a purchase of an item split into stock buckets (see
// buckets.go): it tries its own bucket first, falls over to the next
// while one is left, follows the pointer its own bucket holds to where an
// earlier try of its op key went, and, when no bucket alone has enough
// but all together do, gathers them into its own once. A try in another
// bucket than its own holds its pointer's lease.

// spreadOver makes the call a purchase of an item split into n buckets,
// its next try in its own bucket.
func (cc *changeCall[K]) spreadOver(n int) {
	cc.sp = cc.c.newSpread(cc.item, n, cc.opKey)
	cc.target(cc.sp.current())
}

// learnSplit learns from r, the first look at the item's own shard
// (bucket 0), that the item is split. A change other than a purchase is
// handed to changeSplit; a purchase goes on over the buckets, moved to its
// own bucket when that is another.
func (cc *changeCall[K]) learnSplit(ctx context.Context, r reserveReply) (moved bool, v verdict) {
	if r.buckets <= 1 || cc.sp != nil {
		return false, again
	}
	cc.c.learnBuckets(cc.item, r.buckets)
	if cc.kind != KindDecr {
		return false, answer(cc.c.changeSplit(ctx, cc.kind, cc.id, cc.item, cc.arg, cc.opKey, cc.hold, r.buckets))
	}
	cc.sp = cc.c.newSpread(cc.item, r.buckets, cc.opKey)
	if r.code == codeBuckets || cc.sp.first != 0 {
		// The item's own shard is not this purchase's bucket.
		cc.target(cc.sp.current())
		return true, again
	}
	return false, again
}

// holdPointer holds the pointer's lease for a try in another bucket than
// the purchase's own, and returns it (0 for a try in its own bucket);
// moved is true when the lease was lost and the next try goes elsewhere.
func (cc *changeCall[K]) holdPointer(ctx context.Context) (over int64, moved bool, v verdict) {
	if cc.sp == nil {
		return 0, false, again
	}
	over, lost, err := cc.c.holdPointer(ctx, cc.sp, cc.opKey, cc.attempt)
	if err != nil {
		return 0, false, fail(cc.wrap(err))
	}
	if lost {
		cc.target(cc.sp.current())
		return 0, true, again
	}
	return over, false, again
}

// settleSpread settles the pointer of a purchase reserved in another
// bucket than its own, and has the buckets rebalanced later when its own
// was short while this one has plenty.
func (cc *changeCall[K]) settleSpread(ctx context.Context, r reserveReply) {
	sp := cc.sp
	if sp == nil || !sp.over() {
		return
	}
	cc.c.settlePointer(ctx, sp, cc.opKey, cc.attempt)
	if r.available >= 2*int64(sp.n) {
		cc.c.rebalanceLater(cc.id, cc.item, sp.n)
	}
}

// forward follows the pointer the purchase's own bucket holds: an earlier
// try of its op key fell over to the bucket it names.
func (cc *changeCall[K]) forward(ctx context.Context, r reserveReply) verdict {
	if cc.sp == nil {
		return fail(cc.unexpected(r))
	}
	moved, err := cc.c.followPointer(ctx, cc.sp, r, cc.id, cc.opKey, cc.attempt, &cc.wait)
	if err != nil {
		return fail(err)
	}
	if moved {
		cc.target(cc.sp.current())
	}
	return again
}

// refusedSplit handles the refusal r of one bucket of a split purchase:
// each of its steps, in order, either decides (ok: the call's answer, or again for
// the next try) or leaves it to the next. When none decides, every bucket
// has refused: it returns the item's refusal, as the buckets answered
// together and when the sweep began, the next try pointed at the own
// bucket (a record the ledger brings back goes there).
func (cc *changeCall[K]) refusedSplit(ctx context.Context, r reserveReply) (reserveReply, time.Time, verdict, bool) {
	if v, ok := cc.dropStrayPointer(ctx); ok {
		return r, cc.sent, v, true
	}
	if v, ok := cc.fallOver(r); ok {
		return r, cc.sent, v, true
	}
	if v, ok := cc.gather(ctx); ok {
		return r, cc.sent, v, true
	}
	if v, ok := cc.lookAgain(ctx); ok {
		return r, cc.sent, v, true
	}
	sp := cc.sp
	r.available, r.flag, r.soldOut = sp.sum, sp.final, sp.soldOut
	cc.c.dropPointer(ctx, sp, cc.opKey, cc.attempt)
	sp.goTo(sp.first)
	cc.target(sp.current())
	return r, sp.sent, again, false
}

// dropStrayPointer: a pointer that led the try to a bucket without the
// purchase's record is dropped, and the purchase starts again from its
// own bucket.
func (cc *changeCall[K]) dropStrayPointer(ctx context.Context) (verdict, bool) {
	stray, err := cc.c.strayPointer(ctx, cc.sp, cc.opKey)
	if err != nil {
		return fail(cc.wrap(err)), true
	}
	if stray {
		cc.target(cc.sp.current())
		return again, true
	}
	return again, false
}

// fallOver counts the bucket's refusal and moves to the next bucket while
// one is left: the item is short only when every bucket is.
func (cc *changeCall[K]) fallOver(r reserveReply) (verdict, bool) {
	cc.sp.refused(r, cc.sent)
	if next, ok := cc.sp.next(); ok {
		cc.target(next)
		return again, true
	}
	return again, false
}

// gather, once, when no bucket alone has enough but all together do,
// moves the units into the purchase's own bucket and tries it again.
func (cc *changeCall[K]) gather(ctx context.Context) (verdict, bool) {
	sp := cc.sp
	if units, _ := strconv.ParseInt(cc.arg, 10, 64); cc.gathered || sp.soldOut != 0 || sp.sum < units {
		return again, false
	}
	cc.gathered = true
	cc.c.dropPointer(ctx, sp, cc.opKey, cc.attempt)
	if err := cc.c.rebalance(ctx, cc.id, cc.item, sp.n, sp.first); err != nil {
		return fail(cc.wrap(fmt.Errorf("gather its buckets: %w", err))), true
	}
	sp.restart()
	cc.target(sp.current())
	return again, true
}

// lookAgain starts the sweep again, up to three times, when a rebalance
// or a load moved stock between the buckets during it.
func (cc *changeCall[K]) lookAgain(ctx context.Context) (verdict, bool) {
	sp := cc.sp
	moved, err := cc.c.reloaded(ctx, sp)
	if err != nil {
		return fail(cc.wrap(err)), true
	}
	if !moved || cc.relooks >= 3 {
		return again, false
	}
	cc.relooks++
	cc.c.dropPointer(ctx, sp, cc.opKey, cc.attempt)
	sp.restart()
	cc.target(sp.current())
	return again, true
}
