package tracing_test

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/internal/testenv"
	"github.com/invgen/invgen/tracing"
)

// TestSpans: each operation of a manager on real Redis and PostgreSQL is
// one span, a child of the caller's; a refusal is an attribute, a failure
// an error status.
func TestSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx := testenv.Context(t, time.Minute)
	rdb, pool := testenv.Redis(t), testenv.Pool(t)
	inv, err := flashsale.New(pool, rdb, flashsale.WithNamespace(testenv.Namespace(t, rdb)), flashsale.WithObserver(tracing.New(tp)))
	testenv.Must(t, err, "New")
	testenv.Must(t, inv.CreateTables(ctx), "CreateTables")
	testenv.Must(t, inv.Init(ctx, "hot", 1), "Init")

	ctx, parent := tp.Tracer("test").Start(ctx, "checkout")
	inv.Decr(ctx, "hot", 1, "a")        // ok
	inv.Decr(ctx, "hot", 1, "a")        // replayed
	inv.Decr(ctx, "hot", 1, "b")        // refused
	inv.Decr(ctx, "missing", 1, "c")    // refused: not found
	inv.Decr(ctx, "hot", 1, "\x00oops") // a bad argument: a failure of the caller's
	parent.End()

	var decrs []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "invgen decr" {
			decrs = append(decrs, s)
		}
	}
	if len(decrs) != 5 {
		t.Fatalf("%d decr spans, want 5", len(decrs))
	}
	attr := func(s sdktrace.ReadOnlySpan, key string) attribute.Value {
		for _, a := range s.Attributes() {
			if string(a.Key) == key {
				return a.Value
			}
		}
		return attribute.Value{}
	}
	for i, s := range decrs {
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %d is not a child of the caller's", i)
		}
		if attr(s, "invgen.prefix").AsString() != "flash_sale" {
			t.Errorf("span %d: prefix %v", i, attr(s, "invgen.prefix"))
		}
	}
	if !attr(decrs[1], "invgen.replayed").AsBool() || attr(decrs[0], "invgen.replayed").AsBool() {
		t.Errorf("replayed: %v, %v; want false, true", attr(decrs[0], "invgen.replayed"), attr(decrs[1], "invgen.replayed"))
	}
	for _, i := range []int{2, 3} {
		if attr(decrs[i], "invgen.refused").AsString() == "" || decrs[i].Status().Code == codes.Error {
			t.Errorf("refusal %d: refused %q, status %v", i, attr(decrs[i], "invgen.refused").AsString(), decrs[i].Status())
		}
	}
	if decrs[4].Status().Code != codes.Error {
		t.Errorf("a bad argument: status %v, want an error", decrs[4].Status())
	}
}
