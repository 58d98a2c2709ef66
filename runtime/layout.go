package runtime

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

// A prefix's layout is everything that decides where its data lives: the
// Redis namespace and shard count (the keys of every item), the ledger mode
// (where a change waits before it reaches SQL) and the key type and length
// (the SQL column). Two processes of one prefix with different layouts
// would sell the same units twice, under two sets of keys, so the ledger
// database records the layout (CreateTables writes it) and every Core
// checks it: Ping and CreateTables at once, every other call on first use
// and then again whenever its verification is older than LayoutRecheck.
// A layout changes only through SwitchLayout.

// LayoutRecheck bounds how old the layout verification a call relies on may
// be. A process whose layout was retired (see SwitchLayout) refuses every
// call within this time. Half-way through it, the next call re-reads the
// recorded layout inline while the others go on; past it, calls wait for
// the re-read.
const LayoutRecheck = 2 * time.Second

// Layout is how a prefix's data is laid out.
type Layout struct {
	// Namespace is the first segment of every Redis key (after
	// WithNamespace).
	Namespace string
	// Shards is the number of hash-tag shards.
	Shards int
	// Ledger is the ledger mode: "sync" or "stream".
	Ledger string
	// KeyType is the item key type: "string", "int64" or "uuid".
	KeyType string
	// MaxKeyLen is the longest string key in bytes (0 for other key types).
	MaxKeyLen int
}

// String shows a layout as it appears in error messages.
func (l Layout) String() string {
	s := "namespace=" + l.Namespace + " shards=" + strconv.Itoa(l.Shards) + " ledger=" + l.Ledger + " key=" + l.KeyType
	if l.KeyType == "string" {
		s += " max_key_len=" + strconv.Itoa(l.MaxKeyLen)
	}
	return s
}

// LayoutRecord is the layout a ledger database records for a prefix.
type LayoutRecord struct {
	Layout
	// Retired is true while a switch to another layout is in progress:
	// no process may use the prefix until the new layout is recorded.
	Retired bool
	// Version counts the changes of the record, so that a switch changes
	// only the record it read.
	Version int64
}

// LayoutStore keeps a prefix's layout record in its ledger database (one
// row of the table <prefix>_inventory_layout). Generated packages
// implement it with their sqlc queries.
type LayoutStore interface {
	// RecordLayout records l, not retired, unless a layout is recorded
	// already, and returns the record that exists afterwards.
	RecordLayout(ctx context.Context, l Layout) (LayoutRecord, error)
	// LoadLayout returns the record; found is false when there is none.
	// When the table is missing it returns the database's error.
	LoadLayout(ctx context.Context) (rec LayoutRecord, found bool, err error)
	// RetireLayout marks the record retired if its version is still
	// version, and reports whether it did.
	RetireLayout(ctx context.Context, version int64) (bool, error)
	// ReplaceLayout records l, not retired, in place of the record if its
	// version is still version, and reports whether it did.
	ReplaceLayout(ctx context.Context, version int64, l Layout) (bool, error)
}

// VerifyLayout checks a process's layout want against the record of the
// ledger database (nil: none recorded). Every refusal matches
// ErrLayoutMismatch and names both layouts. `invgen flush` uses it too.
func VerifyLayout(prefix string, want Layout, rec *LayoutRecord) error {
	switch {
	case rec == nil:
		return fmt.Errorf("%w: prefix %s: the ledger database records no layout; CreateTables records this process's (%s)",
			ErrLayoutMismatch, prefix, want)
	case rec.Retired:
		return fmt.Errorf("%w: prefix %s: its recorded layout (%s) is retired while a layout switch runs; this process has %s",
			ErrLayoutMismatch, prefix, rec.Layout, want)
	case rec.Layout != want:
		return fmt.Errorf("%w: prefix %s: this process has layout %s, the ledger database records %s; a layout changes only by SwitchLayout",
			ErrLayoutMismatch, prefix, want, rec.Layout)
	}
	return nil
}

// isUndefinedTable reports whether err is PostgreSQL's undefined_table.
// (The generated LoadLayout of the other engines reports missing tables as
// no record.)
func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}

// layoutGuard is a Core's cached verification of its layout.
type layoutGuard struct {
	prefix string
	want   Layout
	store  LayoutStore
	cur    atomic.Pointer[layoutVerdict]
	mu     sync.Mutex // one re-read at a time
}

// layoutVerdict is one reading of the record: err is nil when it matched.
type layoutVerdict struct {
	at  int64 // monoNow() when the read started
	err error
}

var monoEpoch = time.Now()

