package runtime

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Stock buckets: one hot item beyond one Redis server.
//
// Every key of an item lives under one hash tag, so one Redis Cluster
// master serves all its purchases. An item created with InitBuckets (or
// under a spec's buckets) has its stock split into n buckets instead: the
// same item hash under the tags of n different shards, picked so that their
// slots lie spread round the slot ring (placement), hence on as many
// masters as the cluster has, up to n. Each bucket is a whole item to the
// scripts: its own stock, capacity, op records and journal entries, so a
// purchase is still one atomic step on one server.
//
// A purchase goes to the bucket its op key hashes to, and falls over to
// the next ones while they are short: the item refuses only when no bucket
// can serve it. When the buckets hold enough in all but none enough alone,
// they are gathered into the purchase's bucket (a rebalance) and it is
// tried once more. A purchase that had to fall over from its own bucket
// while another holds plenty starts a rebalance in the background, which
// evens the buckets out again. A retry of a purchase that fell over may be
// reserved in its own bucket a second time: the ledger's unique op key
// refuses the second row (sync), or the flusher finds it and refreshes the
// item (stream), and the retry answers the first outcome.
//
// The ledger knows nothing of buckets: one row per change, with the item,
// and the bucket count in the attempt column of the item's init row. Its
// totals are the item's; a refresh (and a rebalance, which is one) fences
// every bucket, waits until none has a change pending, reads the totals
// and loads a split of them, lowering buckets before raising others, so
// that a process dying halfway leaves fewer units on sale, never more, and
// lifts the fences only once every bucket is loaded: no purchase sees a
// half-moved item. Each load counts itself in the bucket (v); a purchase
// refused by every bucket, each read at its own moment, checks that none
// was loaded again since its look, else looks again, so that a unit moved
// during the sweep never makes the item refuse.
//
// Changes other than purchases (Incr, Release, Adjust) are rare in a sale
// and need the item's capacity, which no bucket holds alone: they are made
// under the fence of all buckets, against the ledger's totals (changeSplit).

// MaxBuckets is the most stock buckets an item may have.
const MaxBuckets = 64

// step.lua marks the buckets of a step that changes several at once, so
// that a process dying within it leaves them to be loaded again.
//
//go:embed scripts/step.lua
var stepSrc string

var stepScript = redis.NewScript(stepSrc)

// bucketsOf returns the bucket count of an item as far as this Core
// knows: n for an item known to be split, else 0.
func (c *Core[K]) bucketsOf(item string) int {
	if v, ok := c.split.Load(item); ok {
		return v.(int)
	}
	return 0
}

// learnBuckets records that item has n buckets. Only split items are
// kept: a Core that never sees one holds nothing.
func (c *Core[K]) learnBuckets(item string, n int) {
	if n = c.bucketCount(n); n > 1 {
		c.split.Store(item, n)
	}
}

// bucketCount is the number of buckets an item recorded with n has under
// this Core's layout: at most one per shard (a layout switch may have cut
// the shards below an item's count).
func (c *Core[K]) bucketCount(n int) int { return max(min(n, len(c.ks.tags)), 1) }

// bucketKeys returns the keys of an item's n buckets, bucket 0 (its own
// shard) first.
func (c *Core[K]) bucketKeys(item string, n int) []itemKeys {
	shards := c.ks.placement(c.ks.shard(item), n)
	out := make([]itemKeys, len(shards))
	for i, s := range shards {
		out[i] = c.ks.at(item, s)
	}
	return out
}

// bucketOf is the bucket of an op key among n.
func bucketOf(opKey string, n int) int {
	a, _ := positions(opKey)
	return int(a % uint64(n))
}

// spread is the way of one purchase through the buckets of a split item.
type spread struct {
	n       int
	keys    []itemKeys
	first   int       // the op key's own bucket
	at      int       // how far the way has gone: the bucket tried now is first+at mod n
	loads   []int64   // each bucket's load count at its refusal, -1 if not tried
	sum     int64     // stock of the buckets that refused
	final   bool      // every refusal was final (reserve.lua's flag)
	soldOut int64     // the shortest sold-out period left, 0 if one bucket had none
	sent    time.Time // when the first refused try was sent
	// followed is the bucket a pointer led to (-1 none): its record of
	// the purchase answers, and if it has none the pointer is stray.
	followed  int
	unpointed int // stray pointers dropped by this call
}

// newSpread starts the way of a purchase from its own bucket.
func (c *Core[K]) newSpread(item string, n int, opKey string) *spread {
	sp := &spread{n: n, keys: c.bucketKeys(item, n), first: bucketOf(opKey, n), loads: make([]int64, n)}
	sp.restart()
	return sp
}

// goTo makes bucket b the one tried now.
func (sp *spread) goTo(b int) { sp.at = (b - sp.first + sp.n) % sp.n }

