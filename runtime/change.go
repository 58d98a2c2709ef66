package runtime

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"time"
)

// A change of stock (Decr, Incr, Release, Adjust) of one item is a loop
// over Redis's replies to reserve.lua. Each try is sent, and its reply is
// handed to the step of its code:
//
//	reserved   the change is decided: record it in the ledger (reserved)
//	duplicate  the op key is known: replay its outcome, complete our own
//	           reservation whose reply was lost, complete a dead process's,
//	           or wait for the one in flight (duplicate)
//	forward    a purchase of a split item: follow the pointer its own
//	           bucket holds to another bucket (forward)
//	missing    the item is not in Redis: load it from the ledger, once (heal)
//	corrupt    the item's hash is not invgen's: rebuild it, once (repair)
//	busy       fenced by a refresh, or the op key in flight: wait (busy)
//	unknown    a release whose purchase Redis forgot: ask the ledger (unknownRelease)
//	refused    short or over a limit: for a split purchase fall over to the
//	           next bucket, or gather the buckets (change_buckets.go); then
//	           ask the ledger whether the op key is a repeat before refusing
//	           (refused)
//
// A step returns a verdict: the call's answer, or again for the next try.

// changeCall is what one call of change knows as it goes.
type changeCall[K any] struct {
	c                *Core[K]
	kind             Kind
	id               K
	item, arg, opKey string
	mode             string   // "sync", or "stream" for a stream prefix's purchases and returns
	home             itemKeys // the item's own shard
	k                itemKeys // where the next try goes: home, or a bucket
	keys             []string
	opRec, decrField string
	sp               *spread // a purchase of an item split into buckets
	attempt          int64   // one for the whole call: a try whose reply was lost finds its own reservation
	hold             HoldIntent
	sent             time.Time
	wait             backoff
	healed, repaired bool
	gathered         bool
	relooks          int
	lastCheck        time.Time
}

// verdict is what a step decided: done with the call's answer, or not
// done (again) for another try.
type verdict struct {
	done bool
	res  Result
	err  error
}

// again is the verdict of a step after which the loop tries again.
var again = verdict{}

// answer is the verdict that ends the call with res and err.
func answer(res Result, err error) verdict { return verdict{true, res, err} }

// fail is the verdict that ends the call with err.
func fail(err error) verdict { return verdict{true, Result{}, err} }

// change runs one change through reserve.lua and then the ledger. arg is
// what reserve.lua takes as ARGV[2]; bad, if not nil, is the caller's
// refusal of its arguments, returned (and observed) before anything else.
func (c *Core[K]) change(ctx context.Context, kind Kind, id K, arg, opKey string, hold HoldIntent, bad error) (res Result, err error) {
	ctx, done := c.observe(ctx, hold.op(kind))
	defer func() { done(res.Replayed, err) }()
	if bad != nil {
		return Result{}, bad
	}
	if err := c.enter(ctx); err != nil {
		return Result{}, err
	}
	defer c.wg.Done()
	item, err := c.codec.Encode(id)
	if err != nil {
		return Result{}, err
	}
	if err := checkOpKey(opKey); err != nil {
		return Result{}, err
	}
	nb := c.bucketsOf(item)
	if nb > 1 && kind != KindDecr {
		return c.changeSplit(ctx, kind, id, item, arg, opKey, hold, nb)
	}
	var cc changeCall[K] // on the stack: a purchase allocates nothing for it
	cc.init(c, kind, id, item, arg, opKey)
	cc.hold = hold
	if kind == KindDecr {
		refuse, renewal := c.soldOutLocally(ctx, cc.home, opKey)
		if refuse {
			return Result{}, fmt.Errorf("%w: item %v has 0 available (sold out)", ErrInsufficientStock, id)
		}
		if renewal != nil {
			defer c.endRenewal(cc.home, renewal)
		}
		if nb > 1 {
			cc.spreadOver(nb)
		}
	}
	return cc.run(ctx)
}

