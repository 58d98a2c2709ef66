package runtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// MaxQuantity is the largest stock, capacity or change an item may have.
// Lua numbers are doubles that Redis prints with 14 significant digits, so
// every value the scripts handle stays below 10^14 and is exact.
const MaxQuantity int64 = 1e14 - 1

// Config is what a generated package knows about its prefix.
type Config[K any] struct {
	// Namespace is the first segment of every Redis key (spec: redis.namespace).
	Namespace string
	// Prefix is the business prefix, a validated identifier.
	Prefix string
	// Shards is the number of hash-tag shards of the prefix.
	Shards int
	// Buckets is the number of stock buckets Init splits an item into
	// (spec: buckets; 0 means 1): see InitBuckets.
	Buckets int
	// Codec checks item keys and gives their Redis form.
	Codec Codec[K]
	// Ledger is the prefix's SQL side.
	Ledger Ledger[K]
	// Redis is a Client, ClusterClient or Ring.
	Redis redis.UniversalClient
	// Stream selects the stream ledger mode (spec: ledger: stream); the
	// default is sync.
	Stream bool
	// KeyType is the spec's key type: "string", "int64" or "uuid" (by
	// default the one of K). MaxKeyLen is the spec's max_key_len of a
	// string key (by default the StringCodec's MaxLen).
	KeyType   string
	MaxKeyLen int
	// Layouts keeps the prefix's layout record in the ledger database.
	Layouts LayoutStore
	// DB is the database handle the ledger runs on, if the caller has it:
	// NewCore refuses a transaction.
	DB any
}

// Core is the inventory manager of one prefix, generic over its key type.
// It is safe for concurrent use. Generated packages wrap it in a Manager
// whose methods take the prefix's key type.
type Core[K any] struct {
	prefix string
	codec  Codec[K]
	ledger Ledger[K]
	rdb    redis.UniversalClient
	ks     keyspace
	opt    options
	stream bool
	clears clearQueue
	layout *layoutGuard
	// wg counts the calls in progress and the goroutines the Core started
	// (changes completing after their caller's context ended, the journal
	// clears, refreshes of lost items); Close waits for them. mu orders
	// Close against calls that start: a call counts itself under a read
	// lock, after checking closed.
	wg     sync.WaitGroup
	mu     sync.RWMutex
	closed bool
	// closing is closed by Close: it stops RunFlusher and RunJanitor.
	closing chan struct{}
	// Durations in milliseconds, as the scripts take them, also boxed.
	leaseMS, opTTLMS, fenceMS string
	leaseArg, opTTLArg        any
	// gate is the Core's own reserve script; gates are the openings in
	// progress, by server (gate.go).
	gate   *redis.Script
	gateMu sync.Mutex
	gates  map[string]*gateCall
	// vetted holds the clients of the servers that passed their check
	// (redischeck.go's vet).
	vetted sync.Map
	// soldOutArg is WithSoldOutCache in ms, boxed; marks are the items
	// sold out now, by Redis form (soldout.go).
	soldOutArg any
	marks      sync.Map
	// genArg is the generation length of the buckets of settled op
	// records (settled.lua): half the op TTL, in ms.
	genArg any
	// Stock buckets (buckets.go): initBuckets is Config.Buckets; split
	// holds the bucket count of the items known to be split, by Redis
	// form; rebalancing the items being rebalanced in the background.
	initBuckets int
	split       sync.Map
	rebalancing sync.Map
}

// Result is the outcome of a change.
type Result struct {
	// Available is the item's stock right after the change. For a replay
	// it is the stock recorded with the first outcome; when Redis had
	// forgotten the op key and the ledger answered, it is the stock when
	// Redis learnt the outcome again.
	Available int64
	// Delta is the change the operation made: −n for Decr, +n for Incr and
	// Release, the adjustment for Adjust.
	Delta int64
	// Replayed is true when the op key had been used before and this call
	// returned its first outcome without changing anything.
	Replayed bool
}

