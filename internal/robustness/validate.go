package robustness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"

	invrt "github.com/invgen/invgen/runtime"
)

// Violation is one broken invariant.
type Violation struct {
	// Invariant is I1, I2, I3, LIN (linearizability) or OPS (an
	// operator's tool failed where the docs say it works).
	Invariant string
	Msg       string
}

func (v Violation) String() string { return v.Invariant + ": " + v.Msg }

// inWindow reports whether an event of one of kinds overlaps [from, to].
func (r *Run) inWindow(from, to int64, kinds ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		for _, k := range kinds {
			if e.Kind == k && e.Start <= to && e.End >= from {
				return true
			}
		}
	}
	return false
}

// ledgerSums is one snapshot of an item's ledger: capacity, the sum of its
// usage, the sum of its returns (positive usage) and of its restocks.
type ledgerSums struct{ cap, usage, returns, restocks int64 }

func (r *Run) sums(ctx context.Context, p int, id string) (ledgerSums, error) {
	return r.admin.sums(ctx, p, id)
}

// sampleI1 checks I1 at instants during the traffic, for every prefix:
// units on sale in Redis plus units sold per the ledger never exceed the
// capacity. (In the stream mode the ledger lags: the sales it lacks are
// off sale in Redis already, and the returns it lacks are not on sale yet,
// so the bound holds there too.) The ledger is read before Redis and again after,
// and the returns and restocks committed in between are accounted for, so
// a sample is sound under any interleaving. Samples near a Redis restart
// or on a garbled item are skipped: docs/contract.md allows a window there.
func (r *Run) sampleI1(ctx context.Context) {
	rng := rand.New(rand.NewPCG(r.Plan.Config.Seed, 0x11))
	lease := r.Plan.Config.Options.Lease
	for ctx.Err() == nil {
		sleep(ctx, 30*time.Millisecond)
		p, i := rng.IntN(len(Prefixes)), rng.IntN(r.Plan.Config.Items)
		r.mu.Lock()
		bad := r.garbled[[2]int{p, i}]
		r.mu.Unlock()
		if bad {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		id := ItemID(p, i)
		t0 := time.Now().UnixNano()
		s1, err1 := r.sums(sctx, p, id)
		a, current, err2 := r.onSale(sctx, p, i)
		s3, err3 := r.sums(sctx, p, id)
		cancel()
		t1 := time.Now().UnixNano()
		if err1 != nil || err2 != nil || err3 != nil || !current {
			// An item loaded in an older epoch of its shard (the server
			// lost writes since) sells nothing until it is refreshed.
			continue
		}
		// A change caught between its steps by the restart may commit as
		// late as its client's deadline (at most 5 s) after the item was
		// rebuilt, and is corrected by its commit step: skip that window.
		if r.inWindow(t0-int64(lease)-int64(6*time.Second), t1, FaultRedisRestart, FaultRedisRollback) {
			continue
		}
		r.mu.Lock()
		r.stats["i1-samples"]++
		r.mu.Unlock()
		sold := -s1.usage - (s3.returns - s1.returns)
		bound := s1.cap + (s3.restocks - s1.restocks)
		if a < 0 || a+sold > bound {
			r.violate(Violation{"I1", fmt.Sprintf("%s/%d at %s: Redis offers %d, the ledger has sold %d, capacity %d: %d units created",
				Prefixes[p].Name, i, time.Unix(0, t0).Format("15:04:05.000"), a, sold, bound, a+sold-bound)})
		}
	}
}

// onSale reads the stock of item i of prefix p in Redis, the sum of its
// buckets in one MULTI (one instant), and whether every bucket is loaded
// in its shard's current epoch: only then can the item be sold.
func (r *Run) onSale(ctx context.Context, p, i int) (int64, bool, error) {
	keys := r.bucketKeys(p, i)
	pipe := r.rdb.TxPipeline()
	vs := make([]*redis.SliceCmd, len(keys))
	epochs := make([]*redis.StringCmd, len(keys))
	for b, k := range keys {
		vs[b] = pipe.HMGet(ctx, k, "a", "e")
		epochs[b] = pipe.Get(ctx, strings.TrimSuffix(k, "item:"+ItemID(p, i))+"epoch")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, false, err
	}
	var sum int64
	current := true
	for b := range keys {
		vals := vs[b].Val()
		s, _ := vals[0].(string)
		a, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, false, err
		}
		e, _ := vals[1].(string)
		sum += a
		current = current && e == epochs[b].Val()
	}
	return sum, current, nil
}

