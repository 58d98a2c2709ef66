package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

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
	// is off until refreshed; Manager.RunFlusher refreshes them itself.
	OnConflict func(ctx context.Context, items []string)
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
	w       BatchWriter
	cfg     FlusherConfig
	// quiet[i] counts the rounds in a row that found shard i empty; a
	// quiet shard is read only every eighth round, so a hot SKU's shard
	// does not pay for the fifteen idle ones on every batch.
	quiet  []int
	rounds int
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
	if cfg.BatchSize > 2000 {
		return nil, argError("flusher batch size %d is over 2000 (the ack script passes the ids as arguments)", cfg.BatchSize)
	}
	ks := newKeyspace(namespace, prefix, shards)
	if cfg.Redis != nil {
		rdb = cfg.Redis
	}
	f := &Flusher{rdb: rdb, w: w, cfg: cfg, quiet: make([]int, shards)}
	for i := range shards {
		f.streams = append(f.streams, ks.stream(i))
	}
	return f, nil
}

// Run flushes until ctx is done, then drains what is left (bounded by
// DrainTimeout) and returns ctx's error. Errors of single rounds are
// retried: entries are acknowledged only after their batch is committed.
func (f *Flusher) Run(ctx context.Context) error {
	if err := flushAckScript.Load(ctx, f.rdb).Err(); err != nil {
		return fmt.Errorf("invgen: flusher: %w", err)
	}
	claimEvery := time.NewTicker(max(f.cfg.ClaimAfter/2, time.Millisecond))
	defer claimEvery.Stop()
	own := true // read our own unacknowledged entries first (a restart)
	var b Batch
	for ctx.Err() == nil {
		claim := false
		select {
		case <-claimEvery.C:
			claim = true
		default:
		}
		n, err := f.round(ctx, &b, own, claim)
		own = err != nil
		if err != nil || n == 0 {
			sleep(ctx, f.cfg.Idle)
		}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.DrainTimeout)
	defer cancel()
	for {
		n, err := f.round(dctx, &b, true, false)
		if err != nil {
			return errors.Join(ctx.Err(), fmt.Errorf("invgen: flusher drain: %w", err))
		}
		if n == 0 {
			if n, err = f.round(dctx, &b, false, false); err == nil && n == 0 {
				return ctx.Err()
			}
		}
	}
}

// Flush writes everything the streams hold now, including entries other
// flushers left unacknowledged for ClaimAfter, and returns how many entries
// it wrote. Tests and shutdown hooks use it.
func (f *Flusher) Flush(ctx context.Context) (int, error) {
	if err := flushAckScript.Load(ctx, f.rdb).Err(); err != nil {
		return 0, fmt.Errorf("invgen: flush: %w", err)
	}
	var b Batch
	total := 0
	for _, own := range []bool{true, false} {
		for claim := true; ; claim = false {
			n, err := f.round(ctx, &b, own, claim)
			total += n
			if err != nil {
				return total, err
			}
			if n == 0 && !claim {
				break
			}
		}
	}
	return total, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// round reads one batch from every shard (new entries, or with own this
// consumer's unacknowledged ones; with claim also entries other consumers
// left idle), writes it, and acknowledges and deletes what it wrote.
func (f *Flusher) round(ctx context.Context, b *Batch, own, claim bool) (int, error) {
	start := time.Now()
	pipe := f.rdb.Pipeline()
	reads := make([]*redis.XStreamSliceCmd, len(f.streams))
	claims := make([]*redis.XAutoClaimCmd, len(f.streams))
	from := ">"
	if own {
		from = "0"
	}
	f.rounds++
	every := own || claim || f.rounds%8 == 0
	for i, s := range f.streams {
		if f.quiet[i] > 0 && !every {
			continue
		}
		reads[i] = pipe.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: flushGroup, Consumer: f.cfg.Consumer, Streams: []string{s, from},
			Count: int64(f.cfg.BatchSize), Block: -1,
		})
		if claim {
			claims[i] = pipe.XAutoClaim(ctx, &redis.XAutoClaimArgs{
				Stream: s, Group: flushGroup, Consumer: f.cfg.Consumer,
				MinIdle: f.cfg.ClaimAfter, Start: "0", Count: int64(f.cfg.BatchSize),
			})
		}
	}
	_, err := pipe.Exec(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		if strings.Contains(err.Error(), "NOGROUP") {
			return 0, f.createGroups(ctx)
		}
		return 0, err
	}
	b.reset()
	ids := make([][]string, len(f.streams))
	var oldest int64 = -1
	add := func(i int, msgs []redis.XMessage) error {
		for _, m := range msgs {
			ids[i] = append(ids[i], m.ID)
			if m.Values == nil {
				continue // deleted after it was read: written already
			}
			if err := b.add(m); err != nil {
				return err
			}
			if ms := idMillis(m.ID); oldest < 0 || ms < oldest {
				oldest = ms
			}
		}
		return nil
	}
	for i := range f.streams {
		if reads[i] == nil {
			continue
		}
		got := 0
		for _, st := range reads[i].Val() {
			got += len(st.Messages)
			if err := add(i, st.Messages); err != nil {
				return 0, err
			}
		}
		if got == 0 {
			f.quiet[i]++
		} else {
			f.quiet[i] = 0
		}
		if claims[i] != nil {
			msgs, _ := claims[i].Val()
			if err := add(i, msgs); err != nil {
				return 0, err
			}
		}
	}
	n := 0
	for _, s := range ids {
		n += len(s)
	}
	if n == 0 {
		return 0, nil
	}
	var conflicts []string
	if b.Len() > 0 {
		var err error
		if conflicts, err = f.w.Flush(ctx, b); err != nil {
			return 0, fmt.Errorf("invgen: flush %d entries: %w", b.Len(), err)
		}
	}
	if err := f.ack(ctx, ids); err != nil {
		return 0, fmt.Errorf("invgen: acknowledge flushed entries: %w", err)
	}
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
	return n, nil
}