// init makes cc the call of a change pointed at the item's own shard.
func (cc *changeCall[K]) init(c *Core[K], kind Kind, id K, item, arg, opKey string) {
	*cc = changeCall[K]{c: c, kind: kind, id: id, item: item, arg: arg, opKey: opKey, mode: "sync",
		home: c.ks.forItem(item), attempt: mrand.Int64N(1<<62) + 1}
	if c.stream && !kind.Modification() {
		cc.mode = "stream"
	}
	cc.target(cc.home)
}

// run is the loop: a try, then the step of its reply, until one answers.
func (cc *changeCall[K]) run(ctx context.Context) (Result, error) {
	for {
		over, moved, v := cc.holdPointer(ctx)
		if v.done {
			return v.res, v.err
		}
		if moved {
			continue // the pointer's lease was lost: the try goes elsewhere
		}
		r, err := cc.try(ctx, over)
		if err != nil {
			return Result{}, cc.wrap(err)
		}
		if v := cc.step(ctx, r); v.done {
			return v.res, v.err
		}
	}
}

// step hands the reply r of a try to the step of its code.
func (cc *changeCall[K]) step(ctx context.Context, r reserveReply) verdict {
	if cc.unreplicated(r) {
		return cc.notReplicated(ctx, r)
	}
	if moved, v := cc.learnSplit(ctx, r); v.done || moved {
		return v
	}
	switch r.code {
	case codeReserved:
		return cc.reserved(ctx, r)
	case codeDuplicate:
		return cc.duplicate(ctx, r)
	case codeForward:
		return cc.forward(ctx, r)
	case codeBuckets:
		// Split, as learnSplit learnt: changeSplit has answered.
		return fail(cc.unexpected(r))
	case codeMissing, codeStale:
		return cc.heal(ctx)
	case codeCorrupt:
		return cc.repair(ctx)
	case codeBadOp:
		return fail(fmt.Errorf("%w: the op record of %s %q of item %v of %s", ErrCorrupt, cc.kind, cc.opKey, cc.id, cc.c.prefix))
	case codeBusy:
		return cc.busy(ctx)
	case codeUnknown:
		return cc.unknownRelease(ctx)
	}
	return cc.refused(ctx, r)
}

// target points the next try at k: the item's own shard, or one of its
// buckets.
func (cc *changeCall[K]) target(k itemKeys) {
	cc.k = k
	cc.opRec = k.op(cc.kind, cc.opKey)
	log := k.journal
	if cc.mode == "stream" {
		log = k.stream
	}
	cc.keys = append(cc.keys[:0], k.item, cc.opRec, log, k.buckets[0], k.buckets[1], k.buckets[2], k.epoch)
	switch cc.kind {
	case KindDecr:
		cc.keys = append(cc.keys, k.filter())
	case KindRelease:
		decrRec := k.op(KindDecr, cc.opKey)
		cc.keys = append(cc.keys, decrRec)
		cc.decrField = k.field(decrRec)
	}
}

// try sends one try of the change to reserve.lua; over is the pointer
// lease a try in another bucket than the purchase's own holds.
func (cc *changeCall[K]) try(ctx context.Context, over int64) (reserveReply, error) {
	if over > 0 {
		failpoint("split-over")
	}
	cc.sent = time.Now()
	r, err := cc.c.reserve(ctx, cc.k, cc.keys, cc.kind, cc.arg, cc.opKey, cc.mode, cc.k.field(cc.opRec), cc.decrField, cc.attempt, over)
	if isWrongType(err) {
		return reserveReply{code: codeCorrupt}, nil
	}
	return r, err
}

// entry is the ledger entry of the change that reply r reserved.
func (cc *changeCall[K]) entry(r reserveReply) Entry[K] {
	return Entry[K]{Item: cc.id, Kind: cc.kind, Delta: r.delta, OpKey: cc.opKey, Attempt: r.attempt, Hold: cc.hold}
}