// own is the purchase's own bucket, where its pointer lives.
func (sp *spread) own() itemKeys { return sp.keys[sp.first] }

// over reports whether the bucket tried now is not the purchase's own.
func (sp *spread) over() bool { return sp.bucket() != sp.first }

// restart starts the way again, from the op key's own bucket.
func (sp *spread) restart() {
	sp.at, sp.sum, sp.final, sp.soldOut, sp.sent, sp.followed = 0, 0, true, -1, time.Time{}, -1
	for b := range sp.loads {
		sp.loads[b] = -1
	}
}

func (sp *spread) bucket() int { return (sp.first + sp.at) % sp.n }

func (sp *spread) current() itemKeys { return sp.keys[sp.bucket()] }

// refused counts the refusal of the bucket tried now.
func (sp *spread) refused(r reserveReply, sent time.Time) {
	sp.loads[sp.bucket()] = r.delta // a refusal's delta is the load count
	if sp.sent.IsZero() {
		sp.sent = sent
	}
	sp.sum += r.available
	sp.final = sp.final && r.flag
	switch {
	case r.soldOut <= 0:
		sp.soldOut = 0
	case sp.soldOut < 0 || r.soldOut < sp.soldOut:
		sp.soldOut = r.soldOut
	}
}

// next moves to the next bucket to try.
func (sp *spread) next() (itemKeys, bool) {
	if sp.at+1 < sp.n {
		sp.at++
		return sp.current(), true
	}
	if sp.soldOut < 0 {
		sp.soldOut = 0
	}
	return itemKeys{}, false
}

// pointer runs forward.lua on the pointer of attempt in the own bucket of
// sp (mode settle or drop; see the script).
func (c *Core[K]) pointer(ctx context.Context, sp *spread, opKey, mode string, attempt int64, value string) (bool, error) {
	own := sp.own()
	n, err := forwardScript.Run(ctx, c.rdb, []string{own.op(KindDecr, opKey)}, mode, attempt, value,
		2*c.opt.opTTL.Milliseconds()).Int()
	return n == 1, err
}

// settlePointer points the purchase's own bucket at the bucket that
// reserved it, so that a repeat goes there. Should it fail, a repeat
// finds the reservation once the pointer's lease has passed.
func (c *Core[K]) settlePointer(ctx context.Context, sp *spread, opKey string, attempt int64) {
	_, _ = c.pointer(ctx, sp, opKey, "settle", attempt, "f:"+strconv.Itoa(sp.bucket()))
}

// dropPointer deletes the purchase's pointer: it was refused everywhere,
// and a refusal binds nothing.
func (c *Core[K]) dropPointer(ctx context.Context, sp *spread, opKey string, attempt int64) {
	_, _ = c.pointer(ctx, sp, opKey, "drop", attempt, "")
}

// holdPointer renews the lease of the purchase's pointer before it tries
// a bucket other than its own (the pointer is the attempt's: its own
// bucket refused it), and returns the deadline that bucket must see the
// try before: half the lease, so that a clock of that server behind the
// own bucket's by less than half a lease still refuses a try that a
// repeat may have overtaken. A repeat takes the op key over only once the
// lease has passed (followPointer); a try that stalled beyond it is
// refused as busy, and the next one finds the pointer gone. lost reports
// that the pointer is no longer the attempt's: sp starts again from the
// own bucket, whose record or pointer answers now. A bucket a pointer led
// to needs no lease, the pointer names it already: deadline is -1. In the
// own bucket it is 0.
func (c *Core[K]) holdPointer(ctx context.Context, sp *spread, opKey string, attempt int64) (deadline int64, lost bool, err error) {
	switch {
	case !sp.over():
		return 0, false, nil
	case sp.bucket() == sp.followed:
		return -1, false, nil
	}
	lease := c.opt.lease.Milliseconds()
	d, err := forwardScript.Run(ctx, c.rdb, []string{sp.own().op(KindDecr, opKey)}, "renew", attempt, lease,
		lease+c.opt.opTTL.Milliseconds()).Int64()
	switch {
	case err != nil:
		return 0, false, err
	case d == 0:
		sp.restart()
		return 0, true, nil
	}
	return d - lease/2, false, nil
}

// strayPointer handles a refusal by the bucket a pointer led to: it
// holds no record of the purchase (the attempt that reserved there was
// undone, or its record expired, which a pointer outlives), so the pointer
// binds nothing. Such a bucket refuses whatever stock it has
// (reserve.lua): a purchase reserved there under the old pointer would be
// found by a repeat only until that pointer expires. The pointer is
// dropped and the purchase starts again from its own bucket, which may
// have stock again, rather than refused by the buckets after it.
func (c *Core[K]) strayPointer(ctx context.Context, sp *spread, opKey string) (bool, error) {
	if sp.followed < 0 || sp.bucket() != sp.followed || sp.unpointed >= 3 {
		return false, nil
	}
	if _, err := c.pointer(ctx, sp, opKey, "unpoint", 0, "f:"+strconv.Itoa(sp.followed)); err != nil {
		return false, err
	}
	sp.unpointed++
	sp.restart()
	return true, nil
}

