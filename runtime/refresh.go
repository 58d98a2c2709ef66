package runtime

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Refresh sets an item's Redis stock to exactly what the ledger says, while
// purchases go on. It fences the item (changes of it wait, or get ErrBusy
// after WithBusyWait), waits for the item's pending changes to reach the
// ledger (settling those that outlive half the fence), computes the stock
// from the ledger, loads it only if the fence still holds and nothing is
// pending, and lifts the fence. It never overwrites a change that happened
// meanwhile. It rebuilds an item whose Redis keys are gone; an item the
// ledger does not know is ErrNotFound.
func (c *Core[K]) Refresh(ctx context.Context, id K) (err error) {
	ctx, done := c.observe(ctx, OpRefresh)
	defer func() { done(false, err) }()
	if err := c.enter(ctx); err != nil {
		return err
	}
	defer c.wg.Done()
	item, err := c.codec.Encode(id)
	if err != nil {
		return err
	}
	return c.refresh(ctx, id, item, false, false)
}

// refreshID is Refresh for the Core's own use, within a call it counts
// already (so that it also works while Close waits for that call).
func (c *Core[K]) refreshID(ctx context.Context, id K) error {
	item, err := c.codec.Encode(id)
	if err != nil {
		return err
	}
	return c.refresh(ctx, id, item, false, false)
}

// heal loads an item that Redis lacks. When many callers find the same
// item missing at once, one loads it and the others see it loaded.
func (c *Core[K]) heal(ctx context.Context, id K, item string) error {
	return c.refresh(ctx, id, item, true, false)
}

// maxFenceArg is the longest fence any refresh takes (WithFenceTTL's
// limit), in ms: fence.lua takes over a fence that reaches further.
var maxFenceArg any = strconv.FormatInt(maxFenceTTL.Milliseconds(), 10)

// refresh runs the fenced load of one item. With onlyMissing it stops as
// soon as the item is loaded, by itself or by another caller. fresh is set
// by Init, whose item has no op key Redis could have forgotten.
func (c *Core[K]) refresh(ctx context.Context, id K, item string, onlyMissing, fresh bool) error {
	if n := c.bucketsOf(item); n > 1 {
		return c.refreshSplit(ctx, id, item, n, onlyMissing, fresh)
	}
	k := c.ks.forItem(item)
	loaded := func() bool { return onlyMissing && c.current(ctx, k) }
	if c.stream && !onlyMissing {
		if err := c.writeUnflushedBeforeFence(ctx, k); err != nil {
			return fmt.Errorf("invgen: refresh %v: write its unflushed entries: %w", id, err)
		}
	}
	token := newToken()
	var wait backoff
	for {
		ok, err := fenceScript.Run(ctx, c.rdb, []string{k.item}, token, c.fenceMS, maxFenceArg).Int()
		if err != nil {
			return fmt.Errorf("invgen: refresh %v: fence: %w", id, err)
		}
		if ok == 1 {
			break
		}
		if loaded() {
			return nil
		}
		if err := wait.sleep(ctx, c.opt.busyWait); err != nil {
			return fmt.Errorf("%w: item %v of %s is being refreshed", ErrBusy, id, c.prefix)
		}
	}
	var err error
	if !loaded() {
		err = c.loadFenced(ctx, id, k, token, fresh, onlyMissing)
		if err == nil {
			return nil
		}
	}
	// Lift the fence at once rather than let changes wait for it to
	// expire; a fence we no longer hold is left alone.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.ledgerTimeout)
	defer cancel()
	_ = unfenceScript.Run(uctx, c.rdb, []string{k.item}, token).Err()
	if errors.Is(err, errSplit) {
		// The ledger says the item is split (this Core did not know):
		// refresh all its buckets.
		return c.refreshSplit(ctx, id, item, c.bucketsOf(item), onlyMissing, fresh)
	}
	return err
}

