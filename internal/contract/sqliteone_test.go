package contract

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	liflashsale "github.com/invgen/invgen/examples/engines/sqlite/flashsale"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// SQLite on one connection, as docs/engines.md advises: a purchase whose row
// fails in a way that may have come after its commit (here a full
// database, SQLITE_FULL) is settled, and the settle must not wait for the
// connection its own insert still holds: it waited the whole ledger
// timeout for itself, and every other write with it.
func TestSQLiteOneConnectionSettleDoesNotWaitForItself(t *testing.T) {
	db, err := testenv.OpenSQLite(filepath.Join(t.TempDir(), "ledger.db"))
	testenv.Must(t, err, "open SQLite")
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	rdb := testenv.Redis(t)
	const ledgerTimeout = 4 * time.Second
	m, err := liflashsale.New(db, rdb, invrt.WithNamespace(testenv.Namespace(t, rdb)), invrt.WithLedgerTimeout(ledgerTimeout))
	testenv.Must(t, err, "New")
	ctx := ctxT(t)
	testenv.Must(t, m.CreateTables(ctx), "CreateTables")
	testenv.Must(t, m.Init(ctx, "sku", 100000), "Init")
	// The database may not grow: the next row that needs a page fails.
	var pages int64
	testenv.Must(t, db.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages), "page_count")
	_, err = db.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages))
	testenv.Must(t, err, "max_page_count")
	for i := range 10000 {
		start := time.Now()
		_, err := m.Decr(ctx, "sku", 1, fmt.Sprintf("o-%d", i))
		took := time.Since(start)
		if err == nil {
			continue
		}
		t.Logf("purchase %d: %v after %v", i, err, took.Round(time.Millisecond))
		if took > ledgerTimeout/2 {
			t.Fatalf("a failed purchase took %v (ledger timeout %v): its settle waited for its own connection", took, ledgerTimeout)
		}
		if !errors.Is(err, invrt.ErrInDoubt) && !errors.Is(err, invrt.ErrVoided) {
			t.Logf("(the row was refused outright: %v)", err)
		}
		return
	}
	t.Fatal("the database never filled up")
}

var _ = context.Background
