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

// Drift is an item whose Redis stock differs from what the ledger and the
// journal account for.
type Drift[K any] struct {
	Item K
	// Redis is the stock Redis holds (the sum of its buckets for an item
	// split into buckets); Missing is true when Redis lacks some of it.
	Redis   int64
	Missing bool
	// Ledger is the stock per the ledger's committed rows; Pending is the
	// sum of the item's journaled changes, and in the stream mode of its
	// unflushed entries, that the ledger does not hold yet.
	// Redis should equal Ledger + Pending.
	Ledger  int64
	Pending int64
	// Corrupt, when not empty, says what Redis holds for the item that
	// invgen did not write (a key of another type, a field missing or not
	// a number, a capacity that differs from the ledger's, a fence further
	// ahead than any refresh takes one, a journaled op record of the item
	// that invgen did not write). Refresh, or the janitor with Repair,
	// repairs it.
	Corrupt string
	// Stale is true when the item was loaded before its Redis server lost
	// writes (a restart, a failover; see
	// docs/cluster.md#acknowledged-writes-lost-at-a-failover), or when a
	// step over the buckets of a split item did not end (its process died
	// between the change's ledger row and its loads; docs/buckets.md):
	// nothing of it is sold until it is refreshed, which its next change
	// or read does, or RefreshAll. Its Redis stock and capacity are then
	// what they were before, not corrupt.
	Stale bool
}

// AuditReport is what Audit found. It changes nothing.
type AuditReport[K any] struct {
	// Items is how many items were compared.
	Items int
	// Drift lists the items whose Redis stock is off, in key order.
	Drift []Drift[K]
	// Expired counts journal entries whose lease has passed: changes that
	// Reconcile would settle.
	Expired int
	// Flush is the flush lag of the stream ledger mode (zero in the sync
	// mode); Flush.Backlog reports streams that grow unflushed.
	Flush FlushLag
}

// Audit compares every item's Redis stock with the ledger, accounting for
// changes still in the journal, and reports what differs without changing
// any item (a dry run of repair). Under live traffic a change can complete
// between the reads; an item is reported only when two looks agree. It
// opens the gate of every server of the prefix first (see gate.go), so
// that items a server lost writes of are reported Stale.
func (c *Core[K]) Audit(ctx context.Context) (rep AuditReport[K], err error) {
	ctx, done := c.observe(ctx, OpAudit)
	defer func() {
		done(false, err)
		if o := c.opt.observer; o != nil && err == nil {
			o.Audited(c.prefix, rep.Items, len(rep.Drift), rep.Expired)
		}
	}()
	if err := c.enter(ctx); err != nil {
		return rep, err
	}
	defer c.wg.Done()
	now, err := c.rdb.Time(ctx).Result()
	if err != nil {
		return rep, fmt.Errorf("invgen: audit %s: %w", c.prefix, err)
	}
	for s := range c.ks.tags {
		k := itemKeys{item: c.ks.tags[s] + "item:", epoch: c.ks.epochs[s]}
		if _, err := c.evalGate(ctx, k, k.getKeys(), argGet); err != nil {
			return rep, fmt.Errorf("invgen: audit %s: %w", c.prefix, err)
		}
	}
	const page = 500
	var (
		after K
		first = true
	)
	for {
		items, err := c.ledger.Items(ctx, after, first, page)
		if err != nil {
			return rep, fmt.Errorf("invgen: audit %s: %w", c.prefix, err)
		}
		drift, err := c.compare(ctx, items, now)
		if err != nil {
			return rep, err
		}
		if len(drift) > 0 {
			// Look again at the items that seemed off.
			again := make([]Totals[K], 0, len(drift))
			for _, d := range drift {
				t, found, err := c.ledger.Totals(ctx, d.Item)
				if err != nil {
					return rep, fmt.Errorf("invgen: audit %s: %w", c.prefix, err)
				}
				if found {
					again = append(again, t)
				}
			}
			second, err := c.compare(ctx, again, now)
			if err != nil {
				return rep, err
			}
			rep.Drift = append(rep.Drift, confirmDrift(drift, second, c.codec)...)
		}
		rep.Items += len(items)
		if len(items) < page {
			break
		}
		after, first = items[len(items)-1].Item, false
	}
	until := strconv.FormatInt(now.UnixMilli(), 10)
	for shard := range c.ks.tags {
		n, err := c.rdb.ZCount(ctx, c.ks.journal(shard), "-inf", until).Result()
		if err != nil {
			return rep, fmt.Errorf("invgen: audit %s: %w", c.prefix, err)
		}
		rep.Expired += int(n)
	}
	if rep.Flush, err = c.FlushLag(ctx); err != nil {
		return rep, err
	}
	return rep, nil
}