// loadFenced loads an item whose fence the caller holds. The ledger is read
// only once no change of the item is pending: a change that completed
// before the fence is then in the ledger, and none can start until the
// fence is lifted.
//
// A heal (the item is missing, or was loaded in an older epoch of its
// shard) first settles the pending changes the ledger has decided: after a
// restart or failover the journal may hold changes that were settled in
// the writes the server lost, and no one else will settle them.
func (c *Core[K]) loadFenced(ctx context.Context, id K, k itemKeys, token string, fresh, heal bool) error {
	fenced := time.Now()
	settleAfter := fenced.Add(c.opt.fenceTTL / 2)
	var (
		t     Totals[K]
		stale = true
		wait  backoff
		hold  string // load.lua's ARGV[11]
	)
	for {
		pending, err := c.pendingOf(ctx, k)
		if err != nil {
			return fmt.Errorf("invgen: refresh %v: %w", id, err)
		}
		if len(pending) > 0 && heal {
			heal = false
			if n, err := c.settleDecided(ctx, k, pending); err != nil {
				return fmt.Errorf("invgen: refresh %v: %w", id, err)
			} else if n > 0 {
				continue
			}
		}
		if len(pending) > 0 {
			stale = true
			if err := c.awaitPending(ctx, id, k, pending, settleAfter, &wait); err != nil {
				return err
			}
			continue
		}
		if stale {
			if t, err = c.fencedTotals(ctx, id, k); err != nil {
				return err
			}
			stale = false
		}
		done, err := c.loadTotals(ctx, id, k, token, t, fresh, fenced, &hold)
		if done || err != nil {
			return err
		}
		stale = true // a change slipped in before the fence: look again
	}
}

// awaitPending waits for the item's pending changes, and settles them
// once they outlive half the fence: a void row makes their late commit
// fail harmlessly.
func (c *Core[K]) awaitPending(ctx context.Context, id K, k itemKeys, pending []string, settleAfter time.Time, wait *backoff) error {
	if time.Now().After(settleAfter) {
		for _, member := range pending {
			if _, _, err := c.settleMember(ctx, k.journal, member, true); err != nil && !errors.Is(err, errRepaired) {
				return fmt.Errorf("invgen: refresh %v: settle %s: %w", id, member, err)
			}
		}
		return nil
	}
	if err := wait.sleep(ctx, c.opt.fenceTTL); err != nil {
		return fmt.Errorf("%w: refresh %v: changes still pending", ErrBusy, id)
	}
	return nil
}

// fencedTotals reads what the ledger says of a fenced item with nothing
// pending, after writing its unflushed stream entries (stream mode: none
// of the item can be added while the fence holds). A split item gives
// way to refreshSplit (errSplit).
func (c *Core[K]) fencedTotals(ctx context.Context, id K, k itemKeys) (Totals[K], error) {
	if c.stream {
		if err := c.writeFenced(ctx, k); err != nil {
			return Totals[K]{}, fmt.Errorf("invgen: refresh %v: write its unflushed entries: %w", id, err)
		}
	}
	t, found, err := c.ledger.Totals(ctx, id)
	if err != nil {
		return t, fmt.Errorf("invgen: refresh %v: %w", id, err)
	}
	if !found {
		return t, fmt.Errorf("%w: item %v of %s", ErrNotFound, id, c.prefix)
	}
	if n := c.bucketCount(t.Buckets); n > 1 {
		c.learnBuckets(k.id, n)
		return t, errSplit
	}
	return t, nil
}

// loadTotals loads t into the fenced item (load.lua). done is false when
// the item must be looked at again: a change slipped in before the fence,
// or units are held with no journal entry (lost.go), whose changes it
// puts back in the journal, or else asks the next load to hold (*hold).
func (c *Core[K]) loadTotals(ctx context.Context, id K, k itemKeys, token string, t Totals[K], fresh bool, fenced time.Time, hold *string) (bool, error) {
	res, err := loadScript.Run(ctx, c.rdb, []string{k.item, k.journal, k.epoch, k.filter()},
		token, t.Available, t.Capacity, k.opPrefix(), adjustFlag[fresh], c.genArg, adjustFlag[fresh && c.opt.soldOut > 0], "1", "0", "0", *hold).Int()
	switch {
	case err != nil:
		return true, fmt.Errorf("invgen: refresh %v: load: %w", id, err)
	case res == 1:
		return true, nil
	case res == 0:
		return true, fmt.Errorf("%w: refresh %v: fence expired after %v", ErrBusy, id, time.Since(fenced).Round(time.Millisecond))
	case res == -2:
		n, err := c.rejournal(ctx, k)
		if err != nil {
			return true, fmt.Errorf("invgen: refresh %v: look for its changes in flight: %w", id, err)
		}
		if n == 0 {
			*hold = c.holdMS()
		}
	}
	return false, nil
}

// errSplit: the item turned out to be split into buckets; the single-key
// refresh gives way to refreshSplit.
var errSplit = errors.New("the item is split into buckets")