// monoNow is the monotonic clock, in nanoseconds.
func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// bypassKey marks the context of a layout switch: the switching Core works
// under its new layout before the record says so.
type bypassKey struct{}

// newLayoutGuard checks the layout part of cfg: the key type against K, the
// key length, the layout store, and that the database is not a transaction.
func newLayoutGuard[K any](cfg Config[K], namespace string) (*layoutGuard, error) {
	if cfg.DB != nil {
		switch cfg.DB.(type) {
		case interface{ Rollback(context.Context) error }, interface{ Rollback() error }:
			return nil, argError("the ledger database is a transaction (%T): a Manager commits each change by itself and cannot undo Redis when the transaction rolls back; pass a pool (*pgxpool.Pool, *sql.DB)", cfg.DB)
		}
	}
	if cfg.Layouts == nil {
		return nil, argError("a layout store is required (generated code passes its ledger)")
	}
	var kt string
	switch any(*new(K)).(type) {
	case string:
		kt = "string"
	case int64:
		kt = "int64"
	case uuid.UUID:
		kt = "uuid"
	}
	switch {
	case cfg.KeyType == "" && kt == "":
		return nil, argError("key type is required for key type %T", *new(K))
	case cfg.KeyType == "":
		cfg.KeyType = kt
	case kt != "" && cfg.KeyType != kt:
		return nil, argError("key type %q does not match the Go key type %T", cfg.KeyType, *new(K))
	}
	maxLen := cfg.MaxKeyLen
	if sc, ok := any(cfg.Codec).(StringCodec); ok && maxLen == 0 {
		maxLen = sc.MaxLen
	}
	switch {
	case cfg.KeyType == "string" && (maxLen < 1 || maxLen > 1024):
		return nil, argError("max key length %d is out of range 1..1024", maxLen)
	case cfg.KeyType != "string" && maxLen != 0:
		return nil, argError("max key length applies to string keys only, not %s", cfg.KeyType)
	}
	mode := "sync"
	if cfg.Stream {
		mode = "stream"
	}
	return &layoutGuard{
		prefix: cfg.Prefix,
		store:  cfg.Layouts,
		want:   Layout{Namespace: namespace, Shards: cfg.Shards, Ledger: mode, KeyType: cfg.KeyType, MaxKeyLen: maxLen},
	}, nil
}

// check is the layout check of every call. With a verdict younger than
// half of LayoutRecheck it costs an atomic load and a clock read.
func (g *layoutGuard) check(ctx context.Context) error {
	if v := g.cur.Load(); v != nil && v.err == nil && monoNow()-v.at < int64(LayoutRecheck/2) {
		return nil
	}
	return g.recheck(ctx)
}