// wrap names the change in err.
func (cc *changeCall[K]) wrap(err error) error {
	return fmt.Errorf("invgen: %s %v: %w", cc.kind, cc.id, err)
}

// unexpected is the error of a reply code the step cannot have.
func (cc *changeCall[K]) unexpected(r reserveReply) error {
	return cc.wrap(fmt.Errorf("unexpected reply code %d from reserve.lua", r.code))
}

// unreplicated reports whether r is a change of this call that no replica
// confirmed (WithReplicaAck): reserved now, or found reserved or done by a
// try whose reply was lost.
func (cc *changeCall[K]) unreplicated(r reserveReply) bool {
	return r.unacked && (r.code == codeReserved ||
		cc.mode == "stream" && r.code == codeDuplicate && r.state == opCommitted ||
		r.code == codeDuplicate && r.state == opPending && r.attempt == cc.attempt)
}

// notReplicated ends a change no replica confirmed: it may be lost with a
// failover, so it is settled from what the ledger says.
func (cc *changeCall[K]) notReplicated(ctx context.Context, r reserveReply) verdict {
	if r.code == codeReserved && cc.sp != nil && cc.sp.over() {
		cc.c.settlePointer(ctx, cc.sp, cc.opKey, cc.attempt)
	}
	return answer(cc.c.notReplicated(ctx, cc.kind, cc.id, cc.k, cc.opRec, cc.mode, cc.attempt))
}

// reserved records a change Redis decided: in the ledger (sync), or it is
// recorded already (a stream prefix's purchase or return: the flusher
// writes its row).
func (cc *changeCall[K]) reserved(ctx context.Context, r reserveReply) verdict {
	cc.settleSpread(ctx, r)
	if cc.mode == "stream" {
		return answer(Result{Available: r.available, Delta: r.delta}, nil)
	}
	return answer(cc.c.record(ctx, cc.entry(r), cc.k, cc.opRec, r.available, true))
}

// duplicate answers a try whose op key Redis holds a record of.
func (cc *changeCall[K]) duplicate(ctx context.Context, r reserveReply) verdict {
	switch {
	case r.state == opPending && r.attempt == cc.attempt:
		// Our own reservation, whose reply was lost.
		return answer(cc.c.record(ctx, cc.entry(r), cc.k, cc.opRec, r.available, true))
	case r.state != opPending:
		return answer(cc.c.replay(cc.id, r))
	case r.flag:
		// A retry of an op whose process died between Redis and the
		// ledger: its units are reserved, so complete it. The unique key
		// decides between this insert, a late one of the dead attempt and
		// a void row of Reconcile.
		return answer(cc.c.record(ctx, cc.entry(r), cc.k, cc.opRec, r.available, false))
	}
	return cc.inFlight(ctx, r)
}

// inFlight waits for the first attempt of the op key, which is in flight,
// or committed by a process that died before clearing the journal: the
// ledger tells, asked at most every 100 ms.
func (cc *changeCall[K]) inFlight(ctx context.Context, r reserveReply) verdict {
	if time.Since(cc.lastCheck) >= 100*time.Millisecond {
		cc.lastCheck = time.Now()
		if res, done, err := cc.c.committedPending(ctx, cc.entry(r), cc.k, cc.opRec, r.available); done {
			return answer(res, err)
		}
	}
	if err := cc.wait.sleep(ctx, cc.busyWait()); err != nil {
		return fail(fmt.Errorf("%w: op key %q of %v is still in progress", ErrBusy, cc.opKey, cc.id))
	}
	return again
}