// current reports whether an item is loaded in its shard's current epoch
// (gate.go), so that a change may run on it.
func (c *Core[K]) current(ctx context.Context, k itemKeys) bool {
	var item *redis.SliceCmd
	var epoch *redis.StringCmd
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		item = p.HMGet(ctx, k.item, "a", "e")
		epoch = p.Get(ctx, k.epoch)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false
	}
	v := item.Val()
	if len(v) != 2 || v[0] == nil {
		return false
	}
	e, _ := v[1].(string)
	return e == epoch.Val()
}

// settleDecided settles the pending changes among members whose ledger
// row is written, and returns how many it settled.
func (c *Core[K]) settleDecided(ctx context.Context, k itemKeys, members []string) (int, error) {
	n := 0
	for _, member := range members {
		parts, ok := c.ks.parseOpRecordKey(member)
		if !ok {
			continue
		}
		id, err := c.codec.Decode(parts.item)
		if err != nil {
			continue
		}
		rec, err := c.rdb.Get(ctx, member).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return n, err
		}
		p, ok := parsePending(rec)
		if !ok {
			continue
		}
		row, found, err := c.ledger.Lookup(ctx, id, parts.kind, parts.opKey)
		if err != nil {
			return n, err
		}
		if !found {
			continue
		}
		e := Entry[K]{Item: id, Kind: parts.kind, Delta: p.delta, OpKey: parts.opKey, Attempt: p.attempt}
		if _, err := c.resolve(ctx, e, row, k, member); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// pendingOf lists the journal members of one item. The journal holds only
// changes between their Redis and ledger steps, so it is short.
func (c *Core[K]) pendingOf(ctx context.Context, k itemKeys) ([]string, error) {
	all, err := c.rdb.ZRange(ctx, k.journal, 0, -1).Result()
	if err != nil {
		return nil, err
	}
	return k.ops(all), nil
}

// RefreshAll refreshes every item the ledger knows, a page of items at a
// time, so changes of other items never stop. Items whose Redis keys are
// gone are rebuilt. Each page is fenced, checked for pending changes,
// read from the ledger and loaded in a few pipelined round trips; an item
// that cannot be loaded that way (another refresh holds it, or a change of
// it is pending) gets a Refresh of its own. It returns how many items it
// loaded; errors of single items are joined and do not stop the others.
func (c *Core[K]) RefreshAll(ctx context.Context) (_ int, err error) {
	ctx, done := c.observe(ctx, OpRefreshAll)
	defer func() { done(false, err) }()
	if err := c.enter(ctx); err != nil {
		return 0, err
	}
	defer c.wg.Done()
	const page = 1000
	for _, s := range []*redis.Script{fenceScript, loadScript, unfenceScript} {
		if err := s.Load(ctx, c.rdb).Err(); err != nil { // pipelined EVALSHA needs the script loaded
			return 0, fmt.Errorf("invgen: refresh all %s: %w", c.prefix, err)
		}
	}
	var (
		after K
		first = true
		n     int
		errs  []error
	)
	for {
		items, err := c.ledger.Items(ctx, after, first, page)
		if err != nil {
			return n, errors.Join(append(errs, fmt.Errorf("invgen: refresh all %s: %w", c.prefix, err))...)
		}
		loaded, rest, err := c.refreshPage(ctx, after, first, items)
		n += loaded
		if err != nil {
			return n, errors.Join(append(errs, fmt.Errorf("invgen: refresh all %s: %w", c.prefix, err))...)
		}
		for _, id := range rest {
			if err := c.refreshID(ctx, id); err != nil {
				if ctx.Err() != nil {
					return n, ctx.Err()
				}
				errs = append(errs, err)
				continue
			}
			n++
		}
		if len(items) < page {
			return n, errors.Join(errs...)
		}
		after, first = items[len(items)-1].Item, false
	}
}

// refreshPage loads one page of items (the page that Items returned for
// after and first) under their fences, and returns how many it loaded and
// the items left for a Refresh of their own.
func (c *Core[K]) refreshPage(ctx context.Context, after K, first bool, items []Totals[K]) (int, []K, error) {
	pg := &page[K]{c: c, token: newToken()}
	for _, t := range items {
		item, err := c.codec.Encode(t.Item)
		if err != nil {
			return 0, nil, err
		}
		if n := c.bucketCount(t.Buckets); n > 1 {
			// A split item is refreshed on its own (buckets.go).
			c.learnBuckets(item, n)
			pg.rest = append(pg.rest, t.Item)
			continue
		}
		pg.all = append(pg.all, pageEntry[K]{t.Item, c.ks.forItem(item)})
	}
	if len(pg.all) == 0 {
		return 0, pg.rest, nil
	}
	fenced, err := pg.fence(ctx)
	if err != nil {
		return 0, nil, err
	}
	ready, err := pg.dropPending(ctx, fenced)
	if err != nil {
		return 0, nil, err
	}
	loaded, err := pg.load(ctx, ready, after, first, len(items))
	if err != nil {
		return 0, nil, err
	}
	return loaded, pg.rest, nil
}

// page is one page of RefreshAll: its items under one fence token, and
// those left for a Refresh of their own (rest).
type page[K any] struct {
	c     *Core[K]
	token string
	all   []pageEntry[K]
	rest  []K
}

type pageEntry[K any] struct {
	id   K
	keys itemKeys
}

// unfence lifts the page's fences of es.
func (pg *page[K]) unfence(ctx context.Context, es []pageEntry[K]) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pg.c.opt.ledgerTimeout)
	defer cancel()
	p := pg.c.rdb.Pipeline()
	for _, e := range es {
		unfenceScript.EvalSha(uctx, p, []string{e.keys.item}, pg.token)
	}
	p.Exec(uctx)
}

