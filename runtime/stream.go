package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

// The stream ledger mode: Decr, Incr and Release are decided and recorded in
// one Lua call that also appends the usage row to the shard's Redis stream;
// a Flusher writes the streams to the ledger in batches. Init and Adjust
// stay synchronous in both modes.

// flushGroup is the consumer group every flusher of a prefix joins.
const flushGroup = "invgen"

// FlusherConfig configures a Flusher. Zero values take the defaults.
type FlusherConfig struct {
	// Consumer names this flusher in the consumer group (default: host,
	// pid and a random suffix). Flushers of one prefix share the work.
	Consumer string
	// BatchSize is the most entries read per shard per round (default 1000).
	BatchSize int
	// Idle is how long to sleep when every stream is empty (default 2ms).
	Idle time.Duration
	// ClaimAfter is how long an entry read by another flusher may stay
	// unacknowledged before this one takes it over (default 30s): a
	// flusher that died mid-batch loses nothing.
	ClaimAfter time.Duration
	// DrainTimeout bounds the final flush after ctx is done (default 10s).
	DrainTimeout time.Duration
	// OnFlush, if set, receives every batch written.
	OnFlush func(FlushReport)
	// Redis, if set, is the client the flusher uses instead of the
	// manager's: a pool of its own, so that a crowd of buyers waiting for
	// connections does not hold up the flush.
	Redis redis.UniversalClient
	// OnConflict, if set, receives the items of entries the ledger refused
	// because it holds their op key from an earlier attempt (a change Redis
	// repeated after its op record expired or was lost). Their Redis stock
	// is off until refreshed. Manager.RunFlusher and Manager.Flush refresh
	// them themselves before they acknowledge the batch (a refresh that
	// fails fails the round, and the batch is written and repaired again).
	OnConflict func(ctx context.Context, items []string)
	// OnError, if set, receives the error of every round that failed.
	// Run retries such rounds with a growing pause (Idle doubling up to
	// one second), and returns the error instead when it is permanent
	// (see Run).
	OnError func(error)
	// Logger, if set, logs every failed round (warning) and the error
	// that stops Run (error).
	Logger *slog.Logger
	// ForgetAfter is how long a consumer of the group may stay idle with
	// nothing pending before a live flusher deletes it (default 10m):
	// consumers of flushers that died do not pile up. Deleting a consumer
	// with nothing pending loses nothing; a live one is recreated by its
	// next read.
	ForgetAfter time.Duration
}

// FlushReport describes one batch a flusher wrote.
type FlushReport struct {
	Entries int
	// Conflicts counts entries refused because their op key was in the
	// ledger from another attempt.
	Conflicts int
	// Oldest is the age of the oldest entry of the batch when it was
	// written: the flush lag that entry saw.
	Oldest time.Duration
	Took   time.Duration
}

// Flusher writes the usage streams of one prefix to its ledger. Several
// flushers, in one process or many, may run at once. Written entries are
// acknowledged and trimmed from the stream, so its length is the backlog.
type Flusher struct {
	rdb     redis.UniversalClient
	streams []string
	tags    []string // per shard: the hash tag
	w       BatchWriter
	cfg     FlusherConfig
	// quiet[i] counts the rounds in a row that found shard i empty; a
	// quiet shard is read only every eighth round, so a hot SKU's shard
	// does not pay for the fifteen idle ones on every batch.
	quiet  []int
	rounds int
	// last[i] is the id of the last new entry the latest round read from
	// shard i ("" for none).
	last []string
	// repair, set by a Core's flusher, refreshes the items whose entries
	// conflicted before their batch is acknowledged: if it fails, the
	// batch is written again later, finds the same conflicts, and repairs
	// them then, so no correction is lost.
	repair func(ctx context.Context, items []string) error
}

// NewFlusher returns a flusher of the prefix's streams. Generated packages
// call it through Manager.RunFlusher; `invgen flush` calls it with a
// BatchWriter built from the spec.
func NewFlusher(rdb redis.UniversalClient, namespace, prefix string, shards int, w BatchWriter, cfg FlusherConfig) (*Flusher, error) {
	if err := checkName("namespace", namespace); err != nil {
		return nil, err
	}
	if err := checkName("prefix", prefix); err != nil {
		return nil, err
	}
	if shards < 1 || shards > 1024 || rdb == nil || w == nil {
		return nil, argError("flusher needs a Redis client, a writer and 1..1024 shards")
	}
	if cfg.Consumer == "" {
		host, _ := os.Hostname()
		cfg.Consumer = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), newToken()[:6])
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 2 * time.Millisecond
	}
	if cfg.ClaimAfter <= 0 {
		cfg.ClaimAfter = 30 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.ForgetAfter <= 0 {
		cfg.ForgetAfter = 10 * time.Minute
	}
	if cfg.BatchSize > 2000 {
		return nil, argError("flusher batch size %d is over 2000 (the ack script passes the ids as arguments)", cfg.BatchSize)
	}
	ks := newKeyspace(namespace, prefix, shards)
	if cfg.Redis != nil {
		rdb = cfg.Redis
	}
	f := &Flusher{rdb: rdb, w: w, cfg: cfg, quiet: make([]int, shards), last: make([]string, shards)}
	for i := range shards {
		f.streams = append(f.streams, ks.stream(i))
	}
	f.tags = ks.tags
	return f, nil
}

