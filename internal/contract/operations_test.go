package contract

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	invrt "github.com/invgen/invgen/runtime"
)

func TestOperations(t *testing.T) {
	eachKey(t, testOperations[string], testOperations[int64], testOperations[uuid.UUID])
}

// testOperations walks every operation of a generated manager through its
// ordinary outcomes, checking the result, Redis and the ledger at each step.
func testOperations[K comparable](t *testing.T, f *fixture[K]) {
	ctx := ctxT(t)
	a, b := f.key(1), f.key(2)

	if err := f.m.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	// CreateTables is idempotent.
	if err := f.m.CreateTables(ctx); err != nil {
		t.Fatalf("second CreateTables: %v", err)
	}
	if ok, err := f.m.TablesInitialized(ctx); err != nil || !ok {
		t.Fatalf("TablesInitialized = %v, %v; want true", ok, err)
	}

	// An unknown item is not found, not stock 0.
	if _, err := f.m.Get(ctx, a); !errors.Is(err, invrt.ErrNotFound) {
		t.Fatalf("Get(unknown) err = %v, want ErrNotFound", err)
	}
	if _, err := f.m.Decr(ctx, a, 1, "o-unknown"); !errors.Is(err, invrt.ErrNotFound) {
		t.Fatalf("Decr(unknown) err = %v, want ErrNotFound", err)
	}

	if err := f.m.Init(ctx, a, 10); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if err := f.m.Init(ctx, a, 99); !errors.Is(err, invrt.ErrAlreadyExists) {
		t.Fatalf("second Init err = %v, want ErrAlreadyExists", err)
	}
	if err := f.m.Init(ctx, b, 0); err != nil {
		t.Fatalf("Init(0): %v", err)
	}
	if got := f.assertConserved(t, a); got != 10 {
		t.Fatalf("Get after Init = %d, want 10", got)
	}

	// Decr, and its replay.
	r, err := f.m.Decr(ctx, a, 3, "order-1")
	if err != nil || r != (invrt.Result{Available: 7, Delta: -3}) {
		t.Fatalf("Decr = %+v, %v; want {7 -3 false}", r, err)
	}
	r, err = f.m.Decr(ctx, a, 3, "order-1")
	if err != nil || r != (invrt.Result{Available: 7, Delta: -3, Replayed: true}) {
		t.Fatalf("repeated Decr = %+v, %v; want the first outcome, replayed", r, err)
	}
	// The same op key on another item is another operation.
	if _, err := f.m.Decr(ctx, b, 1, "order-1"); !errors.Is(err, invrt.ErrInsufficientStock) {
		t.Fatalf("Decr(b, empty) err = %v, want ErrInsufficientStock", err)
	}
	f.assertConserved(t, a)

	// Insufficient stock takes nothing and binds nothing: once stock is
	// back, a retry of the op key is a new attempt.
	if _, err := f.m.Decr(ctx, a, 8, "order-2"); !errors.Is(err, invrt.ErrInsufficientStock) {
		t.Fatalf("Decr(8 of 7) err = %v, want ErrInsufficientStock", err)
	}
	if _, err := f.m.Adjust(ctx, a, 5, "restock-1"); err != nil {
		t.Fatalf("Adjust(+5): %v", err)
	}
	if r, err := f.m.Decr(ctx, a, 8, "order-2"); err != nil || r.Replayed || r.Available != 4 {
		t.Fatalf("retried refused Decr = %+v, %v; want a fresh purchase leaving 4", r, err)
	}
	if _, err := f.m.Release(ctx, a, "order-2"); err != nil {
		t.Fatalf("Release(order-2): %v", err)
	}
	if got := f.assertConserved(t, a); got != 12 {
		t.Fatalf("stock = %d, want 12", got)
	}

	if r, err := f.m.Decr(ctx, a, 2, "order-3"); err != nil || r.Available != 10 {
		t.Fatalf("Decr(2) = %+v, %v; want available 10", r, err)
	}

	// Incr never returns more than was sold (5 sold so far).
	if _, err := f.m.Incr(ctx, a, 6, "return-big"); !errors.Is(err, invrt.ErrOverLimit) {
		t.Fatalf("Incr(6 of 5 sold) err = %v, want ErrOverLimit", err)
	}
	if r, err := f.m.Incr(ctx, a, 1, "return-1"); err != nil || r.Available != 11 || r.Delta != 1 {
		t.Fatalf("Incr(1) = %+v, %v; want available 11", r, err)
	}
	if r, err := f.m.Incr(ctx, a, 1, "return-1"); err != nil || !r.Replayed || r.Available != 11 {
		t.Fatalf("repeated Incr = %+v, %v; want replay", r, err)
	}
	if got := f.assertConserved(t, a); got != 11 {
		t.Fatalf("stock = %d, want 11: an Incr shows when it returns", got)
	}

	// Release returns exactly what the purchase took, once.
	if r, err := f.m.Release(ctx, a, "order-1"); err != nil || r.Delta != 3 || r.Available != 14 {
		t.Fatalf("Release = %+v, %v; want +3 to 14", r, err)
	}
	if r, err := f.m.Release(ctx, a, "order-1"); err != nil || !r.Replayed || r.Delta != 3 {
		t.Fatalf("repeated Release = %+v, %v; want replay of +3", r, err)
	}
	// One unit of the 5 sold is left out: order-3's 2 units cannot all
	// come back, since the Incr returned one of them already.
	if _, err := f.m.Release(ctx, a, "order-3"); !errors.Is(err, invrt.ErrOverLimit) {
		t.Fatalf("Release beyond what is still sold err = %v, want ErrOverLimit", err)
	}
	if _, err := f.m.Release(ctx, a, "never-bought"); !errors.Is(err, invrt.ErrNotFound) {
		t.Fatalf("Release(unknown op) err = %v, want ErrNotFound", err)
	}
	if _, err := f.m.Decr(ctx, a, 1000, "order-refused"); !errors.Is(err, invrt.ErrInsufficientStock) {
		t.Fatalf("Decr(1000) err = %v, want ErrInsufficientStock", err)
	}
	if _, err := f.m.Release(ctx, a, "order-refused"); !errors.Is(err, invrt.ErrNotFound) {
		t.Fatalf("Release(refused op) err = %v, want ErrNotFound", err)
	}
	if got := f.assertConserved(t, a); got != 14 {
		t.Fatalf("stock = %d, want 14", got)
	}

	// Adjust down, within and beyond what is available.
	if _, err := f.m.Adjust(ctx, a, -20, "shrink-big"); !errors.Is(err, invrt.ErrInsufficientStock) {
		t.Fatalf("Adjust(-20 of 14) err = %v, want ErrInsufficientStock", err)
	}
	if r, err := f.m.Adjust(ctx, a, -6, "shrink"); err != nil || r.Available != 8 {
		t.Fatalf("Adjust(-6) = %+v, %v", r, err)
	}
	if got := f.assertConserved(t, a); got != 8 {
		t.Fatalf("stock = %d, want 8", got)
	}

	// Every ledger row is stamped and committed.
	n := testenvCount(t, f, "created_at IS NULL OR state <> 'committed'")
	if n != 0 {
		t.Fatalf("%d ledger rows lack created_at or are not committed", n)
	}
	// Rows: init a, init b, adjust +5, adjust -6; usage: three decr
	// (order-2's retry bought), incr, two releases.
	if got := testenvCount(t, f, "true"); got != 10 {
		t.Fatalf("ledger holds %d rows, want 10", got)
	}

	// RefreshAll loads every item; Refresh of an unknown item is not found.
	if n, err := f.m.RefreshAll(ctx); err != nil || n != 2 {
		t.Fatalf("RefreshAll = %d, %v; want 2", n, err)
	}
	if err := f.m.Refresh(ctx, f.key(3)); !errors.Is(err, invrt.ErrNotFound) {
		t.Fatalf("Refresh(unknown) err = %v, want ErrNotFound", err)
	}
	f.assertConserved(t, a)
	f.assertConserved(t, b)
	if rep, err := f.m.Reconcile(ctx); err != nil || rep.Seen != 0 || rep.Corrupt != nil {
		t.Fatalf("Reconcile on a quiet prefix = %+v, %v; want nothing to do", rep, err)
	}
}

// testenvCount counts the rows of both tables matching cond.
func testenvCount[K comparable](t *testing.T, f *fixture[K], cond string) int64 {
	t.Helper()
	return sumSQL(t, f, "SELECT (SELECT count(*) FROM "+f.modTable+" WHERE "+cond+") + (SELECT count(*) FROM "+f.usageTable+" WHERE "+cond+")")
}