// NewCore checks cfg and the options and returns a Core. It makes no call
// to Redis or SQL: the layout is checked by Ping, CreateTables and the
// first call, which fails with ErrLayoutMismatch when the ledger database
// records another layout (or none: CreateTables records it).
func NewCore[K any](cfg Config[K], opts ...Option) (*Core[K], error) {
	o := defaults()
	o.namespace = cfg.Namespace
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	switch {
	case cfg.Codec == nil || cfg.Ledger == nil:
		return nil, argError("codec and ledger are required")
	case cfg.Redis == nil:
		return nil, argError("redis client is nil")
	case o.replicaAck > 0 && !waitable(cfg.Redis):
		return nil, argError("WithReplicaAck needs a redis.Client or a redis.ClusterClient, not a %T", cfg.Redis)
	case cfg.Shards < 1 || cfg.Shards > 1024:
		return nil, argError("shards %d is out of range 1..1024", cfg.Shards)
	case cfg.Buckets < 0 || cfg.Buckets > min(cfg.Shards, MaxBuckets):
		return nil, argError("buckets %d is out of range 1..%d (at most the shards, %d)", cfg.Buckets, MaxBuckets, cfg.Shards)
	}
	if err := checkName("prefix", cfg.Prefix); err != nil {
		return nil, err
	}
	guard, err := newLayoutGuard(cfg, o.namespace)
	if err != nil {
		return nil, err
	}
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	c := &Core[K]{
		closing: make(chan struct{}),
		layout:  guard,
		prefix:  cfg.Prefix,
		codec:   cfg.Codec,
		ledger:  cfg.Ledger,
		rdb:     cfg.Redis,
		ks:      newKeyspace(o.namespace, cfg.Prefix, cfg.Shards),
		opt:     o,
		stream:  cfg.Stream,
		leaseMS: ms(o.lease),
		opTTLMS: ms(o.opTTL),
		fenceMS: ms(o.fenceTTL),
		gate:    newGate(o.namespace, cfg.Prefix),
		gates:   map[string]*gateCall{},

		initBuckets: max(cfg.Buckets, 1),
	}
	c.leaseArg, c.opTTLArg = c.leaseMS, c.opTTLMS
	c.soldOutArg = strconv.FormatInt(o.soldOut.Milliseconds(), 10)
	c.genArg = strconv.FormatInt(max((o.opTTL.Milliseconds()+1)/2, 1), 10)
	return c, nil
}

// Ping checks that Redis answers and that the ledger's database answers,
// and that it records this Core's layout or none yet (ErrLayoutMismatch).
func (c *Core[K]) Ping(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("invgen: redis: %w", err)
	}
	if _, err := c.ledger.TablesInitialized(ctx); err != nil {
		return fmt.Errorf("invgen: ledger: %w", err)
	}
	return c.layout.ping(ctx)
}

// CreateTables creates the prefix's ledger tables if they are missing,
// records this Core's layout unless one is recorded, and checks it
// (ErrLayoutMismatch).
func (c *Core[K]) CreateTables(ctx context.Context) error {
	if err := c.ledger.CreateTables(ctx); err != nil {
		return fmt.Errorf("invgen: create tables of %s: %w", c.prefix, err)
	}
	return c.layout.record(ctx)
}

// TablesInitialized reports whether the prefix's ledger tables exist.
func (c *Core[K]) TablesInitialized(ctx context.Context) (bool, error) {
	ok, err := c.ledger.TablesInitialized(ctx)
	if err != nil {
		return false, fmt.Errorf("invgen: check tables of %s: %w", c.prefix, err)
	}
	return ok, nil
}

// Init creates an item with qty units (0 <= qty <= MaxQuantity), its
// stock split into Config.Buckets buckets. The ledger row is written first;
// the item is then loaded into Redis. An item that exists already gets
// ErrAlreadyExists and is left as it is.
func (c *Core[K]) Init(ctx context.Context, id K, qty int64) error {
	return c.InitBuckets(ctx, id, qty, c.initBuckets)
}

// InitBuckets is Init with the item's stock split into buckets buckets
// (1..MaxBuckets, at most the prefix's shards), whatever Config.Buckets
// says: for one hot item, so that its purchases spread over as many Redis
// Cluster masters (see buckets.go). The count is the item's for good.
func (c *Core[K]) InitBuckets(ctx context.Context, id K, qty int64, buckets int) (err error) {
	ctx, done := c.observe(ctx, OpInit)
	defer func() { done(false, err) }()
	if err := c.enter(ctx); err != nil {
		return err
	}
	defer c.wg.Done()
	item, err := c.codec.Encode(id)
	if err != nil {
		return err
	}
	if qty < 0 || qty > MaxQuantity {
		return argError("quantity %d is out of range 0..%d", qty, MaxQuantity)
	}
	if buckets < 1 || buckets > min(len(c.ks.tags), MaxBuckets) {
		return argError("buckets %d is out of range 1..%d (at most the shards, %d)", buckets, MaxBuckets, len(c.ks.tags))
	}
	// The init row's attempt holds the bucket count (0: one bucket).
	e := Entry[K]{Item: id, Kind: KindInit, Delta: qty, OpKey: string(KindInit)}
	if buckets > 1 {
		e.Attempt = int64(buckets)
	}
	err = c.ledger.Insert(ctx, e)
	switch {
	case isUniqueViolation(err):
		return fmt.Errorf("%w: item %v of %s", ErrAlreadyExists, id, c.prefix)
	case err != nil:
		return fmt.Errorf("invgen: init %v: %w", id, busyIfConflict(err))
	}
	// The ledger is the truth from here on; an item Redis lacks is loaded on
	// first use, so a failure below leaves nothing inconsistent. The gate
	// of the item's server is opened first, so that the item is loaded in
	// the current epoch and keeps what only a fresh load gives it.
	c.learnBuckets(item, buckets)
	for _, k := range c.bucketKeys(item, buckets) {
		if _, err := c.evalGate(ctx, k, k.getKeys(), argGet); err != nil {
			return fmt.Errorf("invgen: init %v: recorded, not yet loaded into Redis: %w", id, err)
		}
	}
	if err := c.refresh(ctx, id, item, false, true); err != nil {
		return fmt.Errorf("invgen: init %v: recorded, not yet loaded into Redis: %w", id, err)
	}
	return nil
}