// keysOf lists the item keys of es.
func keysOf[K any](es []pageEntry[K]) []itemKeys {
	keys := make([]itemKeys, len(es))
	for i, e := range es {
		keys[i] = e.keys
	}
	return keys
}

// fence fences the page, after writing the bulk of large backlogs of
// unflushed entries while changes go on, and returns the items it
// fenced. An error of one item's command (its key is not invgen's) is that
// item's alone: it goes on to a Refresh of its own, which repairs it.
func (pg *page[K]) fence(ctx context.Context) ([]pageEntry[K], error) {
	c := pg.c
	if c.stream {
		if err := c.writeUnflushedBeforeFence(ctx, keysOf(pg.all)...); err != nil {
			return nil, err
		}
	}
	pipe := c.rdb.Pipeline()
	fences := make([]*redis.Cmd, len(pg.all))
	for i, e := range pg.all {
		fences[i] = fenceScript.EvalSha(ctx, pipe, []string{e.keys.item}, pg.token, c.fenceMS, maxFenceArg)
	}
	if _, err := pipe.Exec(ctx); err != nil && !isCommandError(err) {
		pg.unfence(ctx, pg.all)
		return nil, err
	}
	fenced := pg.all[:0:0]
	for i, e := range pg.all {
		if v, _ := fences[i].Int(); v == 1 {
			fenced = append(fenced, e)
		} else {
			pg.rest = append(pg.rest, e.id)
		}
	}
	return fenced, nil
}