// heal loads an item Redis does not hold (or holds from before a loss of
// its server's writes) from the ledger, once.
func (cc *changeCall[K]) heal(ctx context.Context) verdict {
	if cc.healed {
		return fail(fmt.Errorf("%w: item %v of %s vanished from Redis during its load", ErrBusy, cc.id, cc.c.prefix))
	}
	if err := cc.c.heal(ctx, cc.id, cc.item); err != nil {
		return fail(err)
	}
	cc.healed = true
	if cc.sp == nil && cc.kind == KindDecr {
		if n := cc.c.bucketsOf(cc.item); n > 1 {
			// The load told how many buckets the item has.
			cc.spreadOver(n)
		}
	}
	return again
}

// repair rebuilds from the ledger, once, an item whose hash is not what
// invgen writes.
func (cc *changeCall[K]) repair(ctx context.Context) verdict {
	if cc.repaired {
		return fail(fmt.Errorf("%w: item %v of %s", ErrCorrupt, cc.id, cc.c.prefix))
	}
	if err := cc.c.refreshID(ctx, cc.id); err != nil {
		return fail(fmt.Errorf("%w: item %v of %s: repair: %w", ErrCorrupt, cc.id, cc.c.prefix, err))
	}
	cc.repaired = true
	return again
}

// busyWait is how long the call waits for a fence or an op in flight:
// the Core's busy wait, or nothing for an expiry (see HoldIntent).
func (cc *changeCall[K]) busyWait() time.Duration {
	if cc.hold.expiry {
		return 0
	}
	return cc.c.opt.busyWait
}

// busy waits for a fence or an op in flight, up to the busy wait.
func (cc *changeCall[K]) busy(ctx context.Context) verdict {
	if err := cc.wait.sleep(ctx, cc.busyWait()); err != nil {
		return fail(fmt.Errorf("%w: item %v of %s is fenced or op key %q is in progress", ErrBusy, cc.id, cc.c.prefix, cc.opKey))
	}
	return again
}

// unknownRelease asks the ledger what the purchase of a release took,
// when Redis no longer remembers it; the next try gives that back.
func (cc *changeCall[K]) unknownRelease(ctx context.Context) verdict {
	res, taken, err := cc.c.releaseFromLedger(ctx, cc.id, cc.k, cc.opKey)
	if err != nil || taken == 0 {
		return answer(res, err)
	}
	cc.arg = strconv.FormatInt(taken, 10)
	return again
}

// refused handles a refusal (short, over a limit): a split purchase first
// looks in its other buckets; then the item is marked sold out, and a
// refusal that may be a repeat of a change Redis forgot is checked in the
// ledger before it is final.
func (cc *changeCall[K]) refused(ctx context.Context, r reserveReply) verdict {
	sent := cc.sent
	if cc.sp != nil && r.code == codeShort {
		var v verdict
		var decided bool
		if r, sent, v, decided = cc.refusedSplit(ctx, r); decided {
			return v
		}
	}
	cc.markSoldOut(ctx, r, sent)
	if r.flag {
		return fail(rejection(r.code, r.available, cc.id, cc.opKey))
	}
	// Redis may have forgotten this op key: before refusing, ask the
	// ledger whether it is a repeat of a change that happened.
	known, err := cc.c.recall(ctx, cc.id, cc.kind, cc.opKey, cc.k, cc.opRec)
	if err != nil {
		return fail(fmt.Errorf("invgen: %s %v: check op key %q in the ledger: %w", cc.kind, cc.id, cc.opKey, err))
	}
	if !known {
		return fail(rejection(r.code, r.available, cc.id, cc.opKey))
	}
	return again // the op record is back: the next try replays it
}

// markSoldOut starts a sold-out period of the item (WithSoldOutCache)
// when the refusal r says it has none left.
func (cc *changeCall[K]) markSoldOut(ctx context.Context, r reserveReply, sent time.Time) {
	if r.soldOut <= 0 || cc.c.opt.soldOut <= 0 {
		return
	}
	buckets := []itemKeys{cc.k}
	if cc.sp != nil {
		buckets = cc.sp.keys
	}
	cc.c.markSoldOut(ctx, cc.home, buckets, sent, r.soldOut)
}