// Get returns the units of an item available now. An item Redis lacks is
// loaded from the ledger first; one the ledger lacks too is ErrNotFound.
func (c *Core[K]) Get(ctx context.Context, id K) (_ int64, err error) {
	ctx, done := c.observe(ctx, OpGet)
	defer func() { done(false, err) }()
	if err := c.enter(ctx); err != nil {
		return 0, err
	}
	defer c.wg.Done()
	item, err := c.codec.Encode(id)
	if err != nil {
		return 0, err
	}
	k := c.ks.forItem(item)
	keys := k.getKeys()
	for loaded := false; ; loaded = true {
		v, err := c.evalGate(ctx, k, keys, argGet)
		var r reserveReply
		if err == nil {
			r, err = parseReserve(v)
		}
		switch {
		case isWrongType(err):
			r.code, err = codeCorrupt, nil
		case err != nil:
			return 0, fmt.Errorf("invgen: get %v: %w", id, err)
		}
		switch {
		case r.code == codeReserved && (r.buckets > 1 || c.bucketsOf(item) > 1):
			c.learnBuckets(item, r.buckets)
			return c.getSplit(ctx, id, item)
		case r.code == codeReserved:
			return r.available, nil
		case loaded && r.code == codeCorrupt:
			return 0, fmt.Errorf("%w: item %v of %s", ErrCorrupt, id, c.prefix)
		case loaded:
			return 0, fmt.Errorf("%w: item %v of %s vanished from Redis during its load", ErrBusy, id, c.prefix)
		case r.code == codeCorrupt:
			// Not what invgen writes: rebuild the item from the ledger.
			err = c.refresh(ctx, id, item, false, false)
		default:
			err = c.heal(ctx, id, item)
		}
		if err != nil {
			return 0, err
		}
	}
}

// Decr takes n units of an item for the operation opKey (a purchase). It
// returns ErrInsufficientStock, and takes nothing, when fewer than n are
// available. It succeeds only once the usage row is committed in the
// ledger. Repeating it with the same op key returns the first outcome.
func (c *Core[K]) Decr(ctx context.Context, id K, n int64, opKey string) (Result, error) {
	return c.change(ctx, KindDecr, id, strconv.FormatInt(n, 10), opKey, HoldIntent{}, checkUnits(n))
}

// Incr returns n units to an item for the operation opKey. It never returns
// more units than were sold: an Incr that would take the stock over the
// item's capacity gets ErrOverLimit. Repeating it with the same op key
// returns the first outcome. Its units go on sale once its ledger row is
// written: before it returns in the sync mode, when the flusher writes it
// in the stream mode (Release too).
func (c *Core[K]) Incr(ctx context.Context, id K, n int64, opKey string) (Result, error) {
	return c.change(ctx, KindIncr, id, strconv.FormatInt(n, 10), opKey, HoldIntent{}, checkUnits(n))
}

// Release gives back exactly the units that the Decr with the same op key
// took, once. A release of an op key that took nothing (unknown, rejected
// or voided) gets ErrNotFound. Repeating it returns the first outcome.
func (c *Core[K]) Release(ctx context.Context, id K, opKey string) (Result, error) {
	return c.change(ctx, KindRelease, id, "", opKey, HoldIntent{}, nil)
}

// Adjust changes an item's capacity and stock by delta (an operator's
// correction or a restock), recorded in the modification table under
// opKey. A negative delta larger than the available stock gets
// ErrInsufficientStock. Repeating it with the same op key returns the first
// outcome.
func (c *Core[K]) Adjust(ctx context.Context, id K, delta int64, opKey string) (Result, error) {
	var bad error
	if delta == 0 || delta > MaxQuantity || delta < -MaxQuantity {
		bad = argError("delta %d is zero or out of range ±%d", delta, MaxQuantity)
	}
	return c.change(ctx, KindAdjust, id, strconv.FormatInt(delta, 10), opKey, HoldIntent{}, bad)
}

func checkUnits(n int64) error {
	if n <= 0 || n > MaxQuantity {
		return argError("units %d are out of range 1..%d", n, MaxQuantity)
	}
	return nil
}