// bucketKeys are the item hashes of item i of prefix p: one per bucket.
func (r *Run) bucketKeys(p, i int) []string {
	n := 1
	if b := r.Plan.Config.Buckets; len(b) > p && len(b[p]) > i {
		n = b[p][i]
	}
	return BucketKeys(r.Setup.Namespace, p, i, n)
}

// stockOf is the sum of the stock fields of keys in one MULTI; redis.Nil
// when one is missing.
func (r *Run) stockOf(ctx context.Context, keys []string) (int64, error) {
	pipe := r.rdb.TxPipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for b, k := range keys {
		cmds[b] = pipe.HGet(ctx, k, "a")
	}
	pipe.Exec(ctx)
	var sum int64
	for _, c := range cmds {
		a, err := c.Int64()
		if err != nil {
			return 0, err
		}
		sum += a
	}
	return sum, nil
}

func (r *Run) violate(v Violation) {
	r.mu.Lock()
	r.sampled = append(r.sampled, v)
	r.mu.Unlock()
}

// row is a ledger row.
type row struct {
	state   string
	delta   int64
	attempt int64
}

// Settle stops the world and brings it to rest as an operator would:
// waits out the leases, audits and reconciles (which must work whatever
// Redis holds), repairs the keys the faults garbled with Refresh, flushes
// the stream prefix, and reconciles again. It returns the violations of
// the operator's tools.
func (r *Run) Settle(ctx context.Context) []Violation {
	var vs []Violation
	add := func(inv, format string, args ...any) {
		vs = append(vs, Violation{inv, fmt.Sprintf(format, args...)})
	}
	lease := r.Plan.Config.Options.Lease
	sleep(ctx, lease+200*time.Millisecond)
	for p, t := range r.env.Targets {
		if _, drift, _, err := t.Audit(ctx); err != nil {
			add("OPS", "Audit of %s fails (docs/contract.md: Audit finds garbled keys): %v", Prefixes[p].Name, err)
		} else {
			r.logf("audit %s before reconcile: drift %v", Prefixes[p].Name, drift)
		}
		if _, err := t.Reconcile(ctx); err != nil {
			add("OPS", "Reconcile of %s fails: %v", Prefixes[p].Name, err)
		}
	}
	// docs/contract.md: a deleted or garbled key is found by Audit and fixed
	// by Refresh(id).
	r.mu.Lock()
	garbled := make([][2]int, 0, len(r.garbled))
	for k := range r.garbled {
		garbled = append(garbled, k)
	}
	cleanup := r.cleanup
	r.mu.Unlock()
	for _, g := range garbled {
		// ErrBusy is for retrying (docs/api.md): a refresh in another
		// process, killed while it held the item's fence, holds it for as
		// long as the fence lasts (3 s at most here).
		err := whileBusy(ctx, func() error { return r.env.Targets[g[0]].Refresh(ctx, g[1]) })
		if err != nil {
			add("OPS", "Refresh of garbled item %s/%d fails: %v", Prefixes[g[0]].Name, g[1], err)
		}
	}
	// Whatever the library could not repair is removed by hand, so that
	// the other checks still run.
	for _, k := range cleanup {
		if strings.Contains(k, ":op:") {
			r.rdb.ZRem(ctx, k[:strings.Index(k, "}:")+2]+"journal", k)
			r.rdb.Del(ctx, k)
			continue
		}
		if typ := r.rdb.Type(ctx, k).Val(); typ != "hash" {
			r.rdb.Del(ctx, k)
		} else if _, err := r.rdb.HGet(ctx, k, "a").Int64(); err != nil {
			r.rdb.Del(ctx, k)
		}
	}
	for _, g := range garbled {
		r.env.Targets[g[0]].Refresh(ctx, g[1])
	}
	// docs/contract.md: after Redis came back empty, run RefreshAll once a
	// lease has passed, if no window of disagreement is wanted.
	if r.inWindow(0, forever, FaultRedisRestart, FaultRedisRollback) {
		for p, t := range r.env.Targets {
			if _, err := t.RefreshAll(ctx); err != nil {
				r.logf("RefreshAll of %s after the restart: %v", Prefixes[p].Name, err)
			}
		}
	}
	// docs/operating.md: after Redis lost a journal, Audit reports the drift and
	// Refresh repairs it; units of changes whose op records went too are
	// held for a lease and a ledger timeout first.
	if r.inWindow(0, forever, FaultJournalDel) {
		hold := lease + r.Plan.Config.Options.LedgerLimit + 200*time.Millisecond
		sleep(ctx, hold)
		for p, t := range r.env.Targets[:3] {
			if _, err := t.RefreshAll(ctx); err != nil {
				add("OPS", "RefreshAll of %s after a journal was lost: %v", Prefixes[p].Name, err)
			}
		}
		// A hold starts at the first load after the loss: when the
		// operator's Refresh then failed (a fault of its own), it is this
		// RefreshAll's, and the next refresh of docs/operating.md, once the hold has
		// passed, gives the units back.
		var drifting []int
		for p, t := range r.env.Targets[:3] {
			if _, drift, _, err := t.Audit(ctx); err == nil && len(drift) > 0 {
				drifting = append(drifting, p)
			}
		}
		if len(drifting) > 0 {
			sleep(ctx, hold)
		}
		for _, p := range drifting {
			if _, err := r.env.Targets[p].RefreshAll(ctx); err != nil {
				add("OPS", "RefreshAll of %s once the hold of units passed: %v", Prefixes[p].Name, err)
			}
		}
	}
	// The stream is flushed when a flusher has claimed what the killed
	// ones left pending (after its ClaimAfter) and written everything.
	fctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	r.env.Targets[3].RunFlusher(fctx, invrt.FlusherConfig{ClaimAfter: 100 * time.Millisecond, DrainTimeout: 5 * time.Second})
	cancel()
	for round := range 4 {
		if _, err := r.env.Targets[3].Flush(ctx); err != nil {
			add("OPS", "Flush of %s fails (round %d): %v", Prefixes[3].Name, round, err)
		}
		for _, t := range r.env.Targets {
			t.Reconcile(ctx)
		}
		if r.journalsEmpty(ctx) {
			break
		}
		sleep(ctx, lease)
	}
	if _, err := r.env.Targets[3].Flush(ctx); err != nil {
		add("OPS", "final Flush of %s fails: %v", Prefixes[3].Name, err)
	}
	// The failure table's row on garbled keys (docs/contract.md), at rest.
	vs = append(vs, r.checkGarbled(ctx)...)
	return vs
}

