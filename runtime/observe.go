package runtime

import (
	"context"
	"time"
)

// Observer watches a Core for metrics and tracing: WithObserver installs
// one. The runtime depends on no metrics or tracing library; the
// invgen/metrics (Prometheus) and invgen/tracing (OpenTelemetry) packages
// implement Observer, and an application may write its own. Its methods
// are called on the paths of the operations, so they must be fast, and
// safe for concurrent use.
type Observer interface {
	// Begin is called as an operation starts. The context it returns is
	// the operation's (a tracer puts its span in it); end is called once,
	// when the operation returns.
	Begin(ctx context.Context, prefix string, op Op) (context.Context, func(Outcome))
	// LedgerWrite is called after each ledger write of a change (sync
	// ledger), with how long the insert took and its error.
	LedgerWrite(prefix string, kind Kind, took time.Duration, err error)
	// Reconciled receives what every Reconcile settled.
	Reconciled(prefix string, r ReconcileReport)
	// Audited receives what every Audit found: the items it compared, the
	// items that drift and the expired journal entries.
	Audited(prefix string, items, drift, expired int)
}

// RedisObserver is an Observer that also hears the check of each Redis
// server (its eviction policy and persistence), made when the server's
// gate opens: on its first use by a Core, and after a restart, a failover
// or a SCRIPT FLUSH. An Observer that does not implement it is not told.
type RedisObserver interface {
	RedisChecked(prefix string, r RedisConfig, verdict RedisVerdict)
}

// Observers returns an Observer that reports to each of os, in order
// (metrics and tracing, say).
func Observers(os ...Observer) Observer { return fanOut(os) }

type fanOut []Observer

func (f fanOut) Begin(ctx context.Context, prefix string, op Op) (context.Context, func(Outcome)) {
	ends := make([]func(Outcome), len(f))
	for i, o := range f {
		ctx, ends[i] = o.Begin(ctx, prefix, op)
	}
	return ctx, func(out Outcome) {
		for i := len(ends) - 1; i >= 0; i-- {
			ends[i](out)
		}
	}
}

func (f fanOut) LedgerWrite(prefix string, kind Kind, took time.Duration, err error) {
	for _, o := range f {
		o.LedgerWrite(prefix, kind, took, err)
	}
}

func (f fanOut) Reconciled(prefix string, r ReconcileReport) {
	for _, o := range f {
		o.Reconciled(prefix, r)
	}
}

func (f fanOut) RedisChecked(prefix string, r RedisConfig, verdict RedisVerdict) {
	for _, o := range f {
		if ro, ok := o.(RedisObserver); ok {
			ro.RedisChecked(prefix, r, verdict)
		}
	}
}

func (f fanOut) Audited(prefix string, items, drift, expired int) {
	for _, o := range f {
		o.Audited(prefix, items, drift, expired)
	}
}

// Op names an operation of a Core for an Observer.
type Op string

// The operations an Observer sees.
const (
	OpInit       Op = "init"
	OpGet        Op = "get"
	OpDecr       Op = "decr"
	OpIncr       Op = "incr"
	OpRelease    Op = "release"
	OpAdjust     Op = "adjust"
	OpRefresh    Op = "refresh"
	OpRefreshAll Op = "refresh_all"
	OpReconcile  Op = "reconcile"
	OpAudit      Op = "audit"
	OpFlush      Op = "flush"
	OpHold       Op = "hold"
	OpConfirm    Op = "confirm"
	OpCancel     Op = "cancel"
)

// Outcome is how an operation ended.
type Outcome struct {
	Err      error         // nil on success
	Replayed bool          // a change answered its op key's first outcome
	Took     time.Duration // from Begin to the return
}

// WithObserver makes the Core report its operations to o (nil: none, the
// default).
func WithObserver(o Observer) Option { return func(opt *options) { opt.observer = o } }

// observe starts the observation of op, if an Observer is installed; done
// is then to be deferred with the operation's result.
func (c *Core[K]) observe(ctx context.Context, op Op) (context.Context, func(replayed bool, err error)) {
	o := c.opt.observer
	if o == nil {
		return ctx, noObservation
	}
	start := time.Now()
	ctx, end := o.Begin(ctx, c.prefix, op)
	return ctx, func(replayed bool, err error) {
		end(Outcome{Err: err, Replayed: replayed, Took: time.Since(start)})
	}
}

func noObservation(bool, error) {}

// observeLedger reports one ledger write to the Observer.
func (c *Core[K]) observeLedger(kind Kind, start time.Time, err error) {
	if o := c.opt.observer; o != nil {
		o.LedgerWrite(c.prefix, kind, time.Since(start), err)
	}
}