// ack acknowledges and trims the written entries of every shard, in one
// pipeline of flushack.lua calls.
func (f *Flusher) ack(ctx context.Context, ids [][]string) error {
	run := func() error {
		pipe := f.rdb.Pipeline()
		for i, s := range f.streams {
			if len(ids[i]) == 0 {
				continue
			}
			args := make([]any, 0, len(ids[i])+1)
			args = append(args, flushGroup)
			for _, id := range ids[i] {
				args = append(args, id)
			}
			flushAckScript.EvalSha(ctx, pipe, []string{s}, args...)
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
}

// FlushLag reports the prefix's flush lag (zero in the sync mode).
func (c *Core[K]) FlushLag(ctx context.Context) (FlushLag, error) {
	if err := c.layout.check(ctx); err != nil {
		return FlushLag{}, err
	}
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
	return lag, nil
}

// RunFlusher runs a flusher of this prefix until ctx is done (see
// Flusher.Run). It is an error in the sync mode.
func (c *Core[K]) RunFlusher(ctx context.Context, cfg FlusherConfig) error {
	if err := c.layout.check(ctx); err != nil {
		return err
	}
	f, err := c.flusher(cfg)
	if err != nil {
		return err
	}
	return f.Run(ctx)
}

// Flush writes everything the prefix's streams hold to the ledger now.
func (c *Core[K]) Flush(ctx context.Context) (int, error) {
	if err := c.layout.check(ctx); err != nil {
		return 0, err
	}
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
	user := cfg.OnConflict
	cfg.OnConflict = func(ctx context.Context, items []string) {
		for _, item := range items {
			if id, err := c.codec.Decode(item); err == nil {
				_ = c.Refresh(ctx, id)
			}
		}
		if user != nil {
			user(ctx, items)
		}
	}
	return NewFlusher(c.rdb, c.opt.namespace, c.prefix, len(c.ks.tags), c.ledger, cfg)
}

// writeStream writes every entry of one shard stream to the ledger without
// acknowledging them (the flusher will, after writing them again, which
// changes nothing). Refresh calls it under the item's fence so that the
// ledger holds every change of the item.
func (c *Core[K]) writeStream(ctx context.Context, stream string) error {
	start := "-"
	var b Batch
	for {
		msgs, err := c.rdb.XRangeN(ctx, stream, start, "+", 1000).Result()
		if err != nil {
			return err
		}
		b.reset()
		for _, m := range msgs {
			if err := b.add(m); err != nil {
				return err
			}
		}
		if b.Len() > 0 {
			// Conflicts need no action here: the caller reads the ledger
			// next and loads what it says.
			if _, err := c.ledger.Flush(ctx, &b); err != nil {
				return err
			}
		}
		if len(msgs) < 1000 {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}