func (r *Run) journalsEmpty(ctx context.Context) bool {
	for range 40 {
		keys, _ := r.rdb.Keys(ctx, r.Setup.Namespace+":*:journal").Result()
		n := int64(0)
		for _, k := range keys {
			n += r.rdb.ZCard(ctx, k).Val()
		}
		if n == 0 {
			return true
		}
		sleep(ctx, 50*time.Millisecond)
	}
	return false
}

// CheckI2 compares Redis with the ledger for every item, with plain Redis
// commands and plain SQL, and asks Audit too.
func (r *Run) CheckI2(ctx context.Context) []Violation {
	var vs []Violation
	add := func(inv, format string, args ...any) {
		vs = append(vs, Violation{inv, fmt.Sprintf(format, args...)})
	}
	var backlog int64
	for shard := range Prefixes[3].Shards {
		backlog += r.rdb.XLen(ctx, fmt.Sprintf("%s:{%s:%d}:stream", r.Setup.Namespace, Prefixes[3].Name, shard)).Val()
	}
	if backlog > 0 {
		add("I2", "%s: %d stream entries not flushed after settling", Prefixes[3].Name, backlog)
	}
	for p, t := range r.env.Targets {
		for i := range r.Plan.Config.Items {
			keys := r.bucketKeys(p, i)
			if _, current, err := r.onSale(ctx, p, i); err == nil && !current {
				// A bucket marked by a step that did not end (a process
				// killed in it, a load that failed), or loaded before
				// Redis lost writes, sells nothing: its next change or
				// read loads the item from the ledger (docs/buckets.md).
				// Read it the documented way, then compare.
				r.mu.Lock()
				r.stats["i2-stale-read"]++
				r.mu.Unlock()
				whileBusy(ctx, func() error { _, err := t.Get(ctx, i); return err })
			}
			a, err := r.stockOf(ctx, keys)
			if errors.Is(err, redis.Nil) {
				// Not loaded (Redis restarted): load it the documented way.
				t.Get(ctx, i)
				a, err = r.stockOf(ctx, keys)
			}
			s, serr := r.sums(ctx, p, ItemID(p, i))
			if err != nil || serr != nil {
				add("I2", "%s/%d: cannot read Redis (%v) or the ledger (%v)", Prefixes[p].Name, i, err, serr)
				continue
			}
			if a != s.cap+s.usage || s.cap+s.usage < 0 || s.cap+s.usage > s.cap {
				r.keepLedger(ctx, p, i)
			}
			if a != s.cap+s.usage {
				add("I2", "%s/%d: Redis has %d available, the ledger %d (capacity %d, usage %d); Redis holds %s", Prefixes[p].Name, i, a, s.cap+s.usage, s.cap, s.usage, r.dump(ctx, keys))
			}
			if s.cap+s.usage < 0 || s.cap+s.usage > s.cap {
				add("I1", "%s/%d: the ledger holds %d available against a capacity of %d", Prefixes[p].Name, i, s.cap+s.usage, s.cap)
			}
		}
		_, drift, expired, err := t.Audit(ctx)
		if err != nil || len(drift) > 0 || expired > 0 {
			add("I2", "Audit of %s after settling: drift %v, expired %d, err %v", Prefixes[p].Name, drift, expired, err)
		}
	}
	return vs
}