// confirmDrift keeps the drifts of the first look that the second look
// found again with the same values.
func confirmDrift[K any](first, second []Drift[K], codec Codec[K]) []Drift[K] {
	seen := map[string]Drift[K]{}
	for _, d := range second {
		if s, err := codec.Encode(d.Item); err == nil {
			seen[s] = d
		}
	}
	var out []Drift[K]
	for _, d := range first {
		s, err := codec.Encode(d.Item)
		if err != nil {
			continue
		}
		if d2, ok := seen[s]; ok && d2.Redis == d.Redis && d2.Missing == d.Missing && d2.Ledger == d.Ledger && d2.Corrupt == d.Corrupt {
			out = append(out, d2)
		}
	}
	return out
}

// compare reads the Redis stock and the journaled changes of items in one
// pipeline and returns those that do not add up. What one item's keys hold
// is that item's alone: a key invgen did not write makes the item's drift
// corrupt, never the whole audit fail. now is Redis's clock, against which
// fences are judged.
func (c *Core[K]) compare(ctx context.Context, items []Totals[K], now time.Time) ([]Drift[K], error) {
	if len(items) == 0 {
		return nil, nil
	}
	looks, journals, err := c.lookAll(ctx, items)
	if err != nil {
		return nil, err
	}
	var drift []Drift[K]
	for i, t := range items {
		d, err := c.driftOf(ctx, t, looks[i], journals, now)
		if err != nil {
			return nil, err
		}
		if d.Missing || d.Corrupt != "" || d.Redis != d.Ledger+d.Pending {
			drift = append(drift, d)
		}
	}
	return drift, nil
}

// look is what Audit reads of one bucket of an item (an item that is not
// split has one, its own).
type look struct {
	keys      itemKeys
	stock     *redis.SliceCmd
	epoch     *redis.StringCmd
	unflushed *redis.MapStringStringCmd // stream mode
}

