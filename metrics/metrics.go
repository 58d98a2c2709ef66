// Package metrics records what invgen's managers do as Prometheus metrics.
//
// One Observer serves every prefix of a process (each metric has a prefix
// label): register it once and pass it to each Manager with WithObserver.
//
//	obs, err := metrics.New(prometheus.DefaultRegisterer)
//	inv, err := flashsale.New(pool, rdb, flashsale.WithObserver(obs))
//	err = obs.Watch(flashsale.Prefix, inv.JournalLen, nil)
//
// The metrics:
//
//	invgen_operations_total{prefix,op,outcome}      operations by outcome (op="decr": purchases)
//	invgen_operation_seconds{prefix,op}             how long operations take
//	invgen_ledger_write_seconds{prefix,kind,outcome} the ledger write of each change (sync ledger)
//	invgen_reconcile_settled_total{prefix,result}   journal entries Reconcile confirmed or voided
//	invgen_reconcile_voided_units_total{prefix}     units the voided ones gave back
//	invgen_audit_items{prefix}, invgen_audit_drift{prefix}, invgen_audit_expired{prefix}
//	                                                what the last Audit found
//	invgen_journal_entries{prefix}                  changes between Redis and the ledger (Watch)
//	invgen_flush_backlog_entries{prefix}, invgen_flush_oldest_seconds{prefix}
//	                                                the stream ledger's flush lag (Watch)
//	invgen_redis_unsafe{prefix,server,reason}       a Redis server that may evict keys (redis.go)
//
// grafana/invgen.json in this package's directory is a Grafana dashboard
// of them (import it and pick the Prometheus data source): purchases and
// refusals per prefix, latency percentiles, ledger write errors, journal
// size, flush lag, what Reconcile settled, drift found and unsafe Redis
// servers. A test checks that each of its queries names only metrics and
// labels this package exports.
package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	invrt "github.com/invgen/invgen/runtime"
)

// Observer is an invrt.Observer that records Prometheus metrics.
type Observer struct {
	reg           prometheus.Registerer
	ops           *prometheus.CounterVec
	opSeconds     *prometheus.HistogramVec
	ledgerSeconds *prometheus.HistogramVec
	settled       *prometheus.CounterVec
	voidedUnits   *prometheus.CounterVec
	auditItems    *prometheus.GaugeVec
	auditDrift    *prometheus.GaugeVec
	auditExpired  *prometheus.GaugeVec
}

var _ invrt.Observer = (*Observer)(nil)

// latency buckets: 100 µs to about 6 s.
var latency = prometheus.ExponentialBuckets(0.0001, 2.5, 13)

// New registers the metrics with reg and returns their Observer.
func New(reg prometheus.Registerer) (*Observer, error) {
	o := &Observer{
		reg: reg,
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invgen_operations_total",
			Help: "Operations of invgen managers, by outcome (op=decr counts purchases)."}, []string{"prefix", "op", "outcome"}),
		opSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "invgen_operation_seconds",
			Help: "How long the operations of invgen managers take.", Buckets: latency}, []string{"prefix", "op"}),
		ledgerSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "invgen_ledger_write_seconds",
			Help: "How long the ledger write of a change takes (sync ledger).", Buckets: latency}, []string{"prefix", "kind", "outcome"}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invgen_reconcile_settled_total",
			Help: "Journal entries Reconcile settled: confirmed (the ledger had the change) or voided."}, []string{"prefix", "result"}),
		voidedUnits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invgen_reconcile_voided_units_total",
			Help: "Units the changes Reconcile voided gave back (or took back)."}, []string{"prefix"}),
		auditItems: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "invgen_audit_items",
			Help: "Items the last Audit compared."}, []string{"prefix"}),
		auditDrift: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "invgen_audit_drift",
			Help: "Items whose Redis stock differed from the ledger at the last Audit."}, []string{"prefix"}),
		auditExpired: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "invgen_audit_expired",
			Help: "Journal entries whose lease had passed at the last Audit (Reconcile settles them)."}, []string{"prefix"}),
	}
	for _, c := range []prometheus.Collector{o.ops, o.opSeconds, o.ledgerSeconds, o.settled, o.voidedUnits, o.auditItems, o.auditDrift, o.auditExpired} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Begin implements invrt.Observer.
func (o *Observer) Begin(ctx context.Context, prefix string, op invrt.Op) (context.Context, func(invrt.Outcome)) {
	return ctx, func(out invrt.Outcome) {
		o.ops.WithLabelValues(prefix, string(op), Outcome(out)).Inc()
		o.opSeconds.WithLabelValues(prefix, string(op)).Observe(out.Took.Seconds())
	}
}

// LedgerWrite implements invrt.Observer.
func (o *Observer) LedgerWrite(prefix string, kind invrt.Kind, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	o.ledgerSeconds.WithLabelValues(prefix, string(kind), result).Observe(took.Seconds())
}

