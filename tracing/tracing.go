// Package tracing puts invgen's operations into OpenTelemetry traces: one
// span per operation of a manager, a child of the span in the caller's
// context.
//
//	inv, err := flashsale.New(pool, rdb, flashsale.WithObserver(tracing.New(otel.GetTracerProvider())))
//
// A span is named "invgen <op>" (invgen decr, invgen refresh, ...), has
// the attributes invgen.prefix and invgen.replayed, and records the error
// of an operation that failed. Refusals (insufficient stock and the like)
// are answers, not failures: they set invgen.refused instead of an error
// status.
package tracing

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	invrt "github.com/invgen/invgen/runtime"
)

// Observer is an invrt.Observer that starts a span per operation.
type Observer struct {
	tracer trace.Tracer
}

var _ invrt.Observer = (*Observer)(nil)

// New returns an Observer whose spans come from tp.
func New(tp trace.TracerProvider) *Observer {
	return &Observer{tracer: tp.Tracer("github.com/invgen/invgen")}
}

// Begin implements invrt.Observer.
func (o *Observer) Begin(ctx context.Context, prefix string, op invrt.Op) (context.Context, func(invrt.Outcome)) {
	ctx, span := o.tracer.Start(ctx, "invgen "+string(op), trace.WithAttributes(attribute.String("invgen.prefix", prefix)))
	return ctx, func(out invrt.Outcome) {
		span.SetAttributes(attribute.Bool("invgen.replayed", out.Replayed))
		switch err := out.Err; {
		case err == nil:
		case refusal(err):
			span.SetAttributes(attribute.String("invgen.refused", err.Error()))
		default:
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// refusal reports whether err is an answer of the inventory, not a fault.
func refusal(err error) bool {
	for _, r := range []error{invrt.ErrInsufficientStock, invrt.ErrOverLimit, invrt.ErrNotFound, invrt.ErrAlreadyExists} {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// LedgerWrite implements invrt.Observer; the operation's span covers it.
func (o *Observer) LedgerWrite(string, invrt.Kind, time.Duration, error) {}

// Reconciled implements invrt.Observer; the operation's span covers it.
func (o *Observer) Reconciled(string, invrt.ReconcileReport) {}

// Audited implements invrt.Observer; the operation's span covers it.
func (o *Observer) Audited(string, int, int, int) {}