// lookAll reads every bucket of items and their shards' journals in one
// pipeline.
func (c *Core[K]) lookAll(ctx context.Context, items []Totals[K]) ([][]look, map[string]*redis.StringSliceCmd, error) {
	looks := make([][]look, len(items))
	pipe := c.rdb.Pipeline()
	journals := map[string]*redis.StringSliceCmd{}
	for i, t := range items {
		item, err := c.codec.Encode(t.Item)
		if err != nil {
			return nil, nil, err
		}
		for _, k := range c.bucketKeys(item, c.bucketCount(t.Buckets)) {
			l := look{keys: k, stock: pipe.HMGet(ctx, k.item, stockFields...), epoch: pipe.Get(ctx, k.epoch)}
			if c.stream {
				l.unflushed = pipe.HGetAll(ctx, k.item)
			}
			if journals[k.journal] == nil {
				journals[k.journal] = pipe.ZRange(ctx, k.journal, 0, -1)
			}
			looks[i] = append(looks[i], l)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !isCommandError(err) {
		return nil, nil, fmt.Errorf("invgen: audit %s: %w", c.prefix, err)
	}
	return looks, journals, nil
}

// driftOf compares item t's buckets, as read, with the ledger.
func (c *Core[K]) driftOf(ctx context.Context, t Totals[K], looks []look, journals map[string]*redis.StringSliceCmd, now time.Time) (Drift[K], error) {
	d := Drift[K]{Item: t.Item, Ledger: t.Available}
	var capacity, pendingCap int64
	for b, l := range looks {
		in := ""
		if len(looks) > 1 {
			in = fmt.Sprintf("bucket %d: ", b)
		}
		bc, err := c.judgeStock(&d, t, l, in, len(looks), now)
		if err != nil {
			return d, err
		}
		capacity += bc
		pending, pcap, err := c.pendingOfLook(ctx, &d, t, l, journals, in)
		if err != nil {
			return d, err
		}
		d.Pending += pending
		pendingCap += pcap
	}
	if d.Missing {
		d.Redis = 0
	}
	// Capacity: Redis's c plus pending restocks (r) is the ledger's
	// capacity plus the adjusts of the journal that the ledger lacks. A
	// stale item's is not compared: it is loaded afresh before it sells,
	// and a step cut off between a change's row and its loads (a split
	// item's buckets marked) leaves the old capacity behind.
	if d.Corrupt == "" && !d.Missing && !d.Stale && capacity != t.Capacity+pendingCap {
		d.Corrupt = fmt.Sprintf("capacity %d in Redis, %d per the ledger and the journal", capacity, t.Capacity+pendingCap)
	}
	return d, nil
}

// corrupt records the first reason d's item is garbled.
func (d *Drift[K]) corrupt(s string) {
	if d.Corrupt == "" {
		d.Corrupt = s
	}
}

// judgeStock reads one bucket's stock fields into d and returns its
// capacity plus pending restocks; in names the bucket, n is the number of
// buckets per the ledger.
func (c *Core[K]) judgeStock(d *Drift[K], t Totals[K], l look, in string, n int, now time.Time) (int64, error) {
	vals, err := l.stock.Result()
	switch {
	case isWrongType(err):
		d.corrupt(in + "the item key is not a hash")
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("invgen: audit %s: item %v: %w", c.prefix, t.Item, err)
	case vals[0] == nil:
		d.Missing = true
		if bad := garbledFields(vals, now); bad != "" {
			d.corrupt(in + bad)
		} else if vals[1] != nil {
			d.corrupt(in + "field a (available) is missing")
		}
		return 0, nil
	}
	avail, ok0 := intField(vals[0])
	bc, ok1 := intField(vals[1])
	rising, ok2 := intField(vals[2])
	if vals[2] == nil {
		rising, ok2 = 0, true
	}
	if !ok0 || !ok1 || !ok2 {
		d.corrupt(fmt.Sprintf("%sfields a=%v c=%v r=%v are not numbers", in, vals[0], vals[1], vals[2]))
	}
	if bad := garbledFields(vals, now); bad != "" {
		d.corrupt(in + bad)
	}
	if nb, ok := intField(vals[4]); vals[4] != nil && (!ok || nb < 1) {
		d.corrupt(fmt.Sprintf("%sbucket count %v is not a positive number", in, vals[4]))
	} else if max(nb, 1) != int64(n) {
		d.corrupt(fmt.Sprintf("%sbucket count %v in Redis, %d per the ledger", in, vals[4], n))
	}
	// Stream increases not yet written (i) are Redis's, not yet on sale.
	unwritten, _ := intField(vals[8])
	d.Redis += avail + unwritten
	e, _ := vals[3].(string)
	d.Stale = d.Stale || e != l.epoch.Val()
	return bc + rising, nil
}

// pendingOfLook returns the units and capacity of one bucket's changes
// that the ledger lacks: pending in the journal, or (stream mode) not yet
// flushed.
func (c *Core[K]) pendingOfLook(ctx context.Context, d *Drift[K], t Totals[K], l look, journals map[string]*redis.StringSliceCmd, in string) (int64, int64, error) {
	jv, jerr := journals[l.keys.journal].Result()
	if jerr != nil {
		d.corrupt(in + "its shard journal: " + jerr.Error())
	}
	pending, pcap, bad, err := c.pendingDelta(ctx, t.Item, l.keys, jv)
	if err != nil {
		return 0, 0, err
	}
	if bad != "" {
		d.corrupt(bad)
	}
	if l.unflushed != nil {
		var batch Batch
		for f, v := range l.unflushed.Val() {
			if !strings.HasPrefix(f, unflushedPrefix) {
				continue
			}
			if err := batch.addUnflushed(l.keys.id, v); err != nil {
				d.corrupt(err.Error())
			}
		}
		for _, delta := range batch.Deltas {
			pending += delta
		}
	}
	return pending, pcap, nil
}

// stockFields are the fields of an item hash that compare reads, in the
// order garbledFields expects them.
var stockFields = []string{"a", "c", "r", "e", "n", "q", "p", "f", "i"}

// garbledFields says what the fields of an item hash (stockFields, as
// HMGET returns them) hold that reserve.lua would refuse as corrupt or
// wait for although no refresh wrote it: a negative stock, a pending count
// that is not a number, a fence that is not a number or lies further ahead
// than any refresh takes one (maxFenceTTL). "" when nothing.
func garbledFields(vals []any, now time.Time) string {
	if a, ok := intField(vals[0]); ok && a < 0 {
		return fmt.Sprintf("available %d is negative", a)
	}
	if c, ok := intField(vals[1]); ok && c < 0 {
		return fmt.Sprintf("capacity %d is negative", c)
	}
	for _, i := range []int{5, 6, 8} {
		if _, ok := intField(vals[i]); vals[i] != nil && !ok {
			return fmt.Sprintf("field %s=%v is not a number", stockFields[i], vals[i])
		}
	}
	if vals[7] == nil {
		return ""
	}
	f, ok := intField(vals[7])
	switch {
	case !ok:
		return fmt.Sprintf("fence %v is not a number", vals[7])
	case f > now.UnixMilli()+maxFenceTTL.Milliseconds():
		return fmt.Sprintf("fence until %v, beyond the longest fence (%v)", time.UnixMilli(f).UTC().Format(time.RFC3339), maxFenceTTL)
	}
	return ""
}

// intField parses a hash field that must be an integer.
func intField(v any) (int64, bool) {
	s, ok := v.(string)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// pendingDelta is what Redis's stock of one item should differ from the
// ledger's by, given its journaled changes: a decrease not yet committed
// is in Redis only; an increase committed but not yet applied (commit.lua
// pending) is in the ledger only. pendingCap is the same for the capacity
// (pending adjusts). bad, when not empty, names an op record that is not
// what invgen writes.
func (c *Core[K]) pendingDelta(ctx context.Context, id K, k itemKeys, journal []string) (sum, pendingCap int64, bad string, err error) {
	for _, m := range k.ops(journal) {
		parts, ok := c.ks.parseOpRecordKey(m)
		if !ok {
			continue
		}
		rec, err := c.rdb.Get(ctx, m).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case isWrongType(err):
			bad = fmt.Sprintf("op record %q is not a string", m)
			continue
		case err != nil:
			return 0, 0, "", err
		}
		p, ok := parsePending(rec)
		if !ok {
			if rec != opVoid && !strings.HasPrefix(rec, "c:") {
				bad = fmt.Sprintf("op record %q holds %q", m, rec)
			}
			continue
		}
		row, found, err := c.ledger.Lookup(ctx, id, parts.kind, parts.opKey)
		if err != nil {
			return 0, 0, "", err
		}
		inLedger := found && row.State == StateCommitted && row.Attempt == p.attempt
		switch {
		case p.delta < 0 && !inLedger:
			sum += p.delta
		case p.delta > 0 && inLedger:
			sum -= p.delta
		}
		// Redis counts an adjust in c (a decrease) or r (an increase) from
		// its reservation on; the ledger from its commit.
		if parts.kind == KindAdjust && !inLedger {
			pendingCap += p.delta
		}
	}
	return sum, pendingCap, bad, nil
}

// JanitorConfig configures RunJanitor. The zero value reconciles every
// 30 seconds and never audits.
type JanitorConfig[K any] struct {
	// ReconcileEvery is how often expired journal entries are settled
	// (default 30s).
	ReconcileEvery time.Duration
	// AuditEvery is how often Redis is compared with the ledger, as an
	// off-peak check; zero means never.
	AuditEvery time.Duration
	// Repair makes each audit refresh the items it found drifting. Without
	// it the audit only reports.
	Repair bool
	// ExpireHoldsEvery is how often holds past their deadline are ended
	// and their units given back (ExpireHolds), on a prefix that has
	// holds (default 1s; negative: never). A hold's units are back at
	// most ExpireHoldsEvery, plus the round's own time, after its
	// deadline while a janitor runs.
	ExpireHoldsEvery time.Duration
	// OnReport, if set, receives the outcome of every round.
	OnReport func(JanitorReport[K])
}

// JanitorReport is the outcome of one janitor round.
type JanitorReport[K any] struct {
	// Reconcile is set on rounds that reconciled.
	Reconcile *ReconcileReport
	// Audit is set on rounds that audited.
	Audit *AuditReport[K]
	// Repaired counts the drifting items that were refreshed.
	Repaired int
	// Expired counts the holds an expiry round ended; ExpiredRound is
	// true on such rounds.
	Expired      int
	ExpiredRound bool
	// Err is the round's error, if any; the janitor goes on.
	Err error
}

// RunJanitor reconciles (and, if configured, audits and repairs, and ends
// expired holds) on a schedule until ctx is done, then returns ctx's
// error. Run it in a goroutine of the application, or in a process of its
// own; several janitors of one prefix may run at once.
//
// Close stops it too: it returns ErrClosed, and Close waits for it.
func (c *Core[K]) RunJanitor(ctx context.Context, cfg JanitorConfig[K]) error {
	if err := c.enter(ctx); err != nil {
		return err
	}
	defer c.wg.Done()
	ctx, stop := c.untilClosed(ctx)
	defer stop()
	if cfg.ReconcileEvery == 0 {
		cfg.ReconcileEvery = 30 * time.Second
	}
	if cfg.ReconcileEvery < 0 || cfg.AuditEvery < 0 {
		return argError("janitor intervals must not be negative")
	}
	if cfg.ExpireHoldsEvery == 0 {
		cfg.ExpireHoldsEvery = time.Second
	}
	if _, err := c.holds(); err != nil {
		cfg.ExpireHoldsEvery = -1 // no holds to expire
	}
	reconcile, stopR := every(cfg.ReconcileEvery)
	defer stopR()
	audit, stopA := every(cfg.AuditEvery)
	defer stopA()
	expire, stopE := every(cfg.ExpireHoldsEvery)
	defer stopE()
	for {
		var r JanitorReport[K]
		select {
		case <-ctx.Done():
			if c.isClosed() {
				return ErrClosed
			}
			return ctx.Err()
		case <-reconcile:
			rep, err := c.Reconcile(ctx)
			r = JanitorReport[K]{Reconcile: &rep, Err: err}
		case <-expire:
			n, err := c.ExpireHolds(ctx)
			r = JanitorReport[K]{Expired: n, ExpiredRound: true, Err: err}
		case <-audit:
			r = c.auditRound(ctx, cfg.Repair)
		}
		if r.Err != nil && ctx.Err() == nil {
			c.opt.logger.Error("invgen: janitor round failed", "prefix", c.prefix, "err", r.Err)
		}
		if cfg.OnReport != nil {
			cfg.OnReport(r)
		}
	}
}

// every returns the ticks of a ticker of period d and its stop, or a
// channel that never ticks when d is not positive.
func every(d time.Duration) (<-chan time.Time, func()) {
	if d <= 0 {
		return nil, func() {}
	}
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// auditRound is one audit of the janitor, refreshing the drifting items
// when repair is set.
func (c *Core[K]) auditRound(ctx context.Context, repair bool) JanitorReport[K] {
	rep, err := c.Audit(ctx)
	r := JanitorReport[K]{Audit: &rep, Err: err}
	if err != nil || !repair {
		return r
	}
	var errs []error
	for _, d := range rep.Drift {
		if err := c.refreshID(ctx, d.Item); err != nil {
			errs = append(errs, err)
			continue
		}
		r.Repaired++
	}
	r.Err = errors.Join(errs...)
	return r
}