func (g *layoutGuard) recheck(ctx context.Context) error {
	if ctx.Value(bypassKey{}) != nil {
		return nil
	}
	if v := g.cur.Load(); v != nil && monoNow()-v.at < int64(LayoutRecheck/2) {
		return v.err // a recent refusal
	}
	if v := g.cur.Load(); v != nil && monoNow()-v.at < int64(LayoutRecheck) {
		// Still usable: one caller re-reads, the others go on with it.
		if !g.mu.TryLock() {
			return v.err
		}
		defer g.mu.Unlock()
		if nv := g.cur.Load(); nv != v {
			return nv.err
		}
		if err := g.read(ctx); err != nil {
			return v.err // a failed re-read: the verdict holds until it expires
		}
		return g.cur.Load().err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if v := g.cur.Load(); v != nil && monoNow()-v.at < int64(LayoutRecheck) {
		return v.err // another caller has just read it
	}
	if err := g.read(ctx); err != nil {
		return err
	}
	return g.cur.Load().err
}

// read reads the record and stores the verdict. It returns an error only
// when the record could not be read.
func (g *layoutGuard) read(ctx context.Context) error {
	at := monoNow()
	rec, found, err := g.store.LoadLayout(ctx)
	switch {
	case isUndefinedTable(err):
		found = false
	case err != nil:
		return fmt.Errorf("invgen: check the layout of %s: %w", g.prefix, err)
	}
	var r *LayoutRecord
	if found {
		r = &rec
	}
	g.cur.Store(&layoutVerdict{at: at, err: VerifyLayout(g.prefix, g.want, r)})
	return nil
}

// ping checks the record now; a database that records no layout yet is no
// error (CreateTables will record it).
func (g *layoutGuard) ping(ctx context.Context) error {
	at := monoNow()
	rec, found, err := g.store.LoadLayout(ctx)
	switch {
	case isUndefinedTable(err) || err == nil && !found:
		return nil
	case err != nil:
		return fmt.Errorf("invgen: check the layout of %s: %w", g.prefix, err)
	}
	v := &layoutVerdict{at: at, err: VerifyLayout(g.prefix, g.want, &rec)}
	g.cur.Store(v)
	return v.err
}

// record records the layout unless one is, and checks the record.
func (g *layoutGuard) record(ctx context.Context) error {
	at := monoNow()
	rec, err := g.store.RecordLayout(ctx, g.want)
	if err != nil {
		return fmt.Errorf("invgen: record the layout of %s: %w", g.prefix, err)
	}
	v := &layoutVerdict{at: at, err: VerifyLayout(g.prefix, g.want, &rec)}
	g.cur.Store(v)
	return v.err
}

// Layout returns this Core's layout: the one it refuses to work without.
func (c *Core[K]) Layout() Layout { return c.layout.want }

// LayoutSwitch describes a layout switch.
type LayoutSwitch struct {
	// From is the layout the record held; To is the new one.
	From, To Layout
	// Refreshed is the number of items rebuilt under the new layout.
	Refreshed int
}

// SwitchLayout makes this Core's layout the prefix's recorded layout: the
// one way to change a prefix's namespace, shards, ledger mode or maximum
// key length. Call it from one process built with the new layout. It
//
//  1. refuses while the recorded layout has changes that nothing is
//     settling: journal entries past their lease (run Reconcile under it)
//     or stream entries older than LayoutRecheck (run its flusher);
//  2. marks the recorded layout retired, so that every process of it
//     refuses every call within LayoutRecheck, and waits twice that (the
//     second half for calls that passed their check just before);
//  3. waits for the old layout's journal entries of calls still in flight
//     to clear (reconciling those whose lease passes meanwhile), and writes
//     its stream entries to the ledger itself;
//  4. rebuilds Redis under the new layout from the ledger (RefreshAll);
//  5. records the new layout; processes of it then work within half of
//     LayoutRecheck.
//
// No process of the prefix sells between steps 2 and 5. When step 3 does
// not finish in time (the lease plus LayoutRecheck), or step 4 fails, the
// old layout is given back and the error says why; calling again retries.
// A switch that died after step 2 leaves the record retired: calling
// SwitchLayout again (from any process of the new layout) finishes it.
// The key type and length cannot be switched: they are the ledger's column
// type, which a migration changes (invgen generate writes it, invgen
// migrate applies it).
func (c *Core[K]) SwitchLayout(ctx context.Context) (LayoutSwitch, error) {
	g := c.layout
	sw := LayoutSwitch{To: g.want}
	fail := func(format string, args ...any) (LayoutSwitch, error) {
		return sw, fmt.Errorf("invgen: switch the layout of %s: "+format, append([]any{c.prefix}, args...)...)
	}
	rec, found, err := g.store.LoadLayout(ctx)
	switch {
	case isUndefinedTable(err) || err == nil && !found:
		return fail("no layout is recorded: CreateTables records this one")
	case err != nil:
		return fail("%w", err)
	}
	sw.From = rec.Layout
	if !rec.Retired && rec.Layout == g.want {
		return sw, nil
	}
	if rec.KeyType != g.want.KeyType {
		return fail("%w: the key type (%s, recorded %s) is the ledger's column type and cannot be switched; a new key type is a new prefix",
			ErrInvalidArgument, g.want.KeyType, rec.KeyType)
	}
	if !rec.Retired {
		if err := c.stranded(ctx, rec.Layout); err != nil {
			return fail("layout %s: %w", rec.Layout, err)
		}
		ok, err := g.store.RetireLayout(ctx, rec.Version)
		switch {
		case err != nil:
			return fail("retire %s: %w", rec.Layout, err)
		case !ok:
			return fail("%w: the recorded layout changed meanwhile; call again", ErrBusy)
		}
		rec.Retired, rec.Version = true, rec.Version+1
	}
	giveBack := func(cause error) (LayoutSwitch, error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.ledgerTimeout)
		defer cancel()
		if _, err := g.store.ReplaceLayout(bctx, rec.Version, rec.Layout); err != nil {
			return fail("%w; giving the old layout back failed too, call SwitchLayout again: %w", cause, err)
		}
		return fail("%w; the old layout %s is in use again", cause, rec.Layout)
	}
	if err := sleepCtx(ctx, 2*LayoutRecheck); err != nil {
		return giveBack(err)
	}
	bctx := context.WithValue(ctx, bypassKey{}, true)
	if err := c.drainLayout(bctx, rec.Layout); err != nil {
		return giveBack(fmt.Errorf("layout %s: %w", rec.Layout, err))
	}
	n, err := c.RefreshAll(bctx)
	if err != nil {
		return giveBack(fmt.Errorf("rebuild under %s: %w", g.want, err))
	}
	sw.Refreshed = n
	at := monoNow()
	ok, err := g.store.ReplaceLayout(ctx, rec.Version, g.want)
	switch {
	case err != nil:
		return fail("record %s (the old layout stays retired; call again): %w", g.want, err)
	case !ok:
		return fail("%w: the recorded layout changed meanwhile; call again", ErrBusy)
	}
	g.cur.Store(&layoutVerdict{at: at})
	return sw, nil
}