// followPointer answers the pointer r that a purchase of opKey found in
// its own bucket (reserve.lua's code 12): it moves sp to the bucket to try
// next and reports true, or reports false when the own bucket is to be
// tried again after a wait.
func (c *Core[K]) followPointer(ctx context.Context, sp *spread, r reserveReply, id any, opKey string, attempt int64, wait *backoff) (bool, error) {
	switch {
	case r.state == "f":
		// A bucket reserved it: its record there answers.
		if to := int(r.available); to >= 0 && to < sp.n && to != sp.first {
			sp.goTo(to)
			sp.followed = to
			return true, nil
		}
		return false, fmt.Errorf("%w: the pointer of purchase %q of item %v of %s", ErrCorrupt, opKey, id, c.prefix)
	case r.attempt == attempt:
		// Ours: the reply of the own bucket's refusal was lost.
	case !r.flag:
		// Another attempt is trying the other buckets now.
		if err := wait.sleep(ctx, c.opt.busyWait); err != nil {
			return false, fmt.Errorf("%w: op key %q of %v is still in progress", ErrBusy, opKey, id)
		}
		return false, nil
	default:
		// Its lease passed: its process may have died anywhere on its
		// way. If no bucket has its record, it reserved nothing: its
		// pointer goes, and the own bucket is tried again.
		to, found, err := c.findPurchase(ctx, sp, opKey)
		if err != nil {
			return false, fmt.Errorf("invgen: decr %v: %w", id, err)
		}
		if found {
			sp.goTo(to)
			sp.followed = to
			return true, nil
		}
		if _, err := c.pointer(ctx, sp, opKey, "drop", r.attempt, ""); err != nil {
			return false, fmt.Errorf("invgen: decr %v: %w", id, err)
		}
		return false, nil
	}
	if _, ok := sp.next(); ok {
		return true, nil
	}
	// No other bucket: nothing else can serve it.
	c.dropPointer(ctx, sp, opKey, attempt)
	return false, rejection(codeShort, 0, id, opKey)
}

// findPurchase looks for an op record of the purchase opKey in every
// bucket but its own, and returns the first bucket that has one.
func (c *Core[K]) findPurchase(ctx context.Context, sp *spread, opKey string) (int, bool, error) {
	type look struct {
		rec     *redis.StringCmd
		settled [3]*redis.StringCmd
	}
	looks := make([]look, sp.n)
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b, k := range sp.keys {
			if b == sp.first {
				continue
			}
			rec := k.op(KindDecr, opKey)
			looks[b].rec = p.Get(ctx, rec)
			for i := range looks[b].settled {
				looks[b].settled[i] = p.HGet(ctx, k.buckets[i], k.field(rec))
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, false, err
	}
	for b, l := range looks {
		if l.rec == nil {
			continue
		}
		found := l.rec.Err() == nil
		for _, s := range l.settled {
			found = found || s.Err() == nil
		}
		if found {
			return b, true, nil
		}
	}
	return 0, false, nil
}

// rebalanceEvery is how long a Core waits between two background
// rebalances of one item.
const rebalanceEvery = 250 * time.Millisecond

// rebalanceLater evens out the buckets of an item in the background,
// unless this Core did so lately or does so now. Its error is logged.
func (c *Core[K]) rebalanceLater(id K, item string, n int) {
	now := time.Now()
	if v, ok := c.rebalancing.Load(item); ok && now.Sub(v.(time.Time)) < rebalanceEvery {
		return
	}
	if v, loaded := c.rebalancing.Swap(item, now); loaded && now.Sub(v.(time.Time)) < rebalanceEvery {
		return
	}
	c.wg.Add(1) // within a counted call: see enter
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), c.opt.fenceTTL+c.opt.busyWait)
		defer cancel()
		if err := c.rebalance(ctx, id, item, n, -1); err != nil && !errors.Is(err, ErrBusy) {
			c.opt.logger.Error("invgen: rebalancing the buckets of an item failed; the next fall-over tries again",
				"prefix", c.prefix, "item", item, "err", err)
		}
	}()
}

// rebalance loads the ledger's stock of a split item into its buckets
// again: evenly, or all into bucket gather (>= 0).
func (c *Core[K]) rebalance(ctx context.Context, id K, item string, n, gather int) error {
	h, err := c.holdSplit(ctx, id, item, n, false, false)
	if err != nil || h == nil {
		return err
	}
	err = c.loadSplit(ctx, h, h.t, loadMove, gather)
	c.endSplit(ctx, h, err == nil)
	return err
}