// reserveReply is the reply of reserve.lua.
type reserveReply struct {
	code      int64
	available int64
	delta     int64
	state     string
	// flag: for a pending duplicate, its lease has passed; for a refusal,
	// Redis remembers every op key of the item, so the refusal is final.
	flag    bool
	attempt int64 // the reservation's attempt id (duplicates: the first one's)
	// soldOut: a refused purchase may be refused without asking Redis for
	// this long (reserve.lua's sold-out period), in ms.
	soldOut int64
	// buckets is the item's number of stock buckets, once the script read
	// its hash (0 before; 1 for an item that is not split).
	buckets int
	// unacked: WithReplicaAck is set and no replica confirmed the change.
	unacked bool
}

// isCommandError reports whether err is Redis's answer to one command
// (an error reply, or nil) rather than a failure to talk to Redis: in a
// pipeline it concerns that command alone.
func isCommandError(err error) bool {
	var re redis.Error
	return errors.Is(err, redis.Nil) || errors.As(err, &re)
}

// isWrongType reports whether Redis refused a command because a key holds
// another type than the command works on (a key invgen did not write).
func isWrongType(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "WRONGTYPE")
}

// reserve runs reserve.lua. over is 0 for a change in the item's own
// shard or a purchase's own bucket; for a purchase in another bucket, the
// deadline (ms) of the lease of its pointer, which the bucket tried must
// see the try before, or -1 in a bucket its pointer names (buckets.go).
func (c *Core[K]) reserve(ctx context.Context, k itemKeys, keys []string, kind Kind, arg, opKey, mode, field, decrField string, attempt int64, over int64) (reserveReply, error) {
	args := []any{boxedKind(kind), arg, c.leaseArg, c.opTTLArg, k.id, opKey, maxQuantityArg, attempt, boxedMode(mode), field, c.genArg}
	switch {
	case decrField != "":
		args = append(args, decrField)
	case kind == KindDecr:
		h1, h2 := filterPositions(opKey)
		switch {
		case over > 0:
			args = append(args, h1, h2, c.soldOutArg, overArg, over)
		case over < 0:
			args = append(args, h1, h2, c.soldOutArg, overArg)
		default:
			args = append(args, h1, h2, c.soldOutArg, ownArg)
		}
	}
	v, acked, err := c.runGate(ctx, k, c.opt.replicaAck > 0, keys, args)
	if err != nil {
		return reserveReply{}, err
	}
	r, err := parseReserve(v)
	r.unacked = !acked
	return r, err
}

// evalGate runs the Core's reserve script for item k, opening the gate of
// its server when the server lacks the script (gate.go), and riding out a
// failover of a cluster's master for up to WithBusyWait (failover.go). The
// script is idempotent by op key and attempt, so a try whose reply was lost
// may be repeated.
func (c *Core[K]) evalGate(ctx context.Context, k itemKeys, keys []string, args ...any) (string, error) {
	v, _, err := c.runGate(ctx, k, false, keys, args)
	return v, err
}

// runGate is evalGate, with WAIT for a replica pipelined when ack is set
// (tryAcked); acked is true without it.
func (c *Core[K]) runGate(ctx context.Context, k itemKeys, ack bool, keys []string, args []any) (v string, acked bool, err error) {
	if err := c.vet(ctx, k); err != nil {
		return "", false, err
	}
	var wait backoff
	for gated := 0; ; {
		if ack {
			v, acked, err = c.tryAcked(ctx, k, keys, args)
		} else {
			v, err = c.gate.EvalSha(ctx, c.rdb, keys, args...).Text()
			acked = true
		}
		switch {
		case isNoScript(err) && gated < 3:
			gated++
			if err := c.openChecked(ctx, k); err != nil {
				return "", false, err
			}
			continue
		case reloadOnFailure(c.rdb, err) && wait.sleep(ctx, c.opt.busyWait) == nil:
			continue
		}
		return v, acked, err
	}
}

// parseReserve parses reserve.lua's reply, "code:available:delta:state:
// flag:attempt:sold out:buckets", without allocating.
func parseReserve(v string) (reserveReply, error) {
	var (
		r      reserveReply
		fields [8]string
		rest   = v
	)
	for i := range fields {
		var ok bool
		fields[i], rest, ok = strings.Cut(rest, ":")
		if !ok && i < len(fields)-1 {
			return r, fmt.Errorf("reserve.lua: unexpected reply %q", v)
		}
	}
	var errs [6]error
	var nb int64
	r.code, errs[0] = strconv.ParseInt(fields[0], 10, 64)
	r.available, errs[1] = strconv.ParseInt(fields[1], 10, 64)
	r.delta, errs[2] = strconv.ParseInt(fields[2], 10, 64)
	r.state = fields[3]
	r.flag = fields[4] == "1"
	r.attempt, errs[3] = strconv.ParseInt(fields[5], 10, 64)
	r.soldOut, errs[4] = strconv.ParseInt(fields[6], 10, 64)
	nb, errs[5] = strconv.ParseInt(fields[7], 10, 64)
	r.buckets = int(nb)
	for _, err := range errs {
		if err != nil {
			return r, fmt.Errorf("reserve.lua: unexpected reply %q", v)
		}
	}
	return r, nil
}

