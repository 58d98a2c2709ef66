package metrics_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/invgen/invgen/examples/flashsale/inventory/drop"
	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/internal/testenv"
	"github.com/invgen/invgen/metrics"
	invrt "github.com/invgen/invgen/runtime"
)

// TestMetrics: what managers on real Redis and PostgreSQL do shows in the
// registry, by prefix, operation and outcome.
func TestMetrics(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	reg := prometheus.NewRegistry()
	obs, err := metrics.New(reg)
	testenv.Must(t, err, "New")
	rdb, pool := testenv.Redis(t), testenv.Pool(t)
	ns := testenv.Namespace(t, rdb)
	inv, err := flashsale.New(pool, rdb, flashsale.WithNamespace(ns), flashsale.WithObserver(obs))
	testenv.Must(t, err, "New")
	testenv.Must(t, inv.CreateTables(ctx), "CreateTables")
	st, err := drop.New(pool, rdb, drop.WithNamespace(ns), drop.WithObserver(obs))
	testenv.Must(t, err, "New")
	testenv.Must(t, st.CreateTables(ctx), "CreateTables")
	testenv.Must(t, obs.Watch(flashsale.Prefix, inv.JournalLen, nil), "Watch")
	testenv.Must(t, obs.Watch(drop.Prefix, st.JournalLen, st.FlushLag), "Watch")

	testenv.Must(t, inv.Init(ctx, "hot", 2), "Init")
	for _, op := range []string{"a", "b", "a", "c"} { // ok, ok, replayed, short
		inv.Decr(ctx, "hot", 1, op)
	}
	if _, err := inv.Decr(ctx, "hot", 0, "bad"); !errors.Is(err, flashsale.ErrInvalidArgument) {
		t.Fatalf("Decr of 0 = %v", err)
	}
	testenv.Must(t, st.Init(ctx, "drop", 5), "Init")
	_, err = st.Decr(ctx, "drop", 2, "s1")
	testenv.Must(t, err, "Decr")
	_, err = inv.Reconcile(ctx)
	testenv.Must(t, err, "Reconcile")
	_, err = inv.Audit(ctx)
	testenv.Must(t, err, "Audit")

	text := scrape(t, reg)
	for _, want := range []string{
		`invgen_operations_total{op="decr",outcome="ok",prefix="flash_sale"} 2`,
		`invgen_operations_total{op="decr",outcome="replayed",prefix="flash_sale"} 1`,
		`invgen_operations_total{op="decr",outcome="insufficient_stock",prefix="flash_sale"} 1`,
		`invgen_operations_total{op="decr",outcome="invalid_argument",prefix="flash_sale"} 1`,
		`invgen_operations_total{op="init",outcome="ok",prefix="flash_sale"} 1`,
		`invgen_operations_total{op="decr",outcome="ok",prefix="drop"} 1`,
		`invgen_operation_seconds_count{op="decr",prefix="flash_sale"} 5`,
		`invgen_ledger_write_seconds_count{kind="decr",outcome="ok",prefix="flash_sale"} 2`,
		`invgen_audit_items{prefix="flash_sale"} 1`,
		`invgen_audit_drift{prefix="flash_sale"} 0`,
		`invgen_journal_entries{prefix="flash_sale"} 0`,
		`invgen_flush_backlog_entries{prefix="drop"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("the scrape lacks %q:\n%s", want, text)
		}
	}
	_, err = st.Flush(ctx)
	testenv.Must(t, err, "Flush")
	if text := scrape(t, reg); !strings.Contains(text, `invgen_flush_backlog_entries{prefix="drop"} 0`+"\n") {
		t.Errorf("the backlog after Flush:\n%s", text)
	}
	_ = inv.Close(ctx)
	_ = st.Close(ctx)
}

// scrape is the registry's exposition text.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	testenv.Must(t, err, "Gather")
	var b strings.Builder
	for _, mf := range mfs {
		_, err := expfmt.MetricFamilyToText(&b, mf)
		testenv.Must(t, err, "text")
	}
	return b.String()
}

// TestOutcomeOfHolds: each refusal of a hold has its own outcome label.
func TestOutcomeOfHolds(t *testing.T) {
	for err, want := range map[error]string{
		invrt.ErrHoldExpired:   "hold_expired",
		invrt.ErrHoldConfirmed: "hold_confirmed",
		invrt.ErrHoldCancelled: "hold_cancelled",
		invrt.ErrHoldNotFound:  "hold_not_found",
		invrt.ErrNotSupported:  "not_supported",
	} {
		if got := metrics.Outcome(invrt.Outcome{Err: fmt.Errorf("confirm: %w", err)}); got != want {
			t.Errorf("Outcome(%v) = %q, want %q", err, got, want)
		}
	}
}