// reloaded reports whether a bucket that refused the purchase of sp was
// loaded again since (a rebalance moved stock): the refusals then do not
// describe one moment, and the purchase looks again.
func (c *Core[K]) reloaded(ctx context.Context, sp *spread) (bool, error) {
	looks, err := c.lookAtBuckets(ctx, sp.keys)
	if err != nil {
		return false, err
	}
	for b, r := range looks {
		if sp.loads[b] >= 0 && (r.code != codeReserved || r.delta != sp.loads[b]) {
			return true, nil
		}
	}
	return false, nil
}

// lookAtBuckets reads each bucket of keys with reserve.lua's get: its
// stock, and its load count in the delta field.
func (c *Core[K]) lookAtBuckets(ctx context.Context, keys []itemKeys) ([]reserveReply, error) {
	out := make([]reserveReply, len(keys))
	for b, k := range keys {
		v, err := c.evalGate(ctx, k, k.getKeys(), argGet)
		if err == nil {
			out[b], err = parseReserve(v)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Load modes of load.lua's ARGV[5].
const (
	loadRefresh = "0"
	loadFresh   = "1"
	loadMove    = "2"
)

// refreshSplit is refresh for an item split into n buckets.
func (c *Core[K]) refreshSplit(ctx context.Context, id K, item string, n int, onlyMissing, fresh bool) error {
	h, err := c.holdSplit(ctx, id, item, n, onlyMissing, onlyMissing)
	if err != nil || h == nil {
		return err
	}
	mode := loadRefresh
	if fresh {
		mode = loadFresh
	}
	err = c.loadSplit(ctx, h, h.t, mode, -1)
	c.endSplit(ctx, h, err == nil)
	return err
}

// splitHold is a split item whose buckets are fenced, with no change
// pending, and the ledger's totals of it.
type splitHold[K any] struct {
	id    K
	keys  []itemKeys
	token string
	t     Totals[K]
	avail []int64 // each bucket's stock now
	muted []bool  // buckets in a sold-out period: they sell nothing until it ends
	// untracked are the buckets that hold units for changes in flight
	// their journal does not list (lost.go); hold is then load.lua's
	// ARGV[11]: "" to be told of such units, or how long to hold them.
	untracked []int
	hold      string
	// marked: every bucket is marked (step.lua), so that a process dying
	// before the step ends leaves the item to be loaded again.
	marked bool
}

// holdSplit fences every bucket of a split item (in bucket order, so that
// two holders cannot each wait for the other), waits until none has a
// change pending (settling those that outlive half the fence), makes the
// ledger hold every change of it and reads the totals. With onlyMissing it
// returns nil once every bucket is loaded, by itself or by another caller.
// heal settles first the pending changes the ledger has decided (see
// loadFenced).
func (c *Core[K]) holdSplit(ctx context.Context, id K, item string, n int, onlyMissing, heal bool) (*splitHold[K], error) {
	h := &splitHold[K]{id: id, keys: c.bucketKeys(item, n), token: newToken()}
	loaded := func() bool {
		if !onlyMissing {
			return false
		}
		for _, k := range h.keys {
			if !c.current(ctx, k) {
				return false
			}
		}
		return true
	}
	if c.stream && !onlyMissing {
		if err := c.writeUnflushedBeforeFence(ctx, h.keys...); err != nil {
			return nil, fmt.Errorf("invgen: refresh %v: write its unflushed entries: %w", id, err)
		}
	}
	for i, k := range h.keys {
		var wait backoff
		for {
			ok, err := fenceScript.Run(ctx, c.rdb, []string{k.item}, h.token, c.fenceMS, maxFenceArg).Int()
			if err != nil {
				// The fence may be set though its answer was lost (a
				// deadline): lift this bucket's too, rather than leave it
				// to stop the bucket's sales until it expires.
				c.unfenceSplit(ctx, &splitHold[K]{keys: h.keys[:i+1], token: h.token})
				return nil, fmt.Errorf("invgen: refresh %v: fence: %w", id, err)
			}
			if ok == 1 {
				break
			}
			if loaded() {
				c.unfenceSplit(ctx, &splitHold[K]{keys: h.keys[:i], token: h.token})
				return nil, nil
			}
			if err := wait.sleep(ctx, c.opt.busyWait); err != nil {
				c.unfenceSplit(ctx, &splitHold[K]{keys: h.keys[:i], token: h.token})
				return nil, fmt.Errorf("%w: item %v of %s is being refreshed", ErrBusy, id, c.prefix)
			}
		}
	}
	if loaded() {
		c.unfenceSplit(ctx, h)
		return nil, nil
	}
	if err := c.settleSplit(ctx, h, heal); err != nil {
		c.unfenceSplit(ctx, h)
		return nil, err
	}
	return h, nil
}

// settleSplit waits, under the fences of h, until no bucket has a change
// pending, then reads the ledger's totals and the buckets' stock. Units a
// bucket holds for changes its journal lost (lost.go) are dealt with as
// for an item of one bucket: their op records go back in the journal and
// are waited for or settled, and the units of those whose records are
// gone too are held by the loads for a lease and a ledger timeout.
func (c *Core[K]) settleSplit(ctx context.Context, h *splitHold[K], heal bool) error {
	for round := 0; ; round++ {
		if err := c.awaitSplitPending(ctx, h, heal); err != nil {
			return err
		}
		heal = false
		if err := c.splitTotals(ctx, h); err != nil {
			return err
		}
		if len(h.untracked) == 0 {
			return nil
		}
		found := 0
		for _, b := range h.untracked {
			n, err := c.rejournal(ctx, h.keys[b])
			if err != nil {
				return fmt.Errorf("invgen: refresh %v: look for its changes in flight: %w", h.id, err)
			}
			found += n
		}
		if found == 0 || round == 2 {
			h.hold = c.holdMS()
			return nil
		}
	}
}

// splitTotals reads the ledger's totals of h and the buckets' state.
func (c *Core[K]) splitTotals(ctx context.Context, h *splitHold[K]) error {
	id := h.id
	if c.stream {
		if err := c.writeFenced(ctx, h.keys...); err != nil {
			return fmt.Errorf("invgen: refresh %v: write its unflushed entries: %w", id, err)
		}
	}
	t, found, err := c.ledger.Totals(ctx, id)
	switch {
	case err != nil:
		return fmt.Errorf("invgen: refresh %v: %w", id, err)
	case !found:
		return fmt.Errorf("%w: item %v of %s", ErrNotFound, id, c.prefix)
	}
	h.t = t
	return c.readSplitState(ctx, h)
}

// awaitSplitPending waits until no bucket of h has a pending change,
// settling those that outlive half the fence; with heal, it first settles
// the changes the ledger has decided (see loadFenced).
func (c *Core[K]) awaitSplitPending(ctx context.Context, h *splitHold[K], heal bool) error {
	id := h.id
	settleAfter := time.Now().Add(c.opt.fenceTTL / 2)
	var wait backoff
	for {
		pending, pendingKeys, err := c.splitPending(ctx, h, heal)
		if err != nil {
			return fmt.Errorf("invgen: refresh %v: %w", id, err)
		}
		heal = false
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(settleAfter) {
			for i, member := range pending {
				if _, _, err := c.settleMember(ctx, pendingKeys[i].journal, member, true); err != nil && !errors.Is(err, errRepaired) {
					return fmt.Errorf("invgen: refresh %v: settle %s: %w", id, member, err)
				}
			}
			continue
		}
		if err := wait.sleep(ctx, c.opt.fenceTTL); err != nil {
			return fmt.Errorf("%w: refresh %v: changes still pending", ErrBusy, id)
		}
	}
}

// splitPending lists the pending changes of every bucket of h, with the
// keys of each one's bucket.
func (c *Core[K]) splitPending(ctx context.Context, h *splitHold[K], heal bool) ([]string, []itemKeys, error) {
	var pending []string
	var pendingKeys []itemKeys
	for _, k := range h.keys {
		p, err := c.pendingOf(ctx, k)
		if err != nil {
			return nil, nil, err
		}
		if heal && len(p) > 0 {
			if _, err := c.settleDecided(ctx, k, p); err != nil {
				return nil, nil, err
			}
			if p, err = c.pendingOf(ctx, k); err != nil {
				return nil, nil, err
			}
		}
		for _, m := range p {
			pending = append(pending, m)
			pendingKeys = append(pendingKeys, k)
		}
	}
	return pending, pendingKeys, nil
}

// readSplitState reads each bucket's stock and sold-out period into h,
// and which buckets hold units for changes in flight: with no change
// pending in their journals, no journal lists those changes.
func (c *Core[K]) readSplitState(ctx context.Context, h *splitHold[K]) error {
	var now *redis.TimeCmd
	states := make([]*redis.SliceCmd, len(h.keys))
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		now = p.Time(ctx)
		for i, k := range h.keys {
			states[i] = p.HMGet(ctx, k.item, "a", "z", "p", "d", "q", "r")
		}
		return nil
	})
	if err != nil && !isCommandError(err) {
		return fmt.Errorf("invgen: refresh %v: %w", h.id, err)
	}
	ms := now.Val().UnixMilli()
	h.avail, h.muted, h.untracked = make([]int64, len(h.keys)), make([]bool, len(h.keys)), nil
	for i, st := range states {
		v := st.Val()
		if len(v) != 6 {
			continue // a garbled bucket: the load replaces it
		}
		h.avail[i], _ = intField(v[0])
		if z, ok := v[1].(string); ok {
			start, period, _ := cutInts(z)
			h.muted[i] = start+period > ms
		}
		for _, f := range v[2:] {
			if n, _ := intField(f); n != 0 {
				h.untracked = append(h.untracked, i)
				break
			}
		}
	}
	return nil
}

// cutInts parses "a:b".
func cutInts(s string) (a, b int64, ok bool) {
	x, y, found := strings.Cut(s, ":")
	a, err1 := strconv.ParseInt(x, 10, 64)
	b, err2 := strconv.ParseInt(y, 10, 64)
	return a, b, found && err1 == nil && err2 == nil
}

// splitStock divides an item's totals over its buckets: the stock evenly
// over the buckets that can sell (those not in a sold-out period, unless
// all are), or all of it into bucket gather (>= 0) if it can sell; the
// sold units evenly over all, so that each bucket's capacity is its stock
// plus its share of them and the capacities add up to the item's.
func splitStock(t Totals[int], muted []bool, gather int) (avail, capacity []int64) {
	n := len(muted)
	avail, capacity = make([]int64, n), make([]int64, n)
	var open []int
	for b, m := range muted {
		if !m {
			open = append(open, b)
		}
	}
	switch {
	case gather >= 0 && gather < n && !muted[gather]:
		open = []int{gather}
	case len(open) == 0:
		open = open[:0]
		for b := range n {
			open = append(open, b)
		}
	}
	share(max(t.Available, 0), open, avail)
	all := make([]int, n)
	for b := range all {
		all[b] = b
	}
	sold := make([]int64, n)
	share(max(t.Capacity-max(t.Available, 0), 0), all, sold)
	for b := range capacity {
		capacity[b] = avail[b] + sold[b]
	}
	return avail, capacity
}

// share adds total to out, evenly over the indexes in to.
func share(total int64, to []int, out []int64) {
	m := int64(len(to))
	for i, b := range to {
		out[b] += total / m
		if int64(i) < total%m {
			out[b]++
		}
	}
}

// loadSplit loads totals t into the buckets of h: the buckets that lose
// stock first, then those that gain, so that at no moment do the buckets
// hold more than before or after. Every bucket is marked first
// (markSplit): should the process die between two loads, the buckets not
// loaded yet sell nothing and are loaded again by whoever touches them
// next, so no unit is lost either. The fences stay: endSplit lifts them
// once every bucket is loaded.
func (c *Core[K]) loadSplit(ctx context.Context, h *splitHold[K], t Totals[K], mode string, gather int) error {
	if err := c.markSplit(ctx, h); err != nil {
		return err
	}
	avail, capacity := splitStock(Totals[int]{Available: t.Available, Capacity: t.Capacity}, h.muted, gather)
	order := make([]int, 0, len(h.keys))
	for pass := range 2 {
		for b := range h.keys {
			if (avail[b] < h.avail[b]) == (pass == 0) {
				order = append(order, b)
			}
		}
	}
	nb := strconv.Itoa(len(h.keys))
	for _, b := range order {
		k := h.keys[b]
		res, err := loadScript.Run(ctx, c.rdb, []string{k.item, k.journal, k.epoch, k.filter()},
			h.token, avail[b], capacity[b], k.opPrefix(), mode, c.genArg, adjustFlag[mode == loadFresh && c.opt.soldOut > 0], nb, adjustFlag[true], b, h.hold).Int()
		switch {
		case err != nil:
			return fmt.Errorf("invgen: refresh %v: load: %w", h.id, err)
		case res != 1:
			return fmt.Errorf("%w: refresh %v: a bucket's fence was lost", ErrBusy, h.id)
		}
		h.avail[b] = avail[b]
		failpoint("split-load")
	}
	h.marked = false // a load writes the bucket's epoch afresh
	return nil
}

// markSplit marks every bucket of h (step.lua), unless they are.
func (c *Core[K]) markSplit(ctx context.Context, h *splitHold[K]) error {
	if h.marked {
		return nil
	}
	for _, k := range h.keys {
		ok, err := stepScript.Run(ctx, c.rdb, []string{k.item}, "mark", h.token).Int()
		switch {
		case err != nil:
			return fmt.Errorf("invgen: refresh %v: mark: %w", h.id, err)
		case ok != 1:
			return fmt.Errorf("%w: refresh %v: a bucket's fence was lost", ErrBusy, h.id)
		}
		failpoint("split-mark")
	}
	h.marked = true
	return nil
}

// takeSplit takes units off the buckets of h, the fullest first, and as
// much capacity with them when adjust is set: a decrease, off sale before
// its ledger row is written. Each bucket it changes is marked (step.lua):
// should the process die before the row is in, whoever touches the item
// next loads it from the ledger again, and the units are back.
func (c *Core[K]) takeSplit(ctx context.Context, h *splitHold[K], units int64, adjust bool) error {
	order := make([]int, len(h.keys))
	for b := range order {
		order[b] = b
	}
	slices.SortStableFunc(order, func(x, y int) int { return int(h.avail[y] - h.avail[x]) })
	for _, b := range order {
		n := min(units, max(h.avail[b], 0))
		if n == 0 {
			continue
		}
		ok, err := stepScript.Run(ctx, c.rdb, []string{h.keys[b].item}, "take", h.token, n, adjustFlag[adjust]).Int()
		switch {
		case err != nil:
			return fmt.Errorf("invgen: refresh %v: take: %w", h.id, err)
		case ok != 1:
			return fmt.Errorf("%w: refresh %v: a bucket's fence was lost", ErrBusy, h.id)
		}
		h.avail[b] -= n
		units -= n
		failpoint("split-take")
	}
	return nil
}

// endSplit ends the step of h: done, the marks go and the fences are
// lifted (step.lua); else the fences are lifted and the marks stay, so
// that the item is loaded again before anything is sold from a bucket the
// step may have left half done.
func (c *Core[K]) endSplit(ctx context.Context, h *splitHold[K], done bool) {
	if !done {
		c.unfenceSplit(ctx, h)
		return
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.ledgerTimeout)
	defer cancel()
	for _, k := range h.keys {
		_ = stepScript.Run(uctx, c.rdb, []string{k.item}, "finish", h.token).Err()
	}
}

// unfenceSplit lifts the fences of h that are still held.
func (c *Core[K]) unfenceSplit(ctx context.Context, h *splitHold[K]) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.ledgerTimeout)
	defer cancel()
	for _, k := range h.keys {
		_ = unfenceScript.Run(uctx, c.rdb, []string{k.item}, h.token).Err()
	}
}