// Arguments boxed once, so a call does not allocate to pass them.
var (
	maxQuantityArg any = strconv.FormatInt(MaxQuantity, 10)
	kindArgs           = map[Kind]any{KindInit: "init", KindAdjust: "adjust", KindDecr: "decr", KindIncr: "incr", KindRelease: "release"}
	argGet         any = "get"
	modeSync       any = "sync"
	modeStream     any = "stream"
	adjustFlag         = map[bool]any{true: "1", false: "0"}
	overArg        any = "over"
	ownArg         any = "own"
)

func boxedKind(k Kind) any { return kindArgs[k] }

func boxedMode(m string) any {
	if m == "stream" {
		return modeStream
	}
	return modeSync
}

// rejection maps a reserve.lua refusal to its error.
func rejection(code, available int64, id any, opKey string) error {
	switch code {
	case codeShort:
		return fmt.Errorf("%w: item %v has %d available", ErrInsufficientStock, id, available)
	case codeLimit:
		return fmt.Errorf("%w: item %v, op key %q", ErrOverLimit, id, opKey)
	case codeNothing:
		return fmt.Errorf("%w: op key %q took nothing from item %v", ErrNotFound, opKey, id)
	}
	return fmt.Errorf("invgen: unexpected reply code %d from reserve.lua", code)
}

// replay returns the first outcome of a repeated op key.
func (c *Core[K]) replay(id K, r reserveReply) (Result, error) {
	switch r.state {
	case opCommitted:
		return Result{Available: r.available, Delta: r.delta, Replayed: true}, nil
	case opVoid:
		return Result{}, fmt.Errorf("%w: item %v", ErrVoided, id)
	}
	return Result{}, fmt.Errorf("invgen: op record of %v in unknown state %q", id, r.state)
}

// recall asks the ledger whether an op key that Redis has no record of was
// used before. If so it writes the record back from the ledger (so that the
// caller's next round replays it) and reports true.
func (c *Core[K]) recall(ctx context.Context, id K, kind Kind, opKey string, k itemKeys, opRec string) (bool, error) {
	row, found, err := c.ledger.Lookup(ctx, id, kind, opKey)
	if err != nil || !found {
		return false, err
	}
	state := "committed"
	if row.State != StateCommitted {
		state = "void"
	}
	err = c.remember(ctx, k, opRec, state, row.Delta)
	return err == nil, err
}

// committedPending completes a pending change whose ledger row is committed
// (its process died before the journal was cleared) and replays it. done is
// false while the ledger has no row of that attempt.
func (c *Core[K]) committedPending(ctx context.Context, e Entry[K], k itemKeys, opRec string, available int64) (Result, bool, error) {
	row, found, err := c.ledger.Lookup(ctx, e.Item, e.Kind, e.OpKey)
	if err != nil || !found || row.State != StateCommitted || row.Attempt != e.Attempt {
		return Result{}, false, nil
	}
	if err := c.commit(ctx, e.Item, k, opRec, e.Kind, e.Attempt); err != nil {
		return Result{}, true, fmt.Errorf("invgen: %s %v: %w", e.Kind, e.Item, err)
	}
	return Result{Available: available, Delta: e.Delta, Replayed: true}, true, nil
}

// record writes the ledger row of a reserved change and settles its
// journal entry. owner is false when a retry completes the change of an
// attempt whose lease has passed: only the owner may undo a reservation
// outright, because only it knows that no one else is writing its row.
//
// A connection is taken from the pool under the caller's context: if that
// fails, nothing was sent, and the owner gives the units back at once (the
// op key stays free). Once it has a connection the change is carried to its
// end under WithLedgerTimeout, whatever the caller's context does: a caller
// whose context ends first gets ErrInDoubt, and a retry of the op key gets
// the outcome. So a client deadline never voids an order.
func (c *Core[K]) record(ctx context.Context, e Entry[K], k itemKeys, opRec string, available int64, owner bool) (Result, error) {
	conn, release, err := c.ledger.Acquire(ctx)
	if err != nil {
		if !owner {
			return Result{}, fmt.Errorf("invgen: %s %v: completing the earlier attempt failed, retry later: %w", e.Kind, e.Item, err)
		}
		return c.forget(ctx, e, k, opRec, available, err)
	}
	// finish gives the connection back before it settles through the
	// pool: a pool of one connection (SQLite) would wait for itself.
	// It is called from one goroutine only: a flag is enough.
	release = releaseOnce(release)
	if ctx.Done() == nil {
		defer release()
		return c.finish(ctx, conn, release, e, k, opRec, available, owner)
	}
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	c.wg.Add(1) // within a counted call: see enter
	go func() {
		defer c.wg.Done()
		defer release()
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.ledgerTimeout)
		defer cancel()
		res, err := c.finish(dctx, conn, release, e, k, opRec, available, owner)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		return o.res, o.err
	case <-ctx.Done():
		return Result{}, fmt.Errorf("%w: %s %v: %w; the change completes in the background: retry with op key %q for its outcome",
			ErrInDoubt, e.Kind, e.Item, context.Cause(ctx), e.OpKey)
	}
}