// whileBusy runs call, again while it answers ErrBusy, for up to 4 s: a
// fence left by a killed process lasts until it expires (3 s at most
// here). It returns call's last error.
func whileBusy(ctx context.Context, call func() error) error {
	err := call()
	for until := time.Now().Add(4 * time.Second); errors.Is(err, invrt.ErrBusy) && time.Now().Before(until); {
		sleep(ctx, 100*time.Millisecond)
		err = call()
	}
	return err
}

// dump is what Redis holds in keys, for a violation's message.
func (r *Run) dump(ctx context.Context, keys []string) string {
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "[%s %v] ", k[strings.Index(k, "{"):], r.rdb.HGetAll(ctx, k).Val())
	}
	return strings.TrimSpace(b.String())
}

// ledgerRows reads every change row of the run, by (prefix, item, kind, op key).
func (r *Run) ledgerRows(ctx context.Context) (map[string]row, error) {
	out := map[string]row{}
	for p, pr := range Prefixes {
		for _, tbl := range []string{pr.ModTable, pr.UsageTable} {
			err := r.admin.rows(ctx, tbl, func(id, kind, op string, rw row) {
				out[tripleKey(p, id, kind, op)] = rw
			})
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func tripleKey(p int, id, kind, op string) string {
	return strconv.Itoa(p) + "\x00" + id + "\x00" + kind + "\x00" + op
}

func callTriple(c Call) string {
	return tripleKey(c.Step.Prefix, ItemID(c.Step.Prefix, c.Step.Item), rowKind(c.Step.Kind), c.Step.Key)
}

func describe(c Call) string {
	res := c.Outcome
	if c.Outcome == OutOK {
		res = fmt.Sprintf("ok delta=%d replayed=%v avail=%d", c.Delta, c.Replayed, c.Avail)
	} else if c.Err != "" {
		res += " (" + c.Err + ")"
	}
	ret := "never"
	if c.Return != 0 {
		ret = time.Unix(0, c.Return).Format("15:04:05.000000")
	}
	return fmt.Sprintf("[%s %s %s(n=%d, op=%q) on %s/%d, %s..%s -> %s]", c.ID, c.Proc, c.Step.Kind, c.Step.N, c.Step.Key,
		Prefixes[c.Step.Prefix].Name, c.Step.Item, time.Unix(0, c.Invoke).Format("15:04:05.000000"), ret, res)
}

const forever = int64(1) << 62

func ret(c Call) int64 {
	if c.Return == 0 || c.Outcome == OutUnknown {
		return forever
	}
	return c.Return
}

// CheckI3 checks idempotency against what clients were told and what the
// ledger holds.
func (r *Run) CheckI3(ctx context.Context, calls []Call) []Violation {
	var vs []Violation
	add := func(format string, args ...any) {
		vs = append(vs, Violation{"I3", fmt.Sprintf(format, args...)})
	}
	rows, err := r.ledgerRows(ctx)
	if err != nil {
		return []Violation{{"I3", "cannot read the ledger: " + err.Error()}}
	}
	cfg := r.Plan.Config
	groups := map[string][]Call{}
	for _, c := range calls {
		if isChange(c.Step.Kind) {
			groups[callTriple(c)] = append(groups[callTriple(c)], c)
		}
	}
	decrOK := map[string][]Call{} // decr triple -> acknowledged purchases
	for k, g := range groups {
		if rowKind(g[0].Step.Kind) == OpDecr {
			for _, c := range g {
				if c.Outcome == OutOK {
					decrOK[k] = append(decrOK[k], c)
				}
			}
		}
	}
	for k, g := range groups {
		sort.Slice(g, func(a, b int) bool { return g[a].Invoke < g[b].Invoke })
		c0 := g[0]
		stream := Prefixes[c0.Step.Prefix].Stream && c0.Step.Kind != OpAdjust
		rw, inLedger := rows[k]
		// The first call of an op key voided although its insert never
		// left: docs/contract.md says such a call leaves the op key free.
		if c0.Outcome == OutVoided && c0.Proc == "p" && !stream && !r.env.DB.InsertSent(c0.ID) &&
			time.Duration(c0.Return-c0.Invoke) < min(cfg.Options.Lease, cfg.Options.FenceTTL/2) {
			later := ""
			for _, c := range g[1:] {
				later += " " + describe(c)
			}
			add("op key burned: the first call of it was voided although its ledger insert never went out (no connection): %s; later calls:%s",
				describe(c0), later)
		}
		var firstRun []Call // non-replayed successes
		for _, c := range g {
			if c.Outcome != OutOK {
				continue
			}
			if !c.Replayed {
				firstRun = append(firstRun, c)
			}
			if c.Replayed {
				earlier := false
				for _, o := range g {
					if o.ID != c.ID && o.Invoke <= ret(c) {
						earlier = true
					}
				}
				// The release of a short hold may be the janitor's, which
				// no call of the history made.
				if !earlier && !(c.Step.TTL > 0 && rowKind(c.Step.Kind) == OpRelease) {
					add("Replayed without an earlier call of the op key: %s", describe(c))
				}
			}
			if stream {
				continue
			}
			if !inLedger || rw.state != "committed" {
				add("acknowledged success not committed in the ledger (row %+v, found %v): %s", rw, inLedger, describe(c))
			} else if c.Delta != rw.delta {
				add("answer differs from the first outcome in the ledger (delta %d): %s", rw.delta, describe(c))
			}
		}
		if !stream && len(firstRun) > 1 {
			var d []string
			for _, c := range firstRun {
				d = append(d, describe(c))
			}
			add("an op key executed twice (Replayed false more than once): %s", strings.Join(d, " "))
		}
		// A refusal of an op key whose first outcome was success.
		for _, o := range g {
			if o.Outcome != OutOK {
				continue
			}
			for _, c := range g {
				if c.Invoke <= o.Return || (!refusal(c.Outcome) && !(c.Outcome == OutOK && !c.Replayed)) {
					continue
				}
				if stream && (o.Replayed || c.Return >= o.Invoke+int64(cfg.Options.OpTTL) ||
					r.inWindow(o.Invoke, ret(c), FaultOpDel, FaultOpDelAll, FaultRedisRestart, FaultRedisRollback)) {
					continue // docs/contract.md: stream idempotency holds within WithOpTTL
				}
				if c.Outcome == OutOK {
					if stream {
						add("repeat within the op TTL executed again: first %s, repeat %s", describe(o), describe(c))
					}
					continue
				}
				add("op key answered a refusal after its success: first %s, then %s", describe(o), describe(c))
				break
			}
			if stream {
				for _, c := range g {
					if !o.Replayed && c.Outcome == OutOK && c.Replayed && c.Invoke > o.Return && c.Delta != o.Delta &&
						c.Return < o.Invoke+int64(cfg.Options.OpTTL) &&
						!r.inWindow(o.Invoke, ret(c), FaultOpDel, FaultOpDelAll, FaultRedisRestart, FaultRedisRollback) {
						add("replay within the op TTL differs from the first outcome: first %s, repeat %s", describe(o), describe(c))
					}
				}
			}
		}
		// A release of an acknowledged purchase refused as unknown.
		if rowKind(c0.Step.Kind) == OpRelease {
			dk := tripleKey(c0.Step.Prefix, ItemID(c0.Step.Prefix, c0.Step.Item), OpDecr, c0.Step.Key)
			for _, c := range g {
				if c.Outcome != OutNotFound {
					continue
				}
				for _, d := range decrOK[dk] {
					if d.Return < c.Invoke && (!stream || (!d.Replayed && c.Return < d.Invoke+int64(cfg.Options.OpTTL) &&
						!r.inWindow(d.Invoke, ret(c), FaultOpDel, FaultOpDelAll, FaultRedisRestart, FaultRedisRollback))) {
						add("Release of an acknowledged purchase refused: purchase %s, release %s", describe(d), describe(c))
						break
					}
				}
			}
		}
		// Stream: an acknowledged change reaches the ledger once the
		// streams are flushed, unless Redis lost it before the flush.
		if stream {
			for _, c := range g {
				if c.Outcome == OutOK && !c.Replayed && !inLedger && !r.inWindow(c.Invoke, forever-1, FaultRedisRestart, FaultRedisRollback) {
					add("acknowledged stream change missing from the ledger after the flush: %s", describe(c))
				}
			}
		}
	}
	// Release gives back exactly what the purchase took, per the ledger
	// (the stream prefix too: whatever a refused repeat of the purchase
	// took in Redis).
	for k, rw := range rows {
		parts := strings.Split(k, "\x00")
		p, _ := strconv.Atoi(parts[0])
		if parts[2] != OpRelease || rw.state != "committed" {
			continue
		}
		d, ok := rows[tripleKey(p, parts[1], OpDecr, parts[3])]
		if !ok || d.state != "committed" || d.delta != -rw.delta {
			add("the ledger's release of %s/%s op %q gives back %d, its purchase row is %+v (found %v)",
				Prefixes[p].Name, parts[1], parts[3], rw.delta, d, ok)
		}
	}
	return vs
}

// CheckLinearizable checks the history of every item of the sync prefixes
// with porcupine. The history of an item is cut at the first Redis restart
// or garbling of it, or loss of its pending op records with a journal:
// docs/contract.md allows a window of disagreement there. It returns the
// violations and, for each failing item, the model and the
// linearization info for the visualization.
func (r *Run) CheckLinearizable(calls []Call, timeout time.Duration) ([]Violation, []Failure) {
	var vs []Violation
	var fails []Failure
	cut := forever
	r.mu.Lock()
	for _, e := range r.events {
		if e.Kind == FaultRedisRestart && e.Start < cut {
			cut = e.Start
		}
	}
	garbleAt := map[[2]int]int64{}
	for _, e := range r.events {
		if e.Kind == FaultGarble || e.Kind == FaultJournalRecords {
			k := [2]int{e.Prefix, e.Item}
			if t, ok := garbleAt[k]; !ok || e.Start < t {
				garbleAt[k] = e.Start
			}
		}
	}
	r.mu.Unlock()
	for p := range Prefixes {
		if Prefixes[p].Stream {
			continue
		}
		for i := range r.Plan.Config.Items {
			end := cut
			if t, ok := garbleAt[[2]int{p, i}]; ok && t < end {
				end = t
			}
			var mine []Call
			for _, c := range calls {
				if c.Step.Prefix == p && c.Step.Item == i && (isChange(c.Step.Kind) || c.Step.Kind == OpGet || c.Step.Kind == OpConfirm) && c.Invoke < end {
					if ret(c) >= end {
						c.Outcome, c.Return = OutUnknown, 0
					}
					mine = append(mine, c)
				}
			}
			var ops []porcupine.Operation
			for _, c := range mine {
				in := linInput{Kind: c.Step.Kind, Key: c.Step.Key, N: c.Step.N, Unknown: c.Outcome == OutUnknown, Call: c.ID,
					TTL: int64(c.Step.TTL), Invoke: c.Invoke, Return: ret(c)}
				if refusal(c.Outcome) {
					for _, o := range mine {
						end := ret(o)
						if o.Outcome == OutOK && o.Delta > 0 && o.Proc == "p" && r.inWindow(o.Invoke, end, FaultToxicRedis) {
							// A committed increase whose last Redis step failed
							// reaches the stock only when Reconcile confirms it.
							end = forever
						}
						if o.ID != c.ID && isChange(o.Step.Kind) && o.Outcome != OutBusy && o.Invoke <= ret(c) && end >= c.Invoke {
							in.Overlap = true
							break
						}
					}
				}
				if c.Step.Kind == OpGet && c.Outcome != OutOK {
					continue
				}
				ops = append(ops, porcupine.Operation{ClientId: c.Step.Client, Input: in, Call: c.Invoke,
					Output: linOutput{Out: c.Outcome, Delta: c.Delta, Replayed: c.Replayed, Avail: c.Avail}, Return: ret(c)})
			}
			model := itemModel(r.Plan.Config.Capacity[p][i])
			res, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
			r.mu.Lock()
			r.stats["lin-"+string(res)]++
			r.mu.Unlock()
			if res == porcupine.Illegal {
				vs = append(vs, Violation{"LIN", fmt.Sprintf("%s/%d: the history of %d operations is not linearizable; %s",
					Prefixes[p].Name, i, len(ops), explain(info, ops))})
				fails = append(fails, Failure{Name: fmt.Sprintf("%s-%d", Prefixes[p].Name, i), Model: model, Info: info})
			}
		}
	}
	return vs, fails
}

// Failure is a non-linearizable item history, for the visualization.
type Failure struct {
	Name  string
	Model porcupine.Model
	Info  porcupine.LinearizationInfo
}

// explain names the operations at the end of the longest linearizable
// prefix porcupine found and the earliest operation it could not place.
func explain(info porcupine.LinearizationInfo, ops []porcupine.Operation) string {
	var longest []porcupine.Operation
	for _, part := range info.PartialLinearizationsOperations() {
		for _, l := range part {
			if len(l) > len(longest) {
				longest = l
			}
		}
	}
	placed := map[string]bool{}
	for _, o := range longest {
		placed[o.Input.(linInput).Call] = true
	}
	var stuck *porcupine.Operation
	for k := range ops {
		if !placed[ops[k].Input.(linInput).Call] && (stuck == nil || ops[k].Call < stuck.Call) {
			stuck = &ops[k]
		}
	}
	var tail []string
	for _, o := range longest[max(0, len(longest)-6):] {
		tail = append(tail, describeOp(o.Input, o.Output))
	}
	msg := fmt.Sprintf("longest linearizable prefix: %d operations, ending with: %s", len(longest), strings.Join(tail, "; "))
	if stuck != nil {
		msg += fmt.Sprintf("; earliest operation that cannot follow: %s (called %s)", describeOp(stuck.Input, stuck.Output),
			time.Unix(0, stuck.Call).Format("15:04:05.000000"))
	}
	return msg
}

// keepLedger keeps the ledger rows of item i of prefix p for the report:
// what each op key wrote, to set against the history.
func (r *Run) keepLedger(ctx context.Context, p, i int) {
	var b strings.Builder
	id := ItemID(p, i)
	fmt.Fprintf(&b, "%s/%d (%s):\n", Prefixes[p].Name, i, id)
	for _, table := range []string{Prefixes[p].ModTable, Prefixes[p].UsageTable} {
		err := r.admin.rows(ctx, table, func(rid, kind, op string, rw row) {
			if rid == id {
				fmt.Fprintf(&b, "  %s %s %q delta=%d state=%s attempt=%d\n", table, kind, op, rw.delta, rw.state, rw.attempt)
			}
		})
		if err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", table, err)
		}
	}
	r.mu.Lock()
	r.ledgers = append(r.ledgers, b.String())
	r.mu.Unlock()
}