// changeSplit makes a change other than a purchase of an item split into
// n buckets: under the fence of every bucket, decided by the ledger's
// totals and recorded there before the buckets are loaded again (after,
// for a decrease, with the fences kept until the row is in). The ledger's
// unique op key makes a repeat replay.
func (c *Core[K]) changeSplit(ctx context.Context, kind Kind, id K, item, arg, opKey string, hold HoldIntent, n int) (Result, error) {
	if res, done, err := c.replaySplit(ctx, kind, id, item, opKey); done {
		return res, err
	}
	h, err := c.holdSplit(ctx, id, item, n, false, false)
	if err != nil {
		return Result{}, fmt.Errorf("invgen: %s %v: %w", kind, id, err)
	}
	res, err := c.changeHeld(ctx, kind, h, item, arg, opKey, hold)
	if err != nil {
		c.unfenceSplit(ctx, h)
	}
	return res, err
}

// splitDelta is what a change of kind (not a purchase) of split item id,
// whose ledger totals are t, does to its stock (delta) and capacity (dcap),
// or its refusal: a release gives back what the ledger's row of its
// purchase took.
func (c *Core[K]) splitDelta(ctx context.Context, kind Kind, id K, t Totals[K], arg, opKey string) (delta, dcap int64, err error) {
	switch kind {
	case KindIncr, KindAdjust:
		delta, _ = strconv.ParseInt(arg, 10, 64)
	case KindRelease:
		row, found, err := c.ledger.Lookup(ctx, id, KindDecr, opKey)
		switch {
		case err != nil:
			return 0, 0, fmt.Errorf("invgen: release %v: %w", id, err)
		case !found || row.State != StateCommitted || row.Delta >= 0:
			return 0, 0, fmt.Errorf("%w: op key %q took nothing from item %v", ErrNotFound, opKey, id)
		}
		delta = -row.Delta
	}
	if kind == KindAdjust {
		dcap = delta
	}
	switch {
	case t.Available+delta < 0:
		return 0, 0, rejection(codeShort, t.Available, id, opKey)
	case t.Available+delta > t.Capacity+dcap || t.Capacity+dcap > MaxQuantity:
		return 0, 0, rejection(codeLimit, t.Available, id, opKey)
	}
	return delta, dcap, nil
}