// Reconciled implements invrt.Observer.
func (o *Observer) Reconciled(prefix string, r invrt.ReconcileReport) {
	o.settled.WithLabelValues(prefix, "confirmed").Add(float64(r.Confirmed))
	o.settled.WithLabelValues(prefix, "voided").Add(float64(r.Voided))
	o.voidedUnits.WithLabelValues(prefix).Add(float64(r.Units))
}

// Audited implements invrt.Observer.
func (o *Observer) Audited(prefix string, items, drift, expired int) {
	o.auditItems.WithLabelValues(prefix).Set(float64(items))
	o.auditDrift.WithLabelValues(prefix).Set(float64(drift))
	o.auditExpired.WithLabelValues(prefix).Set(float64(expired))
}

// Outcome names how an operation ended, as the outcome label says it:
// ok, replayed, or the error (insufficient_stock, over_limit, not_found,
// already_exists, invalid_argument, busy, in_doubt, voided, corrupt,
// closed, layout_mismatch, hold_expired, hold_confirmed, hold_cancelled,
// hold_not_found, not_supported, canceled, error for any other).
func Outcome(out invrt.Outcome) string {
	switch err := out.Err; {
	case err == nil && out.Replayed:
		return "replayed"
	case err == nil:
		return "ok"
	case errors.Is(err, invrt.ErrInsufficientStock):
		return "insufficient_stock"
	case errors.Is(err, invrt.ErrOverLimit):
		return "over_limit"
	case errors.Is(err, invrt.ErrNotFound):
		return "not_found"
	case errors.Is(err, invrt.ErrAlreadyExists):
		return "already_exists"
	case errors.Is(err, invrt.ErrInvalidArgument):
		return "invalid_argument"
	case errors.Is(err, invrt.ErrBusy):
		return "busy"
	case errors.Is(err, invrt.ErrInDoubt):
		return "in_doubt"
	case errors.Is(err, invrt.ErrVoided):
		return "voided"
	case errors.Is(err, invrt.ErrCorrupt):
		return "corrupt"
	case errors.Is(err, invrt.ErrClosed):
		return "closed"
	case errors.Is(err, invrt.ErrLayoutMismatch):
		return "layout_mismatch"
	case errors.Is(err, invrt.ErrHoldExpired):
		return "hold_expired"
	case errors.Is(err, invrt.ErrHoldConfirmed):
		return "hold_confirmed"
	case errors.Is(err, invrt.ErrHoldCancelled):
		return "hold_cancelled"
	case errors.Is(err, invrt.ErrHoldNotFound):
		return "hold_not_found"
	case errors.Is(err, invrt.ErrNotSupported):
		return "not_supported"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "error"
}

// Watch registers gauges of one prefix's state, read from its Manager at
// each scrape, within a second: journal (the Manager's JournalLen) and,
// for a stream prefix, lag (its FlushLag); either may be nil.
func (o *Observer) Watch(prefix string, journal func(context.Context) (int64, error), lag func(context.Context) (invrt.FlushLag, error)) error {
	return o.reg.Register(&watch{prefix: prefix, journal: journal, lag: lag,
		entries: prometheus.NewDesc("invgen_journal_entries", "Changes between their Redis step and their ledger commit.", nil, prometheus.Labels{"prefix": prefix}),
		backlog: prometheus.NewDesc("invgen_flush_backlog_entries", "Usage rows in the streams not yet written to the ledger.", nil, prometheus.Labels{"prefix": prefix}),
		oldest:  prometheus.NewDesc("invgen_flush_oldest_seconds", "Age of the oldest usage row not yet written to the ledger.", nil, prometheus.Labels{"prefix": prefix}),
	})
}

type watch struct {
	prefix                   string
	journal                  func(context.Context) (int64, error)
	lag                      func(context.Context) (invrt.FlushLag, error)
	entries, backlog, oldest *prometheus.Desc
}

func (w *watch) Describe(ch chan<- *prometheus.Desc) {
	ch <- w.entries
	ch <- w.backlog
	ch <- w.oldest
}

func (w *watch) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// A closed Manager has nothing to show; any other failure fails the
	// scrape, as Prometheus wants.
	if w.journal != nil {
		switch n, err := w.journal(ctx); {
		case err == nil:
			ch <- prometheus.MustNewConstMetric(w.entries, prometheus.GaugeValue, float64(n))
		case !errors.Is(err, invrt.ErrClosed):
			ch <- prometheus.NewInvalidMetric(w.entries, err)
		}
	}
	if w.lag != nil {
		switch l, err := w.lag(ctx); {
		case err == nil:
			ch <- prometheus.MustNewConstMetric(w.backlog, prometheus.GaugeValue, float64(l.Entries))
			ch <- prometheus.MustNewConstMetric(w.oldest, prometheus.GaugeValue, l.Oldest.Seconds())
		case !errors.Is(err, invrt.ErrClosed):
			ch <- prometheus.NewInvalidMetric(w.backlog, err)
		}
	}
}
