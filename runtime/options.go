package runtime

import (
	"fmt"
	"log/slog"
	"time"
)

// Option configures a Core. Generated packages re-export the constructors.
type Option func(*options)

type options struct {
	namespace     string
	lease         time.Duration
	opTTL         time.Duration
	fenceTTL      time.Duration
	busyWait      time.Duration
	ledgerTimeout time.Duration
	replicaAck    time.Duration
	soldOut       time.Duration
	logger        *slog.Logger
	observer      Observer
	// evictionAllowed is WithEvictionAllowed; checks are the Core's own
	// checks of its Redis servers (redischeck.go), made by defaults.
	evictionAllowed bool
	checks          *redisChecks
}

// maxFenceTTL bounds WithFenceTTL: a fence reaching further than this was
// not set by a refresh, and the next refresh takes it over.
const maxFenceTTL = 10 * time.Minute

// defaults is the one place where option defaults live.
func defaults() options {
	return options{
		lease:         10 * time.Second,
		opTTL:         24 * time.Hour,
		fenceTTL:      5 * time.Second,
		busyWait:      2 * time.Second,
		ledgerTimeout: 5 * time.Second,
		logger:        slog.New(slog.DiscardHandler),
		checks:        &redisChecks{m: map[string]*redisCheck{}},
	}
}

// WithNamespace replaces the spec's Redis namespace, the first segment of
// every key. Tests use it to give each run keys of its own.
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithLease sets how long a change may stay between its Redis step and its
// ledger commit before Reconcile may void it (default 10s). It must be well
// above the slowest SQL insert you expect.
func WithLease(d time.Duration) Option { return func(o *options) { o.lease = d } }

// WithOpTTL sets how long Redis remembers a completed op key (default 24h).
// After that the ledger still answers for committed and voided op keys, so
// idempotency holds for as long as the ledger keeps its rows.
func WithOpTTL(d time.Duration) Option { return func(o *options) { o.opTTL = d } }

// WithFenceTTL sets how long a refresh may hold an item's fence (default
// 5s, at most 10 minutes). A refresher that dies holds it at most this long.
func WithFenceTTL(d time.Duration) Option { return func(o *options) { o.fenceTTL = d } }

// WithBusyWait sets how long an operation waits for a fenced item, or for
// an earlier operation with the same op key, before it returns ErrBusy
// (default 2s).
func WithBusyWait(d time.Duration) Option { return func(o *options) { o.busyWait = d } }

// WithLogger sets where the manager reports what goes wrong in the
// background, where no caller hears it: journal clears that failed, an
// item that could not be reloaded after Redis lost data (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithLedgerTimeout bounds the SQL calls that settle a change whose ledger
// write failed in an unknown way (default 5s). They run even when the
// caller's context is done, so a cancelled request does not strand units.
func WithLedgerTimeout(d time.Duration) Option { return func(o *options) { o.ledgerTimeout = d } }

// WithReplicaAck makes every change wait, with Redis's WAIT, until a
// replica of its server has it too, for at most d; without it (the
// default) a change is acknowledged once the master has it.
//
// Replication is asynchronous: a master that dies can take its last writes
// with it, and the replica promoted in its place offers again the units
// they sold. invgen refreshes such a server's items from the ledger before
// they sell again (see
// docs/cluster.md#acknowledged-writes-lost-at-a-failover), which covers
// every change whose ledger row is written by then. With WithReplicaAck the
// rest is covered too: a stream-ledger purchase acknowledged to its caller
// survives the failover, and a sync-ledger reservation whose ledger write
// is still in flight is found on the promoted replica. A change no replica
// confirms in time is undone (sync ledger: ErrBusy) or reported in doubt
// (stream ledger: ErrInDoubt; its op key tells the outcome later). It costs
// the time a replica takes to confirm, not a round trip: WAIT is pipelined
// with the change. It needs a Client (or a Sentinel FailoverClient) or a
// ClusterClient.
func WithReplicaAck(d time.Duration) Option { return func(o *options) { o.replicaAck = d } }

// WithSoldOutCache turns on the sold-out fast path: once an item is sold
// out, purchases of it are refused in the process, without a call to
// Redis, for up to d at a time (default 0: off). Each process asks Redis
// again about once per d while the item stays sold out.
//
// The answer is exact, not a guess: the first refusal at zero starts a
// sold-out period of d in Redis during which no purchase of the item
// succeeds, so units that come back (Incr, Release, Adjust, Refresh, an
// undone purchase) become sellable when it ends, at most d later. A repeat
// of a purchase that succeeded is still sent to Redis and replays: each
// item keeps a Bloom filter of the op keys of its purchases (about two
// bytes per unit of capacity, at most 128 KiB), made by Init when this
// option is on: items created without it, or loaded again after Redis lost
// them, have no fast path. A few hundred milliseconds suit a flash sale.
func WithSoldOutCache(d time.Duration) Option { return func(o *options) { o.soldOut = d } }

// WithEvictionAllowed lets the manager use a Redis server whose
// maxmemory-policy may evict keys (anything but noeviction), which it
// otherwise refuses with ErrUnsafeRedis. Each such server is then reported
// through WithLogger (a warning) and WithObserver (a RedisObserver's
// RedisChecked: the metrics package's invgen_redis_unsafe gauge) when its
// gate opens. An evicted op record lets a repeat of its op key be applied
// again or refused instead of replayed; an evicted item is rebuilt from
// the ledger. See docs/operating.md#redis-persistence-and-eviction.
func WithEvictionAllowed() Option { return func(o *options) { o.evictionAllowed = true } }

func (o *options) validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"lease", o.lease}, {"op TTL", o.opTTL}, {"fence TTL", o.fenceTTL}, {"ledger timeout", o.ledgerTimeout}} {
		if d.v < time.Millisecond {
			return argError("%s %v is under 1ms", d.name, d.v)
		}
	}
	if o.fenceTTL > maxFenceTTL {
		return argError("fence TTL %v is over %v", o.fenceTTL, maxFenceTTL)
	}
	if o.busyWait < 0 {
		return argError("busy wait %v is negative", o.busyWait)
	}
	if o.soldOut < 0 || o.soldOut > time.Minute {
		return argError("sold-out cache %v is out of range 0..1m", o.soldOut)
	}
	if o.replicaAck < 0 {
		return argError("replica ack %v is negative", o.replicaAck)
	}
	if err := checkName("namespace", o.namespace); err != nil {
		return err
	}
	return nil
}

// checkName accepts what may stand before a hash tag in a key: letters,
// digits, '_', '-', '.' and ':'.
func checkName(what, s string) error {
	if s == "" {
		return argError("%s is empty", what)
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '_' || r == '-' || r == '.' || r == ':'
		if !ok {
			return argError("%s %q: %q is not allowed", what, s, r)
		}
	}
	if len(s) > 64 {
		return fmt.Errorf("%w: %s %q is over 64 bytes", ErrInvalidArgument, what, s)
	}
	return nil
}