func (c *Core[K]) changeHeld(ctx context.Context, kind Kind, h *splitHold[K], item, arg, opKey string, hold HoldIntent) (Result, error) {
	id := h.id
	if res, done, err := c.replaySplit(ctx, kind, id, item, opKey); done {
		return res, err
	}
	t := h.t
	delta, dcap, err := c.splitDelta(ctx, kind, id, t, arg, opKey)
	if err != nil {
		return Result{}, err
	}
	after := t
	after.Available += delta
	after.Capacity += dcap
	e := Entry[K]{Item: id, Kind: kind, Delta: delta, OpKey: opKey, Attempt: mrand.Int64N(1<<62) + 1, Hold: hold}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.ledgerTimeout)
	defer cancel()
	if delta < 0 {
		// Off Redis first, the buckets it changes marked: a crash from
		// here on leaves fewer units on sale than the ledger says, never
		// more, until the item is loaded again.
		if err := c.takeSplit(lctx, h, -delta, dcap != 0); err != nil {
			return Result{}, fmt.Errorf("invgen: %s %v: %w", kind, id, err)
		}
	} else if err := c.markSplit(lctx, h); err != nil {
		// An increase marks every bucket before its row: should the
		// process die after the row, the item is loaded again with it.
		return Result{}, fmt.Errorf("invgen: %s %v: %w", kind, id, err)
	}
	written, err := c.insertSettled(lctx, e)
	failpoint("split-row")
	if !written {
		if errors.Is(err, ErrInDoubt) {
			// The ledger may hold the row: the marks stay, and the item
			// is loaded from the ledger before it sells again.
			return Result{}, err
		}
		if delta < 0 {
			// Put the units back.
			if lerr := c.loadSplit(lctx, h, t, loadMove, -1); lerr != nil {
				return Result{}, errors.Join(err, lerr)
			}
		}
		c.endSplit(ctx, h, true)
		return Result{}, err
	}
	if delta > 0 {
		if err := c.loadSplit(lctx, h, after, loadMove, -1); err != nil {
			// The change is recorded: its units reach Redis by a refresh.
			c.endSplit(ctx, h, false)
			c.wg.Add(1) // within a counted call: see enter
			go func() { defer c.wg.Done(); c.refreshLost(item) }()
			return Result{Available: after.Available, Delta: delta}, nil
		}
	}
	c.endSplit(ctx, h, true)
	return Result{Available: after.Available, Delta: delta}, nil
}