// releaseOnce returns release, made safe to call more than once from one
// goroutine.
func releaseOnce(release func()) func() {
	done := false
	return func() {
		if !done {
			done = true
			release()
		}
	}
}

// forget undoes the reservation of a change whose ledger row was never
// sent (cause says why) and returns the caller's error.
func (c *Core[K]) forget(ctx context.Context, e Entry[K], k itemKeys, opRec string, available int64, cause error) (Result, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.ledgerTimeout)
	defer cancel()
	prev, err := c.abort(sctx, k, opRec, "forget", e.Kind, 0, e.Attempt)
	switch {
	case err != nil:
		return Result{}, fmt.Errorf("%w: %s %v: ledger: %w; release: %w", ErrInDoubt, e.Kind, e.Item, cause, err)
	case prev == opCommitted:
		// The lease passed meanwhile and a retry completed the change.
		return Result{Available: available, Delta: e.Delta, Replayed: true}, nil
	case prev == opVoid:
		return Result{}, fmt.Errorf("%w: %s %v: ledger write failed: %w", ErrVoided, e.Kind, e.Item, cause)
	case prev != "x":
		return Result{}, fmt.Errorf("invgen: %s %v: ledger write failed, nothing taken: %w", e.Kind, e.Item, busyIfConflict(cause))
	}
	// The lease passed while the insert failed: settle it.
	o, err := c.settle(sctx, c.ledger, e, k, opRec)
	return c.settled(sctx, e, k, available, o, errors.Join(cause, err), false)
}

// finish inserts the row of a reserved change over conn and settles the
// change by the outcome. release gives conn back to the pool; it is called
// before anything goes through the pool itself.
func (c *Core[K]) finish(ctx context.Context, conn Ledger[K], release func(), e Entry[K], k itemKeys, opRec string, available int64, owner bool) (Result, error) {
	start := time.Now()
	err := c.insertRow(ctx, conn, e)
	// A row that lost to another transaction (InnoDB's deadlocks and
	// lock waits under a crowd, SQLite's busy file) was not written: send
	// it again, a few times, while the caller waits.
	for wait := 2 * time.Millisecond; isConflict(err) && wait <= 64*time.Millisecond; wait *= 2 {
		if sleepCtx(ctx, wait/2+time.Duration(mrand.Int64N(int64(wait)))) != nil {
			break
		}
		err = c.insertRow(ctx, conn, e)
	}
	c.observeLedger(e.Kind, start, err)
	if err == nil {
		// The row is committed: the change happened. A decrease is in
		// Redis already, so clearing its journal entry is batched (see
		// clearQueue); an increase is applied by that step, so it runs
		// before the call returns. Should it fail, the entry stays
		// journaled and Reconcile confirms it.
		if e.Delta < 0 {
			c.clears.add(c, clearReq{k: k, opRec: opRec, item: k.id, adjust: e.Kind == KindAdjust, attempt: e.Attempt})
		} else {
			c.commit(ctx, e.Item, k, opRec, e.Kind, e.Attempt)
		}
		return Result{Available: available, Delta: e.Delta}, nil
	}
	// Settling gets a time budget of its own: the insert may have used up
	// the one it had.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.ledgerTimeout)
	defer cancel()
	var o outcome
	var serr error
	switch {
	case isUniqueViolation(err):
		// The op key has a row already: a late insert of this very
		// reservation by a retry or the dead owner, a void row of
		// Reconcile, or an earlier use of the op key whose record Redis
		// has lost (expired or restarted).
		row, found, lerr := conn.Lookup(ctx, e.Item, e.Kind, e.OpKey)
		if lerr != nil {
			release()
			lerr = throughPool(ctx, func() (err error) {
				row, found, err = c.ledger.Lookup(ctx, e.Item, e.Kind, e.OpKey)
				return err
			})
		}
		if lerr == nil && !found {
			lerr = errors.New("the row that made the insert fail is gone")
		}
		if lerr != nil {
			return Result{}, fmt.Errorf("%w: %s %v: %w", ErrInDoubt, e.Kind, e.Item, errors.Join(err, lerr))
		}
		o, serr = c.resolve(ctx, e, row, k, opRec)
		// Another call wrote this very reservation's row first (a retry
		// that completed it, or its owner): that call executed the
		// change, this one repeats it.
		return c.settled(ctx, e, k, available, o, errors.Join(err, serr), true)
	case definitelyNotWritten(err) && !owner:
		return Result{}, fmt.Errorf("invgen: %s %v: completing the earlier attempt failed, retry later: %w", e.Kind, e.Item, busyIfConflict(err))
	case definitelyNotWritten(err):
		release() // forget may settle through the pool
		return c.forget(ctx, e, k, opRec, available, err)
	}
	// The insert may or may not have committed. Settle it now: a void row
	// either goes in (and the change is undone) or finds the committed row.
	o, serr = c.settle(ctx, conn, e, k, opRec)
	if serr != nil {
		release()
		o, serr = c.settleThroughPool(ctx, e, k, opRec)
	}
	return c.settled(ctx, e, k, available, o, errors.Join(err, serr), false)
}