// maxRetryPause bounds the pause between failed rounds of Run.
const maxRetryPause = time.Second

// Run flushes until ctx is done, then writes what the streams held at that
// moment (bounded by DrainTimeout), deletes its consumer from the group and
// returns ctx's error. A failed round is reported (OnError, Logger) and
// retried after a pause that doubles from Idle up to one second: entries
// are acknowledged only after their batch is committed. A permanent
// failure ends Run with its error: PostgreSQL errors of SQLSTATE class 42
// (undefined table, column or function, missing privilege), 3D000 and
// 3F000 (no such database or schema), and stream entries that cannot be
// parsed. Those need an operator; retrying them changes nothing.
func (f *Flusher) Run(ctx context.Context) error {
	if err := f.loadScripts(ctx); err != nil {
		return fmt.Errorf("invgen: flusher: %w", err)
	}
	defer f.forgetSelf(ctx)
	claimEvery := time.NewTicker(max(f.cfg.ClaimAfter/2, time.Millisecond))
	defer claimEvery.Stop()
	forgetEvery := time.NewTicker(max(f.cfg.ForgetAfter/2, time.Millisecond))
	defer forgetEvery.Stop()
	own := true // read our own unacknowledged entries first (a restart)
	var (
		b     Batch
		pause time.Duration
	)
	for ctx.Err() == nil {
		claim := false
		select {
		case <-claimEvery.C:
			claim = true
		case <-forgetEvery.C:
			if err := f.forget(ctx, "", f.cfg.ForgetAfter); err != nil && ctx.Err() == nil {
				f.report(fmt.Errorf("invgen: flusher: delete idle consumers: %w", err))
			}
		default:
		}
		n, err := f.round(ctx, &b, pass{own: own, claim: claim})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			f.report(err)
			if permanent(err) {
				if f.cfg.Logger != nil {
					f.cfg.Logger.Error("invgen: flusher stopped", "consumer", f.cfg.Consumer, "err", err)
				}
				return fmt.Errorf("invgen: flusher stopped: %w", err)
			}
			own = true
			pause = min(max(2*pause, f.cfg.Idle), maxRetryPause)
			sleep(ctx, pause)
			continue
		}
		own, pause = false, 0
		if n == 0 {
			sleep(ctx, f.cfg.Idle)
		}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.DrainTimeout)
	defer cancel()
	if _, err := f.flushNow(dctx, &b, false); err != nil {
		f.report(err)
		return errors.Join(ctx.Err(), fmt.Errorf("invgen: flusher drain: %w", err))
	}
	return ctx.Err()
}

// Flush writes what the streams hold when it is called, including entries
// other flushers left unacknowledged for ClaimAfter, and returns how many
// entries it wrote. It does not chase changes made after it was called:
// under sustained traffic it returns all the same. Entries up to that
// point that a live flusher holds are waited for. Tests, shutdown hooks
// and `invgen flush -once` use it.
//
// On a Redis Cluster, a server that does not answer (a master failing
// over) makes it reload the cluster's layout and start again, for up to
// five seconds: entries it read but did not write are its own pending
// ones, which the next pass writes first.
func (f *Flusher) Flush(ctx context.Context) (int, error) {
	defer f.forgetSelf(ctx)
	var (
		b     Batch
		total int
		wait  backoff
	)
	for {
		err := f.loadScripts(ctx)
		if err != nil {
			err = fmt.Errorf("invgen: flush: %w", err)
		} else {
			var n int
			n, err = f.flushNow(ctx, &b, true)
			total += n
		}
		if err != nil && reloadOnFailure(f.rdb, err) && wait.sleep(ctx, 5*time.Second) == nil {
			continue
		}
		return total, err
	}
}

func (f *Flusher) loadScripts(ctx context.Context) error {
	for _, s := range []*redis.Script{flushAckScript, flushForgetScript} {
		if err := s.Load(ctx, f.rdb).Err(); err != nil {
			return err
		}
	}
	return nil
}

// flushNow writes every entry up to the last one each stream held when it
// was called. With wait it also waits for such entries that other
// flushers hold (claiming them once idle for ClaimAfter).
func (f *Flusher) flushNow(ctx context.Context, b *Batch, wait bool) (int, error) {
	tails, err := f.tails(ctx)
	if err != nil {
		return 0, fmt.Errorf("invgen: flush: %w", err)
	}
	total := 0
	// 1. Our own unacknowledged entries, and those others left idle.
	for claim := true; ; claim = false {
		n, err := f.round(ctx, b, pass{own: true, claim: claim})
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 && !claim {
			break
		}
	}
	// 2. New entries, shard by shard until the read passes the tail.
	skip := make([]bool, len(f.streams))
	left := 0
	for i, t := range tails {
		skip[i] = t == ""
		if !skip[i] {
			left++
		}
	}
	for left > 0 {
		n, err := f.round(ctx, b, pass{skip: skip})
		total += n
		if err != nil {
			return total, err
		}
		for i := range skip {
			if !skip[i] && (f.last[i] == "" || !idLess(f.last[i], tails[i])) {
				skip[i] = true
				left--
			}
		}
	}
	// 3. Entries up to the tails that other flushers hold: wait for them,
	// or claim them once they are idle for ClaimAfter.
	for wait {
		held, err := f.held(ctx, tails)
		if err != nil {
			return total, fmt.Errorf("invgen: flush: %w", err)
		}
		if !held {
			return total, nil
		}
		n, err := f.round(ctx, b, pass{own: true, claim: true})
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			sleep(ctx, max(f.cfg.Idle, 10*time.Millisecond))
			if err := ctx.Err(); err != nil {
				return total, fmt.Errorf("invgen: flush: waiting for entries other flushers hold: %w", err)
			}
		}
	}
	return total, nil
}