// insertSettled writes e as a committed row and reports whether it is in
// the ledger. When the insert's fate is unknown a void row decides it.
func (c *Core[K]) insertSettled(ctx context.Context, e Entry[K]) (bool, error) {
	start := time.Now()
	err := c.insertRow(ctx, c.ledger, e)
	c.observeLedger(e.Kind, start, err)
	if err == nil {
		return true, nil
	}
	if isUniqueViolation(err) || definitelyNotWritten(err) {
		return false, fmt.Errorf("invgen: %s %v: %w", e.Kind, e.Item, busyIfConflict(err))
	}
	var row Row
	verr := throughPool(ctx, func() (err error) {
		row, err = c.voidRow(ctx, c.ledger, e)
		return err
	})
	switch {
	case verr != nil:
		return false, fmt.Errorf("%w: %s %v: %w", ErrInDoubt, e.Kind, e.Item, errors.Join(err, verr))
	case row.State == StateCommitted && row.Attempt == e.Attempt:
		return true, nil
	}
	return false, fmt.Errorf("%w: %s %v: %w", ErrVoided, e.Kind, e.Item, err)
}

// replaySplit answers a change of a split item whose op key the ledger
// holds. done is false when it holds none.
func (c *Core[K]) replaySplit(ctx context.Context, kind Kind, id K, item, opKey string) (Result, bool, error) {
	row, found, err := c.ledger.Lookup(ctx, id, kind, opKey)
	switch {
	case err != nil:
		return Result{}, true, fmt.Errorf("invgen: %s %v: %w", kind, id, err)
	case !found:
		return Result{}, false, nil
	case row.State != StateCommitted:
		return Result{}, true, fmt.Errorf("%w: %s %v", ErrVoided, kind, id)
	}
	avail, err := c.getSplit(ctx, id, item)
	if err != nil {
		return Result{}, true, err
	}
	return Result{Available: avail, Delta: row.Delta, Replayed: true}, true, nil
}