// settleThroughPool settles a pending change over the pool (throughPool):
// a settle is idempotent (its void row goes in once, or finds the row that
// is there).
func (c *Core[K]) settleThroughPool(ctx context.Context, e Entry[K], k itemKeys, opRec string) (o outcome, err error) {
	err = throughPool(ctx, func() error {
		o, err = c.settle(ctx, c.ledger, e, k, opRec)
		return err
	})
	return o, err
}

// throughPool runs an idempotent ledger step over the pool, a few times if
// need be (for about a quarter of a second): the network fault that cut
// the answer of the statement before may have taken the pool's idle
// connections with it, and new connections may take a moment to pass.
func throughPool(ctx context.Context, step func() error) error {
	for wait := time.Millisecond; ; wait *= 2 {
		err := step()
		if err == nil || permanent(err) || wait > 128*time.Millisecond || sleepCtx(ctx, wait) != nil {
			return err
		}
	}
}

// settled turns how the ledger decided a change into the caller's answer.
// cause is the error that made settling necessary, joined with any error of
// settling itself; ourRowIsReplay is true when the row of this very attempt
// was written by an earlier call.
func (c *Core[K]) settled(ctx context.Context, e Entry[K], k itemKeys, available int64, o outcome, cause error, ourRowIsReplay bool) (Result, error) {
	if !o.ok {
		return Result{}, fmt.Errorf("%w: %s %v: %w", ErrInDoubt, e.Kind, e.Item, cause)
	}
	switch o.kind {
	case ours:
		return Result{Available: available, Delta: e.Delta, Replayed: ourRowIsReplay}, nil
	case earlier:
		cur, _ := c.rdb.HGet(ctx, k.item, "a").Int64()
		return Result{Available: cur, Delta: o.row.Delta, Replayed: true}, nil
	}
	return Result{}, fmt.Errorf("%w: %s %v: %w", ErrVoided, e.Kind, e.Item, cause)
}

// outcome is how the ledger decided a pending change.
type outcome struct {
	kind int // ours, earlier or voided
	row  Row
	ok   bool // decided, and Redis made to agree
}

const (
	ours    = iota // the committed row is this reservation's: the change happened
	earlier        // the committed row is of an earlier use of the op key: this reservation was a duplicate
	voided         // a void row: the change did not happen
)

// settle decides a pending change by the ledger: it writes a void row for
// it over l unless a row exists, then commits or undoes the reservation to
// match.
func (c *Core[K]) settle(ctx context.Context, l Ledger[K], e Entry[K], k itemKeys, opRec string) (outcome, error) {
	row, err := c.voidRow(ctx, l, e)
	if err != nil {
		return outcome{}, err
	}
	return c.resolve(ctx, e, row, k, opRec)
}

// resolve makes Redis agree with the ledger row of a pending change.
func (c *Core[K]) resolve(ctx context.Context, e Entry[K], row Row, k itemKeys, opRec string) (outcome, error) {
	var err error
	o := outcome{kind: voided, row: row}
	switch {
	case row.State == StateCommitted && row.Attempt == e.Attempt:
		o.kind = ours
		err = c.commit(ctx, e.Item, k, opRec, e.Kind, e.Attempt)
	case row.State == StateCommitted:
		// Give back what this reservation took; the first use stands, and
		// the op record now says what the ledger holds.
		o.kind = earlier
		_, err = c.abort(ctx, k, opRec, "committed", e.Kind, row.Delta, e.Attempt)
	default:
		_, err = c.abort(ctx, k, opRec, "void", e.Kind, 0, e.Attempt)
	}
	o.ok = err == nil
	return o, err
}

// commit runs commit.lua for a change whose ledger row is committed. When
// the op record is gone, Redis lost its data between the change's two steps
// (a restart or failover) and may have been rebuilt without the change: the
// item is refreshed from the ledger, which now holds it.
func (c *Core[K]) commit(ctx context.Context, id K, k itemKeys, opRec string, kind Kind, attempt int64) error {
	prev, err := commitScript.Run(ctx, c.rdb, []string{opRec, k.journal, k.item, k.buckets[0], k.buckets[1], k.buckets[2]},
		k.field(opRec), c.genArg, adjustFlag[kind == KindAdjust], attempt).Text()
	if err != nil {
		return err
	}
	if prev == "" {
		return c.refreshID(ctx, id)
	}
	return nil
}