// tails returns the id of the last entry of every stream ("" if empty).
func (f *Flusher) tails(ctx context.Context) ([]string, error) {
	pipe := f.rdb.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(f.streams))
	for i, s := range f.streams {
		cmds[i] = pipe.XRevRangeN(ctx, s, "+", "-", 1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	tails := make([]string, len(f.streams))
	for i, c := range cmds {
		if msgs := c.Val(); len(msgs) > 0 {
			tails[i] = msgs[0].ID
		}
	}
	return tails, nil
}

// held reports whether any consumer of the group holds an entry at or
// before a stream's tail.
func (f *Flusher) held(ctx context.Context, tails []string) (bool, error) {
	pipe := f.rdb.Pipeline()
	cmds := make([]*redis.XPendingCmd, len(f.streams))
	for i, s := range f.streams {
		if tails[i] != "" {
			cmds[i] = pipe.XPending(ctx, s, flushGroup)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) && !isNoGroup(err) {
		return false, err
	}
	for i, c := range cmds {
		if c == nil || c.Err() != nil {
			continue
		}
		if p := c.Val(); p.Count > 0 && !idLess(tails[i], p.Lower) {
			return true, nil
		}
	}
	return false, nil
}

// forget deletes, on every stream, the consumers with nothing pending that
// are idle for longer than idle (0: none), and self unless it is "".
func (f *Flusher) forget(ctx context.Context, self string, idle time.Duration) error {
	run := func() error {
		pipe := f.rdb.Pipeline()
		for _, s := range f.streams {
			flushForgetScript.EvalSha(ctx, pipe, []string{s}, flushGroup, self, idle.Milliseconds())
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	err := run()
	if err != nil && strings.Contains(err.Error(), "NOSCRIPT") {
		if err := flushForgetScript.Load(ctx, f.rdb).Err(); err != nil {
			return err
		}
		err = run()
	}
	return err
}

// forgetSelf deletes this flusher's consumer where it holds nothing, even
// when ctx is done.
func (f *Flusher) forgetSelf(ctx context.Context) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := f.forget(fctx, f.cfg.Consumer, 0); err != nil {
		f.report(fmt.Errorf("invgen: flusher: delete consumer %s: %w", f.cfg.Consumer, err))
	}
}

// report hands a round's error to OnError and the Logger.
func (f *Flusher) report(err error) {
	if f.cfg.OnError != nil {
		f.cfg.OnError(err)
	}
	if f.cfg.Logger != nil {
		f.cfg.Logger.Warn("invgen: flush round failed", "consumer", f.cfg.Consumer, "err", err)
	}
}

// badEntryError is a stream entry that cannot be parsed: a permanent
// failure.
type badEntryError struct{ err error }

func (e *badEntryError) Error() string { return e.err.Error() }
func (e *badEntryError) Unwrap() error { return e.err }

// permanent reports whether a round's error will not pass by retrying.
func permanent(err error) bool {
	var (
		pe  *pgconn.PgError
		bad *badEntryError
	)
	if errors.As(err, &bad) {
		return true
	}
	if k, ok := dbErrorKind(err); ok {
		return k == DBErrSchema
	}
	switch {
	case errors.As(err, &pe):
		return strings.HasPrefix(pe.Code, "42") || pe.Code == "3D000" || pe.Code == "3F000"
	}
	return false
}

func isNoGroup(err error) bool { return err != nil && strings.Contains(err.Error(), "NOGROUP") }

// idLess reports whether stream id a is before b.
func idLess(a, b string) bool {
	ams, aseq, _ := strings.Cut(a, "-")
	bms, bseq, _ := strings.Cut(b, "-")
	am, _ := strconv.ParseUint(ams, 10, 64)
	bm, _ := strconv.ParseUint(bms, 10, 64)
	if am != bm {
		return am < bm
	}
	as, _ := strconv.ParseUint(aseq, 10, 64)
	bs, _ := strconv.ParseUint(bseq, 10, 64)
	return as < bs
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// pass says what one round reads.
type pass struct {
	own   bool   // this consumer's unacknowledged entries instead of new ones
	claim bool   // also entries other consumers left idle for ClaimAfter
	skip  []bool // shards not to read; nil reads every shard (quiet ones every eighth round)
}

// round reads one batch from every shard (new entries, or with own this
// consumer's unacknowledged ones; with claim also entries other consumers
// left idle), writes it, and acknowledges and deletes what it wrote.
func (f *Flusher) round(ctx context.Context, b *Batch, p pass) (int, error) {
	n, err := f.round1(ctx, b, p)
	if isNoGroup(err) {
		if err := f.createGroups(ctx); err != nil {
			return 0, err
		}
		n, err = f.round1(ctx, b, p)
	}
	return n, err
}

// round1 is one round: read, collect into the batch, write it, then
// acknowledge and report it.
func (f *Flusher) round1(ctx context.Context, b *Batch, p pass) (int, error) {
	start := time.Now()
	reads, claims, err := f.read(ctx, p)
	if err != nil {
		return 0, err
	}
	b.reset()
	r := newRoundEntries(len(f.streams))
	if err := f.collect(b, r, reads, claims, p); err != nil {
		return 0, err
	}
	n := r.count()
	if n == 0 {
		return 0, nil
	}
	conflicts, err := f.write(ctx, b)
	if err != nil {
		return 0, err
	}
	if err := f.ack(ctx, r.ids, r.hashes, r.unflushed, sellable(r.items, conflicts)); err != nil {
		return 0, fmt.Errorf("invgen: acknowledge flushed entries: %w", err)
	}
	f.reportRound(ctx, n, conflicts, r.oldest, start)
	return n, nil
}

// read sends one pipeline of reads of the shards p reads (new entries,
// or with own this consumer's unacknowledged ones) and, with claim, of the
// entries other consumers left idle; a nil command is a shard not read.
func (f *Flusher) read(ctx context.Context, p pass) ([]*redis.XStreamSliceCmd, []*redis.XAutoClaimCmd, error) {
	pipe := f.rdb.Pipeline()
	reads := make([]*redis.XStreamSliceCmd, len(f.streams))
	claims := make([]*redis.XAutoClaimCmd, len(f.streams))
	from := ">"
	if p.own {
		from = "0"
	}
	f.rounds++
	every := p.own || p.claim || f.rounds%8 == 0
	for i, s := range f.streams {
		f.last[i] = ""
		if p.skip != nil && p.skip[i] || p.skip == nil && f.quiet[i] > 0 && !every {
			continue
		}
		reads[i] = pipe.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: flushGroup, Consumer: f.cfg.Consumer, Streams: []string{s, from},
			Count: int64(f.cfg.BatchSize), Block: -1,
		})
		if p.claim {
			claims[i] = pipe.XAutoClaim(ctx, &redis.XAutoClaimArgs{
				Stream: s, Group: flushGroup, Consumer: f.cfg.Consumer,
				MinIdle: f.cfg.ClaimAfter, Start: "0", Count: int64(f.cfg.BatchSize),
			})
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, err
	}
	return reads, claims, nil
}

// roundEntries are the entries one round read, per shard: every id to
// acknowledge, and for each entry still there the item hash, id and item
// to delete from its item's unflushed entries.
type roundEntries struct {
	ids, hashes, unflushed, items [][]string
	oldest                        int64 // ms of the oldest entry, -1 for none
}

func newRoundEntries(shards int) *roundEntries {
	return &roundEntries{ids: make([][]string, shards), hashes: make([][]string, shards),
		unflushed: make([][]string, shards), items: make([][]string, shards), oldest: -1}
}

// count is the number of entries read, written already or not.
func (r *roundEntries) count() int {
	n := 0
	for _, s := range r.ids {
		n += len(s)
	}
	return n
}

// collect adds what the reads and claims returned to b and r, and
// records, per shard, whether it was quiet and its last new entry.
func (f *Flusher) collect(b *Batch, r *roundEntries, reads []*redis.XStreamSliceCmd, claims []*redis.XAutoClaimCmd, p pass) error {
	for i := range f.streams {
		if reads[i] == nil {
			continue
		}
		got := 0
		for _, st := range reads[i].Val() {
			got += len(st.Messages)
			if err := f.take(b, r, i, st.Messages); err != nil {
				return err
			}
			if len(st.Messages) > 0 && !p.own {
				f.last[i] = st.Messages[len(st.Messages)-1].ID
			}
		}
		if got == 0 {
			f.quiet[i]++
		} else {
			f.quiet[i] = 0
		}
		if claims[i] != nil {
			msgs, _ := claims[i].Val()
			if err := f.take(b, r, i, msgs); err != nil {
				return err
			}
		}
	}
	return nil
}

// take adds the entries msgs of shard i to b and r.
func (f *Flusher) take(b *Batch, r *roundEntries, i int, msgs []redis.XMessage) error {
	for _, m := range msgs {
		r.ids[i] = append(r.ids[i], m.ID)
		if m.Values == nil {
			continue // deleted after it was read: written already
		}
		if err := b.add(m); err != nil {
			return &badEntryError{err}
		}
		item := b.Items[b.Len()-1]
		r.hashes[i] = append(r.hashes[i], f.tags[i]+"item:"+item)
		r.unflushed[i] = append(r.unflushed[i], m.ID)
		r.items[i] = append(r.items[i], item)
		if ms := idMillis(m.ID); r.oldest < 0 || ms < r.oldest {
			r.oldest = ms
		}
	}
	return nil
}

// write writes b to the ledger and has the items of entries it refused as
// repeats refreshed; it returns those items.
func (f *Flusher) write(ctx context.Context, b *Batch) ([]string, error) {
	if b.Len() == 0 {
		return nil, nil
	}
	conflicts, err := flushBatch(ctx, f.w, b)
	if err != nil {
		return nil, fmt.Errorf("invgen: flush %d entries: %w", b.Len(), err)
	}
	if len(conflicts) > 0 && f.repair != nil {
		if err := f.repair(ctx, conflicts); err != nil {
			return nil, fmt.Errorf("invgen: refresh the items of entries the ledger refused as repeats (the batch is written again and they are refreshed then): %w", err)
		}
	}
	return conflicts, nil
}

// reportRound tells OnConflict and OnFlush of a round of n entries.
func (f *Flusher) reportRound(ctx context.Context, n int, conflicts []string, oldest int64, start time.Time) {
	if len(conflicts) > 0 && f.cfg.OnConflict != nil {
		f.cfg.OnConflict(ctx, conflicts)
	}
	if f.cfg.OnFlush != nil {
		r := FlushReport{Entries: n, Conflicts: len(conflicts), Took: time.Since(start)}
		if oldest >= 0 {
			r.Oldest = time.Since(time.UnixMilli(oldest))
		}
		f.cfg.OnFlush(r)
	}
}

// sellable returns, per shard, one character per entry of items: '1'
// when the entry's units may go on sale once written (flushack.lua), '0'
// when the ledger refused an entry of its item as a repeat. Such an
// item's stock is set from the ledger by its refresh; until then no unit
// of the batch's increases of it goes on sale.
func sellable(items [][]string, conflicts []string) []string {
	out := make([]string, len(items))
	for i, its := range items {
		b := make([]byte, len(its))
		for j, item := range its {
			b[j] = '1'
			if slices.Contains(conflicts, item) {
				b[j] = '0'
			}
		}
		out[i] = string(b)
	}
	return out
}

// flushBatch writes b to the ledger and returns the items whose Redis stock
// is off from it: those of entries the ledger refused as repeats, and of
// releases that gave back the units of a purchase's repeat.
func flushBatch(ctx context.Context, w BatchWriter, b *Batch) ([]string, error) {
	changed := b.releasesPerPurchase()
	conflicts, err := w.Flush(ctx, b)
	if err != nil {
		return nil, err
	}
	for _, item := range changed {
		if !slices.Contains(conflicts, item) {
			conflicts = append(conflicts, item)
		}
	}
	return conflicts, nil
}

// ack acknowledges and trims the written entries of every shard, deletes
// them from their items' unflushed entries (hashes[i][j] holds
// unflushed[i][j]) and puts the increases among them on sale where
// sell[i][j] says so, in one pipeline of flushack.lua calls.
func (f *Flusher) ack(ctx context.Context, ids, hashes, unflushed [][]string, sell []string) error {
	run := func() error {
		pipe := f.rdb.Pipeline()
		for i, s := range f.streams {
			if len(ids[i]) == 0 {
				continue
			}
			keys := make([]string, 0, len(hashes[i])+1)
			keys = append(append(keys, s), hashes[i]...)
			args := make([]any, 0, len(ids[i])+len(unflushed[i])+3)
			args = append(args, flushGroup, len(ids[i]))
			for _, id := range ids[i] {
				args = append(args, id)
			}
			for _, id := range unflushed[i] {
				args = append(args, id)
			}
			args = append(args, sell[i])
			flushAckScript.EvalSha(ctx, pipe, keys, args...)
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	err := run()
	if err != nil && strings.Contains(err.Error(), "NOSCRIPT") {
		// Pipelined EVALSHA needs the script loaded (a restarted Redis).
		if err := flushAckScript.Load(ctx, f.rdb).Err(); err != nil {
			return err
		}
		err = run()
	}
	return err
}

// createGroups creates the consumer group on every stream (and the stream
// itself), reading from the start: entries written before are flushed too.
func (f *Flusher) createGroups(ctx context.Context) error {
	for _, s := range f.streams {
		err := f.rdb.XGroupCreateMkStream(ctx, s, flushGroup, "0").Err()
		if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
			return err
		}
	}
	return nil
}

// add appends the usage row of a stream entry (as reserve.lua writes it).
func (b *Batch) add(m redis.XMessage) error {
	str := func(f string) string { v, _ := m.Values[f].(string); return v }
	d, err := strconv.ParseInt(str("d"), 10, 64)
	if err != nil {
		return fmt.Errorf("stream entry %s: delta: %w", m.ID, err)
	}
	a, err := strconv.ParseInt(str("n"), 10, 64)
	if err != nil {
		return fmt.Errorf("stream entry %s: attempt: %w", m.ID, err)
	}
	b.Items = append(b.Items, str("i"))
	b.Kinds = append(b.Kinds, str("k"))
	b.OpKeys = append(b.OpKeys, str("o"))
	b.Deltas = append(b.Deltas, d)
	b.Attempts = append(b.Attempts, a)
	return nil
}

// idMillis is the Redis time, in ms, at which a stream entry was added.
func idMillis(id string) int64 {
	ms, _, _ := strings.Cut(id, "-")
	v, _ := strconv.ParseInt(ms, 10, 64)
	return v
}

// FlushLag is how far the ledger is behind Redis in the stream mode.
type FlushLag struct {
	// Entries is the number of usage rows in Redis not yet written to the
	// ledger: what a Redis loss would lose.
	Entries int64
	// Oldest is the age of the oldest of them.
	Oldest time.Duration
	// Backlog is true when Entries reaches BacklogEntries or Oldest
	// reaches BacklogAge: no flusher runs, or flushers fall behind.
	Backlog bool
}

// The bounds past which FlushLag and Audit report a backlog. The streams
// grow without bound while no flusher runs; every unflushed entry is also
// what a Redis loss would take from the ledger.
const (
	BacklogEntries = 100_000
	BacklogAge     = time.Minute
)

// FlushLag reports the prefix's flush lag (zero in the sync mode).
func (c *Core[K]) FlushLag(ctx context.Context) (FlushLag, error) {
	if err := c.enter(ctx); err != nil {
		return FlushLag{}, err
	}
	defer c.wg.Done()
	var lag FlushLag
	if !c.stream {
		return lag, nil
	}
	now, err := c.rdb.Time(ctx).Result()
	if err != nil {
		return lag, err
	}
	pipe := c.rdb.Pipeline()
	lens := make([]*redis.IntCmd, len(c.ks.tags))
	firsts := make([]*redis.XMessageSliceCmd, len(c.ks.tags))
	for i := range c.ks.tags {
		lens[i] = pipe.XLen(ctx, c.ks.stream(i))
		firsts[i] = pipe.XRangeN(ctx, c.ks.stream(i), "-", "+", 1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return lag, fmt.Errorf("invgen: flush lag of %s: %w", c.prefix, err)
	}
	for i := range c.ks.tags {
		lag.Entries += lens[i].Val()
		if msgs := firsts[i].Val(); len(msgs) > 0 {
			if age := now.Sub(time.UnixMilli(idMillis(msgs[0].ID))); age > lag.Oldest {
				lag.Oldest = age
			}
		}
	}
	lag.Backlog = lag.Entries >= BacklogEntries || lag.Oldest >= BacklogAge
	return lag, nil
}

// RunFlusher runs a flusher of this prefix until ctx is done (see
// Flusher.Run). It is an error in the sync mode.
//
// Close stops it too: it drains and returns ErrClosed, and Close waits for
// it.
func (c *Core[K]) RunFlusher(ctx context.Context, cfg FlusherConfig) error {
	if err := c.enter(ctx); err != nil {
		return err
	}
	defer c.wg.Done()
	f, err := c.flusher(cfg)
	if err != nil {
		return err
	}
	ctx, stop := c.untilClosed(ctx)
	defer stop()
	err = f.Run(ctx)
	if c.isClosed() {
		return ErrClosed
	}
	return err
}

// Flush writes everything the prefix's streams hold to the ledger now.
func (c *Core[K]) Flush(ctx context.Context) (_ int, err error) {
	ctx, done := c.observe(ctx, OpFlush)
	defer func() { done(false, err) }()
	if err := c.enter(ctx); err != nil {
		return 0, err
	}
	defer c.wg.Done()
	f, err := c.flusher(FlusherConfig{Consumer: "flush-" + newToken()[:8]})
	if err != nil {
		return 0, err
	}
	return f.Flush(ctx)
}

func (c *Core[K]) flusher(cfg FlusherConfig) (*Flusher, error) {
	if !c.stream {
		return nil, argError("prefix %s uses the sync ledger: there is nothing to flush", c.prefix)
	}
	if cfg.Logger == nil {
		cfg.Logger = c.opt.logger // WithLogger
	}
	f, err := NewFlusher(c.rdb, c.opt.namespace, c.prefix, len(c.ks.tags), c.ledger, cfg)
	if err != nil {
		return nil, err
	}
	f.repair = func(ctx context.Context, items []string) error {
		var errs []error
		for _, item := range items {
			// Within the flusher's counted call: a flusher draining after
			// Close still repairs what it writes.
			id, err := c.codec.Decode(item)
			if err == nil {
				err = c.refresh(ctx, id, item, false, false)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("item %q: %w", item, err))
			}
		}
		return errors.Join(errs...)
	}
	return f, nil
}

// unflushedPrefix starts the item hash fields that hold the item's
// unflushed stream entries: "u:<stream id>" -> "kind:delta:attempt:op key",
// written by reserve.lua and deleted by flushack.lua. Keeping them in the
// item hash costs a change no key of its own.
const unflushedPrefix = "u:"

// addUnflushed appends the usage row of one of item's unflushed entries,
// "kind:delta:attempt:op key" as reserve.lua writes it.
func (b *Batch) addUnflushed(item, v string) error {
	kind, rest, ok1 := strings.Cut(v, ":")
	ds, rest, ok2 := strings.Cut(rest, ":")
	as, opKey, ok3 := strings.Cut(rest, ":")
	d, err1 := strconv.ParseInt(ds, 10, 64)
	a, err2 := strconv.ParseInt(as, 10, 64)
	if !ok1 || !ok2 || !ok3 || err1 != nil || err2 != nil {
		return fmt.Errorf("unflushed entry of %s: malformed %q", item, v)
	}
	b.Items = append(b.Items, item)
	b.Kinds = append(b.Kinds, kind)
	b.OpKeys = append(b.OpKeys, opKey)
	b.Deltas = append(b.Deltas, d)
	b.Attempts = append(b.Attempts, a)
	return nil
}

// unflushedChunk is how many items' unflushed entries are read per round
// trip, unflushedScan how many entries of one item per read, and
// unflushedBatch how many rows are written per statement.
const (
	unflushedChunk = 20
	unflushedScan  = 1000
	unflushedBatch = 5000
)

// writeUnflushed writes the unflushed stream entries of the items to the
// ledger, in stream order, and deletes them from the items' hashes once
// written (the flusher writes them again when it reaches them, which
// changes nothing). It costs what these items hold, not their shards'
// backlog. Conflicts need no action here: the caller reads the ledger
// next and loads what it says.
func (c *Core[K]) writeUnflushed(ctx context.Context, items ...itemKeys) error {
	for len(items) > 0 {
		chunk := items[:min(len(items), unflushedChunk)]
		items = items[len(chunk):]
		if err := c.writeUnflushedChunk(ctx, chunk); err != nil {
			return err
		}
	}
	return nil
}

// writeFenced is writeUnflushed under the items' fences, as a refresh
// calls it so that the ledger holds every change of them: the entries an
// item's hash lists, then those of an item whose hash lost its list
// (writeStrayEntries).
func (c *Core[K]) writeFenced(ctx context.Context, items ...itemKeys) error {
	if err := c.writeUnflushed(ctx, items...); err != nil {
		return err
	}
	return c.writeStrayEntries(ctx, items)
}

// writeStrayEntries writes the entries of the items whose hash holds no
// stock (Redis lost it, or fence.lua replaced a key that was not a hash)
// from their shards' streams. Such a hash took its list of the item's
// unflushed entries with it, but the stream still holds each entry not
// yet written: loaded from the ledger without them, the item would put
// the units they took back on sale, to be sold twice once the flusher
// writes them. Each stream is read once, for all its items; under the
// items' fences no entry of them is added meanwhile. Entries written
// already are refused as repeats, which changes nothing.
func (c *Core[K]) writeStrayEntries(ctx context.Context, items []itemKeys) error {
	pipe := c.rdb.Pipeline()
	has := make([]*redis.BoolCmd, len(items))
	for i, k := range items {
		has[i] = pipe.HExists(ctx, k.item, "a")
	}
	if _, err := pipe.Exec(ctx); err != nil && !isCommandError(err) {
		return err
	}
	lost := map[string]map[string]int{} // stream -> item's Redis form -> index in items
	for i, k := range items {
		if err := has[i].Err(); (err == nil || isWrongType(err)) && !has[i].Val() {
			if lost[k.stream] == nil {
				lost[k.stream] = map[string]int{}
			}
			lost[k.stream][k.id] = i
		} else if err != nil && !isWrongType(err) {
			return err
		}
	}
	var all []unflushedEntry
	for stream, ids := range lost {
		found, err := c.entriesInStream(ctx, stream, ids)
		if err != nil {
			return err
		}
		all = append(all, found...)
	}
	if len(all) == 0 {
		return nil
	}
	return c.writeUnflushedEntries(ctx, items, orderUnflushed(all))
}

// entriesInStream reads stream from its start and returns the entries of
// the items ids names, as a hash lists them (reserve.lua).
func (c *Core[K]) entriesInStream(ctx context.Context, stream string, ids map[string]int) ([]unflushedEntry, error) {
	var out []unflushedEntry
	for start := "-"; ; {
		msgs, err := c.rdb.XRangeN(ctx, stream, start, "+", unflushedScan).Result()
		if err != nil {
			return nil, fmt.Errorf("read stream %s: %w", stream, err)
		}
		for _, m := range msgs {
			str := func(f string) string { v, _ := m.Values[f].(string); return v }
			if k, ok := ids[str("i")]; ok && m.ID != start {
				out = append(out, unflushedEntry{m.ID, str("k") + ":" + str("d") + ":" + str("n") + ":" + str("o"), k})
			}
		}
		if len(msgs) < unflushedScan {
			return out, nil
		}
		start = msgs[len(msgs)-1].ID // XRANGE includes it again: skipped above
	}
}

// writeUnflushedChunk writes the unflushed entries of a chunk of items:
// read, put in stream order, written in batches.
func (c *Core[K]) writeUnflushedChunk(ctx context.Context, items []itemKeys) error {
	all, err := c.scanUnflushed(ctx, items)
	if err != nil {
		return err
	}
	return c.writeUnflushedEntries(ctx, items, orderUnflushed(all))
}

// unflushedEntry is an unflushed stream entry of item items[k]: its stream
// id and row.
type unflushedEntry struct {
	id, row string
	k       int
}

// scanUnflushed reads the unflushed entries of items, every item's scan
// in one pipeline per round trip. A garbled item key lists none.
func (c *Core[K]) scanUnflushed(ctx context.Context, items []itemKeys) ([]unflushedEntry, error) {
	var all []unflushedEntry
	cursors := make([]uint64, len(items))
	todo := make([]int, len(items))
	for i := range items {
		todo[i] = i
	}
	for len(todo) > 0 {
		pipe := c.rdb.Pipeline()
		cmds := make([]*redis.ScanCmd, len(todo))
		for j, i := range todo {
			cmds[j] = pipe.HScan(ctx, items[i].item, cursors[i], unflushedPrefix+"*", unflushedScan)
		}
		if _, err := pipe.Exec(ctx); err != nil && !isCommandError(err) {
			return nil, err
		}
		more := todo[:0]
		for j, i := range todo {
			kv, cursor, err := cmds[j].Result()
			if isWrongType(err) {
				continue
			}
			if err != nil {
				return nil, err
			}
			for x := 0; x+1 < len(kv); x += 2 {
				if id, ok := strings.CutPrefix(kv[x], unflushedPrefix); ok {
					all = append(all, unflushedEntry{id, kv[x+1], i})
				}
			}
			if cursors[i] = cursor; cursor != 0 {
				more = append(more, i)
			}
		}
		todo = more
	}
	return all, nil
}

// orderUnflushed puts entries in stream order per item: of two entries of
// one op key (always of one item), the earlier is written, as the flusher
// does. Stream ids are unique within a shard only, so two items' entries
// may share one: an entry is its item and its id. A scan may return an
// entry twice; it is kept once.
func orderUnflushed(all []unflushedEntry) []unflushedEntry {
	slices.SortFunc(all, func(a, b unflushedEntry) int {
		switch {
		case a.k != b.k:
			return a.k - b.k
		case a.id == b.id:
			return 0
		case idLess(a.id, b.id):
			return -1
		}
		return 1
	})
	return slices.CompactFunc(all, func(a, b unflushedEntry) bool { return a.k == b.k && a.id == b.id })
}

// writeUnflushedEntries writes the entries in batches of unflushedBatch
// rows, and clears each batch's entries from their items once written.
func (c *Core[K]) writeUnflushedEntries(ctx context.Context, items []itemKeys, all []unflushedEntry) error {
	var b Batch
	for len(all) > 0 {
		part := all[:min(len(all), unflushedBatch)]
		all = all[len(part):]
		b.reset()
		ids := map[int][]string{}
		for _, e := range part {
			if err := b.addUnflushed(items[e.k].id, e.row); err != nil {
				return err
			}
			ids[e.k] = append(ids[e.k], e.id)
		}
		conflicts, err := flushBatch(ctx, c.ledger, &b)
		if err != nil {
			return err
		}
		if err := c.clearWritten(ctx, items, ids, conflicts); err != nil {
			return err
		}
	}
	return nil
}

// clearWritten deletes the written entries ids[k] from the hash of
// items[k] and puts the increases among them on sale, except for the items
// the ledger refused an entry of (clearwritten.lua), one call per item in
// one pipeline.
func (c *Core[K]) clearWritten(ctx context.Context, items []itemKeys, ids map[int][]string, conflicts []string) error {
	run := func() error {
		pipe := c.rdb.Pipeline()
		for k, ids := range ids {
			sell := strings.Repeat("1", len(ids))
			if slices.Contains(conflicts, items[k].id) {
				sell = strings.Repeat("0", len(ids))
			}
			args := make([]any, 0, len(ids)+1)
			for _, id := range ids {
				args = append(args, id)
			}
			clearWrittenScript.EvalSha(ctx, pipe, []string{items[k].item}, append(args, sell)...)
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	err := run()
	if err != nil && isNoScript(err) {
		if err := clearWrittenScript.Load(ctx, c.rdb).Err(); err != nil {
			return err
		}
		err = run()
	}
	return err
}

// unflushedSmall is how many unflushed entries of an item Refresh leaves
// to write under its fence; it writes the rest before fencing.
const unflushedSmall = 2000

// writeUnflushedBeforeFence writes an item's unflushed entries while
// changes of it go on, until few are left (or after a few passes when
// buyers add them as fast), so that what is left to write under the fence
// is short.
func (c *Core[K]) writeUnflushedBeforeFence(ctx context.Context, items ...itemKeys) error {
	for range 8 {
		pipe := c.rdb.Pipeline()
		lens := make([]*redis.IntCmd, len(items))
		for i, k := range items {
			lens[i] = pipe.HLen(ctx, k.item) // a handful of other fields
		}
		// An item key that is not a hash (garbled) lists no entries: the
		// fence replaces it.
		if _, err := pipe.Exec(ctx); err != nil && !isCommandError(err) {
			return err
		}
		var big []itemKeys
		for i, k := range items {
			if lens[i].Val() > unflushedSmall {
				big = append(big, k)
			}
		}
		if len(big) == 0 {
			return nil
		}
		if err := c.writeUnflushed(ctx, big...); err != nil {
			return err
		}
		items = big
	}
	return nil
}