// getSplit returns the stock of a split item: the sum of its buckets,
// read twice; when a load moved stock between the two looks (a bucket's
// load count changed) it reads again, so that no unit moved during the
// read is counted twice.
func (c *Core[K]) getSplit(ctx context.Context, id K, item string) (int64, error) {
	n := c.bucketsOf(item)
	keys := c.bucketKeys(item, n)
	look := func() (sum int64, loads []int64, err error) {
		looks, err := c.lookAtBuckets(ctx, keys)
		if err != nil {
			return 0, nil, err
		}
		loads = make([]int64, len(keys))
		for b, r := range looks {
			if r.code != codeReserved || r.buckets != n {
				return 0, nil, errMoved
			}
			sum += r.available
			loads[b] = r.delta
		}
		return sum, loads, nil
	}
	var wait backoff
	healed := false
	for {
		sum, first, err := look()
		var second []int64
		if err == nil {
			_, second, err = look()
		}
		switch {
		case err == nil && slices.Equal(first, second):
			return sum, nil
		case errors.Is(err, errMoved) && !healed:
			healed = true
			if err := c.heal(ctx, id, item); err != nil {
				return 0, err
			}
			continue
		case err != nil && !errors.Is(err, errMoved):
			return 0, fmt.Errorf("invgen: get %v: %w", id, err)
		}
		if err := wait.sleep(ctx, c.opt.busyWait); err != nil {
			return 0, fmt.Errorf("%w: get %v: its buckets keep changing", ErrBusy, id)
		}
	}
}

// errMoved: a bucket is missing, stale or not what invgen writes.
var errMoved = errors.New("a bucket is not loaded")