// stranded reports changes of a layout that nothing settles on its own:
// journal entries past their lease and stream entries older than
// LayoutRecheck.
func (c *Core[K]) stranded(ctx context.Context, l Layout) error {
	ks := newKeyspace(l.Namespace, c.prefix, l.Shards)
	now, err := c.rdb.Time(ctx).Result()
	if err != nil {
		return err
	}
	pipe := c.rdb.Pipeline()
	expired := make([]*redis.IntCmd, len(ks.tags))
	firsts := make([]*redis.XMessageSliceCmd, len(ks.tags))
	for i := range ks.tags {
		expired[i] = pipe.ZCount(ctx, ks.journal(i), "-inf", strconv.FormatInt(now.UnixMilli(), 10))
		firsts[i] = pipe.XRangeN(ctx, ks.stream(i), "-", "+", 1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	var journal, stream int64
	for i := range ks.tags {
		journal += expired[i].Val()
		if m := firsts[i].Val(); len(m) > 0 && now.Sub(time.UnixMilli(idMillis(m[0].ID))) > LayoutRecheck {
			stream++
		}
	}
	switch {
	case journal > 0:
		return fmt.Errorf("%w: %d journal entries are past their lease; run Reconcile (or the janitor) under this layout first", ErrBusy, journal)
	case stream > 0:
		return fmt.Errorf("%w: %d shard streams hold entries older than %v; run the flusher under this layout first", ErrBusy, stream, LayoutRecheck)
	}
	return nil
}

// drainLayout waits for the journals of a retired layout to clear and
// writes its streams to the ledger, until both are empty or the lease plus
// LayoutRecheck has passed.
func (c *Core[K]) drainLayout(ctx context.Context, l Layout) error {
	ks := newKeyspace(l.Namespace, c.prefix, l.Shards)
	deadline := time.Now().Add(c.opt.lease + LayoutRecheck)
	f, err := NewFlusher(c.rdb, l.Namespace, c.prefix, l.Shards, c.ledger,
		FlusherConfig{Consumer: "switch-" + newToken()[:8], ClaimAfter: time.Millisecond})
	if err != nil {
		return err
	}
	// A Core of the old layout settles the entries of processes that died
	// in the meantime, once their lease has passed.
	old, err := NewCore(Config[K]{
		Namespace: l.Namespace, Prefix: c.prefix, Shards: l.Shards, Codec: c.codec, Ledger: c.ledger,
		Redis: c.rdb, Stream: l.Ledger == "stream", Layouts: c.layout.store, KeyType: l.KeyType, MaxKeyLen: l.MaxKeyLen,
	}, func(o *options) { *o = c.opt; o.namespace = l.Namespace })
	if err != nil {
		return err
	}
	lastReconcile := time.Now()
	for {
		pipe := c.rdb.Pipeline()
		journals := make([]*redis.IntCmd, len(ks.tags))
		streams := make([]*redis.IntCmd, len(ks.tags))
		for i := range ks.tags {
			journals[i] = pipe.ZCard(ctx, ks.journal(i))
			streams[i] = pipe.XLen(ctx, ks.stream(i))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		var pending, unflushed int64
		for i := range ks.tags {
			pending += journals[i].Val()
			unflushed += streams[i].Val()
		}
		if pending == 0 && unflushed == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d journal entries pending and %d stream entries unflushed after %v", ErrBusy, pending, unflushed, c.opt.lease+LayoutRecheck)
		}
		if unflushed > 0 {
			// Written twice (here and by a flusher of the old layout still
			// running) changes nothing.
			if _, err := f.Flush(ctx); err != nil {
				return fmt.Errorf("write its streams: %w", err)
			}
			continue
		}
		if time.Since(lastReconcile) > 500*time.Millisecond {
			if _, err := old.Reconcile(ctx); err != nil {
				return err
			}
			lastReconcile = time.Now()
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