// abort runs abort.lua in mode and returns the state the op record had
// ("x": a forget refused because the lease has passed). ledgerDelta is the
// delta of the ledger's row in the committed mode.
func (c *Core[K]) abort(ctx context.Context, k itemKeys, opRec, mode string, kind Kind, ledgerDelta, attempt int64) (string, error) {
	return abortScript.Run(ctx, c.rdb, []string{k.item, opRec, k.journal, k.buckets[0], k.buckets[1], k.buckets[2]},
		k.field(opRec), c.genArg, adjustFlag[kind == KindAdjust], mode, ledgerDelta, attempt).Text()
}

// remember settles the op record opRec from the ledger's state
// ("committed" with delta, or "void"), unless a record exists.
func (c *Core[K]) remember(ctx context.Context, k itemKeys, opRec, state string, delta int64) error {
	return rememberScript.Run(ctx, c.rdb, []string{k.item, opRec, k.buckets[0], k.buckets[1], k.buckets[2]},
		k.field(opRec), c.genArg, state, delta).Err()
}

// releaseFromLedger answers a release whose purchase Redis has forgotten.
// It returns the units to release, or a final result when there are none.
func (c *Core[K]) releaseFromLedger(ctx context.Context, id K, k itemKeys, opKey string) (Result, int64, error) {
	row, found, err := c.ledger.Lookup(ctx, id, KindRelease, opKey)
	if err != nil {
		return Result{}, 0, fmt.Errorf("invgen: release %v: %w", id, err)
	}
	if found {
		if row.State != StateCommitted {
			return Result{}, 0, fmt.Errorf("%w: release %v", ErrVoided, id)
		}
		cur, err := c.rdb.HGet(ctx, k.item, "a").Int64()
		if err != nil {
			return Result{}, 0, fmt.Errorf("invgen: release %v: %w", id, err)
		}
		return Result{Available: cur, Delta: row.Delta, Replayed: true}, 0, nil
	}
	row, found, err = c.ledger.Lookup(ctx, id, KindDecr, opKey)
	switch {
	case err != nil:
		return Result{}, 0, fmt.Errorf("invgen: release %v: %w", id, err)
	case !found || row.State != StateCommitted || row.Delta >= 0:
		return Result{}, 0, fmt.Errorf("%w: op key %q took nothing from item %v", ErrNotFound, opKey, id)
	}
	return Result{}, -row.Delta, nil
}

// Close stops the manager: later calls get ErrClosed, and RunFlusher and
// RunJanitor return (a flusher drains first). It waits, until ctx is done,
// for the calls in progress and the work the manager does in the
// background: the batched journal clears of committed changes (a process
// that exits right after a successful Decr would otherwise leave its entry
// pending until Reconcile) and the changes that complete after their
// caller's context ended.
func (c *Core[K]) Close(ctx context.Context) error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.closing)
	}
	c.mu.Unlock()
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("invgen: close %s: %w", c.prefix, ctx.Err())
	}
}

// untilClosed returns ctx, ended also when the Core is closed, for the
// loops that run until their context ends (RunFlusher, RunJanitor).
func (c *Core[K]) untilClosed(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	c.wg.Add(1) // within a counted call: see enter
	go func() {
		defer c.wg.Done()
		select {
		case <-c.closing:
			cancel(ErrClosed)
		case <-stop:
		}
	}()
	return ctx, func() { close(stop); cancel(nil) }
}

func (c *Core[K]) isClosed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.closed
}

// enter is the gate of every call: it refuses once the Core is closed
// (ErrClosed) or while the ledger database records another layout
// (ErrLayoutMismatch), and counts the call in progress so that Close waits
// for it. A call that entered calls c.wg.Done when it returns; goroutines
// it starts count themselves with c.wg.Add, which is safe while the call's
// own count holds the group above zero.
func (c *Core[K]) enter(ctx context.Context) error {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return ErrClosed
	}
	c.wg.Add(1)
	c.mu.RUnlock()
	if err := c.layout.check(ctx); err != nil {
		c.wg.Done()
		return err
	}
	return nil
}

// backoff sleeps between retries of a busy operation: 1ms doubling to 50ms,
// for at most the given total.
type backoff struct {
	start time.Time
	step  time.Duration
}

// sleep waits for the next try; it returns an error when the total wait
// would be exceeded or ctx is done.
func (b *backoff) sleep(ctx context.Context, total time.Duration) error {
	now := time.Now()
	if b.start.IsZero() {
		b.start, b.step = now, time.Millisecond
	}
	if now.Add(b.step).Sub(b.start) > total {
		return errors.New("wait exceeded")
	}
	t := time.NewTimer(b.step)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	b.step = min(2*b.step, 50*time.Millisecond)
	return nil
}

func newToken() string { return rand.Text() }