// dropPending sends the fenced items with pending changes their own way
// and returns the others. In the stream mode, their unflushed entries are
// written first so the ledger holds every change.
func (pg *page[K]) dropPending(ctx context.Context, fenced []pageEntry[K]) ([]pageEntry[K], error) {
	c := pg.c
	shards := map[string]bool{}
	for _, e := range fenced {
		shards[e.keys.journal] = true
	}
	pipe := c.rdb.Pipeline()
	journals := map[string]*redis.StringSliceCmd{}
	for j := range shards {
		journals[j] = pipe.ZRange(ctx, j, 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !isCommandError(err) {
		pg.unfence(ctx, fenced)
		return nil, err
	}
	ready := fenced[:0:0]
	var pending []pageEntry[K]
	for _, e := range fenced {
		if len(e.keys.ops(journals[e.keys.journal].Val())) > 0 {
			pending = append(pending, e)
			pg.rest = append(pg.rest, e.id)
		} else {
			ready = append(ready, e)
		}
	}
	pg.unfence(ctx, pending)
	if c.stream {
		if err := c.writeFenced(ctx, keysOf(ready)...); err != nil {
			pg.unfence(ctx, ready)
			return nil, err
		}
	}
	return ready, nil
}

// load reads the page again, now that nothing of it can change, and loads
// the ready items; those the ledger or load.lua turn away go to rest.
func (pg *page[K]) load(ctx context.Context, ready []pageEntry[K], after K, first bool, n int) (int, error) {
	c := pg.c
	totals, err := c.ledger.Items(ctx, after, first, n)
	if err != nil {
		pg.unfence(ctx, ready)
		return 0, err
	}
	byItem := make(map[string]Totals[K], len(totals))
	for _, t := range totals {
		if s, err := c.codec.Encode(t.Item); err == nil {
			byItem[s] = t
		}
	}
	loads := make([]*redis.Cmd, len(ready))
	var retry []pageEntry[K]
	pipe := c.rdb.Pipeline()
	for i, e := range ready {
		item, _ := c.codec.Encode(e.id)
		t, ok := byItem[item]
		if !ok {
			retry = append(retry, e)
			continue
		}
		loads[i] = loadScript.EvalSha(ctx, pipe, []string{e.keys.item, e.keys.journal, e.keys.epoch, e.keys.filter()},
			pg.token, t.Available, t.Capacity, e.keys.opPrefix(), adjustFlag[false], c.genArg, adjustFlag[false], "1", "0", "0", "")
	}
	if _, err := pipe.Exec(ctx); err != nil && !isCommandError(err) {
		pg.unfence(ctx, ready)
		return 0, err
	}
	loaded := 0
	for i, e := range ready {
		if loads[i] == nil {
			continue
		}
		if v, _ := loads[i].Int(); v == 1 {
			loaded++
		} else {
			retry = append(retry, e)
		}
	}
	pg.unfence(ctx, retry)
	for _, e := range retry {
		pg.rest = append(pg.rest, e.id)
	}
	return loaded, nil
}

// ReconcileReport tells what Reconcile found and did.
type ReconcileReport struct {
	// Seen counts the journal entries whose lease had passed.
	Seen int
	// Confirmed counts those whose ledger row was committed after all.
	Confirmed int
	// Voided counts those that got a void row and were undone.
	Voided int
	// Units is the sum of |delta| of the voided changes: units given back
	// to stock (or taken back, for voided returns and restocks).
	Units int64
	// Corrupt lists the journal members that were not invgen's: a member
	// that names no op record of the prefix is dropped; an op record that
	// holds something invgen did not write is settled by the ledger and
	// its item refreshed.
	Corrupt []string
}

// Reconcile settles every journal entry whose lease has passed: changes
// whose process died, or lost Redis or SQL, between their two steps. For
// each it writes a void row unless the ledger holds the change (a late
// commit of the dead request then fails on the unique key), and commits or
// undoes it in Redis to match. Run it after a crash, or on a schedule. An
// entry that cannot be settled does not stop the others: its error is
// joined into the one returned.
func (c *Core[K]) Reconcile(ctx context.Context) (rep ReconcileReport, err error) {
	ctx, done := c.observe(ctx, OpReconcile)
	defer func() {
		done(false, err)
		if o := c.opt.observer; o != nil {
			o.Reconciled(c.prefix, rep)
		}
	}()
	if err := c.enter(ctx); err != nil {
		return rep, err
	}
	defer c.wg.Done()
	now, err := c.rdb.Time(ctx).Result()
	if err != nil {
		return rep, fmt.Errorf("invgen: reconcile %s: %w", c.prefix, err)
	}
	until := strconv.FormatInt(now.UnixMilli(), 10)
	var errs []error
	for shard := range c.ks.tags {
		journal := c.ks.journal(shard)
		members, err := c.rdb.ZRangeByScore(ctx, journal, &redis.ZRangeBy{Min: "-inf", Max: until}).Result()
		if err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			errs = append(errs, fmt.Errorf("invgen: reconcile %s: shard %d: %w", c.prefix, shard, err))
			continue
		}
		for _, m := range members {
			o, settled, err := c.settleMember(ctx, journal, m, false)
			if errors.Is(err, ErrCorrupt) {
				rep.Corrupt = append(rep.Corrupt, m)
			}
			if err != nil && !errors.Is(err, errRepaired) {
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				errs = append(errs, fmt.Errorf("invgen: reconcile %s: %q: %w", c.prefix, m, err))
				continue
			}
			if !settled {
				continue
			}
			rep.Seen++
			switch o.kind {
			case ours:
				rep.Confirmed++
			default:
				rep.Voided++
				rep.Units += max(o.delta, -o.delta)
			}
		}
	}
	return rep, errors.Join(errs...)
}

// settledEntry is how settleMember decided a journal entry.
type settledEntry struct {
	kind  int // ours (confirmed), earlier or voided
	delta int64
}

// errRepaired marks a corrupt journal entry that settleMember repaired.
var errRepaired = fmt.Errorf("%w: repaired", ErrCorrupt)

// settleMember settles the entry member of a shard journal, an op record
// key. It reports false when there was nothing to settle.
// A refresh that holds the item's fence passes inRefresh, and loads the
// item itself.
func (c *Core[K]) settleMember(ctx context.Context, journal, member string, inRefresh bool) (settledEntry, bool, error) {
	parts, ok := c.ks.parseOpRecordKey(member)
	if !ok || c.ks.journals[parts.shard] != journal {
		// Not an op record of this prefix: no change of ours is behind it.
		if err := c.rdb.ZRem(ctx, journal, member).Err(); err != nil {
			return settledEntry{}, false, err
		}
		return settledEntry{}, false, errRepaired
	}
	id, err := c.codec.Decode(parts.item)
	if err != nil {
		if err := c.rdb.ZRem(ctx, journal, member).Err(); err != nil {
			return settledEntry{}, false, err
		}
		return settledEntry{}, false, errRepaired
	}
	k := c.ks.at(parts.item, parts.shard) // the item's own shard, or one of its buckets'
	rec, err := c.rdb.Get(ctx, member).Result()
	switch {
	case errors.Is(err, redis.Nil):
		rec = ""
	case isWrongType(err):
		rec = "?"
	case err != nil:
		return settledEntry{}, false, err
	}
	p, ok := parsePending(rec)
	if ok && inRefresh {
		// Settling before the lease has passed: end it first, so that the
		// owner cannot forget the change while its void row goes in.
		if err := expireScript.Run(ctx, c.rdb, []string{member, journal}).Err(); err != nil {
			return settledEntry{}, false, err
		}
	}
	if !ok {
		if rec == "" || rec == opVoid || strings.HasPrefix(rec, "c:") {
			// Committed or undone meanwhile, or the record is gone: only
			// the journal entry is left to drop.
			return settledEntry{}, false, c.rdb.ZRem(ctx, journal, member).Err()
		}
		return settledEntry{}, false, c.repairMember(ctx, id, parts, k, member, inRefresh)
	}
	e := Entry[K]{Item: id, Kind: parts.kind, Delta: p.delta, OpKey: parts.opKey, Attempt: p.attempt}
	o, err := c.settle(ctx, c.ledger, e, k, member)
	return settledEntry{kind: o.kind, delta: p.delta}, err == nil, err
}

// repairMember settles a journal entry whose op record holds something
// invgen did not write: the ledger decides the op key (a void row unless it
// has one), the record is rewritten to match, and the item is refreshed,
// because what the change did to Redis is unknown.
func (c *Core[K]) repairMember(ctx context.Context, id K, parts opKeyParts, k itemKeys, member string, inRefresh bool) error {
	row, err := c.voidRow(ctx, c.ledger, Entry[K]{Item: id, Kind: parts.kind, OpKey: parts.opKey})
	if err != nil {
		return fmt.Errorf("%w: op record %q: %w", ErrCorrupt, member, err)
	}
	pipe := c.rdb.TxPipeline()
	pipe.Del(ctx, member)
	pipe.ZRem(ctx, k.journal, member)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("%w: op record %q: %w", ErrCorrupt, member, err)
	}
	state := "committed"
	if row.State != StateCommitted {
		state = "void"
	}
	if err := c.remember(ctx, k, member, state, row.Delta); err != nil {
		return fmt.Errorf("%w: op record %q: %w", ErrCorrupt, member, err)
	}
	if inRefresh {
		return errRepaired
	}
	if err := c.refresh(ctx, id, k.id, false, false); err != nil {
		return fmt.Errorf("%w: op record %q: refresh: %w", ErrCorrupt, member, err)
	}
	return errRepaired
}

// pendingRecord is a pending op record as reserve.lua writes it.
type pendingRecord struct {
	delta, available, attempt, lease int64
}

// parsePending parses "p:delta:available:attempt:lease".
func parsePending(rec string) (pendingRecord, bool) {
	var p pendingRecord
	rest, ok := strings.CutPrefix(rec, "p:")
	if !ok {
		return p, false
	}
	for _, f := range []*int64{&p.delta, &p.available, &p.attempt, &p.lease} {
		var s string
		s, rest, _ = strings.Cut(rest, ":")
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return p, false
		}
		*f = v
	}
	return p, rest == ""
}
