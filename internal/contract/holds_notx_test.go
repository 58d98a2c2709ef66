package contract

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	liflashsale "github.com/invgen/invgen/examples/engines/sqlite/flashsale"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// noBeginTx is a database/sql pool that hides BeginTx, as a wrapper of
// *sql.DB may.
type noBeginTx struct{ db *sql.DB }

func (w noBeginTx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return w.db.ExecContext(ctx, q, args...)
}
func (w noBeginTx) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	return w.db.PrepareContext(ctx, q)
}
func (w noBeginTx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return w.db.QueryContext(ctx, q, args...)
}
func (w noBeginTx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return w.db.QueryRowContext(ctx, q, args...)
}

// TestHoldsNeedATransactionOfThePool: on the engines of database/sql a
// hold is written with its purchase row in one transaction. Over a pool
// that cannot begin one, Hold is refused with ErrNotSupported and takes
// nothing, and purchases and releases work as before.
func TestHoldsNeedATransactionOfThePool(t *testing.T) {
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	db, err := testenv.OpenSQLite(filepath.Join(t.TempDir(), "ledger.db"))
	testenv.Must(t, err, "open")
	t.Cleanup(func() { db.Close() })
	ctx := ctxT(t)
	m, err := liflashsale.New(noBeginTx{db}, rdb, invrt.WithNamespace(ns))
	testenv.Must(t, err, "New")
	t.Cleanup(func() { m.Close(context.Background()) })
	testenv.Must(t, m.CreateTables(ctx), "CreateTables")
	testenv.Must(t, m.Init(ctx, "sku", 5), "Init")

	if _, err := m.Hold(ctx, "sku", 2, "cart", time.Minute); !errors.Is(err, invrt.ErrNotSupported) {
		t.Fatalf("Hold over a pool without BeginTx: %v, want ErrNotSupported", err)
	}
	if got, err := m.Get(ctx, "sku"); err != nil || got != 5 {
		t.Fatalf("Get after the refused Hold = %d, %v; want 5", got, err)
	}
	_, err = m.Decr(ctx, "sku", 2, "order")
	testenv.Must(t, err, "Decr")
	r, err := m.Release(ctx, "sku", "order")
	if err != nil || r.Delta != 2 || r.Available != 5 {
		t.Fatalf("Release = %+v, %v; want the 2 units back", r, err)
	}
}
