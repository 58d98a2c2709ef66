package main

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	mydrop "github.com/invgen/invgen/examples/engines/mysql/drop"
	myflashsale "github.com/invgen/invgen/examples/engines/mysql/flashsale"
	lidrop "github.com/invgen/invgen/examples/engines/sqlite/drop"
	liflashsale "github.com/invgen/invgen/examples/engines/sqlite/flashsale"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// TestAdminOnEngines runs invgen admin, flush and migrate against MariaDB
// and SQLite, next to the application's generated managers of those
// engines: what one writes, the other reads.
func TestAdminOnEngines(t *testing.T) {
	for _, engine := range []string{"mysql", "sqlite"} {
		t.Run(engine, func(t *testing.T) {
			ctx := testenv.Context(t, 2*time.Minute)
			rdb := testenv.Redis(t)
			ns := testenv.Namespace(t, rdb)
			db := testenv.SQLDB(t, engine)
			var dsn string
			switch engine {
			case "mysql":
				cfg, err := mysql.ParseDSN(testenv.MySQLURL())
				testenv.Must(t, err, "dsn")
				var name string
				testenv.Must(t, db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&name), "database")
				cfg.DBName = name
				dsn = cfg.FormatDSN()
			case "sqlite":
				var file string
				var seq int
				var schema string
				testenv.Must(t, db.QueryRowContext(ctx, "PRAGMA database_list").Scan(&seq, &schema, &file), "database_list")
				dsn = file
			}
			spec := filepath.Join("..", "..", "examples", "engines", engine+".yaml")
			flags := []string{"-f", spec, "-namespace", ns, "-db", dsn}
			run := func(code int, args ...string) result {
				t.Helper()
				cmd := append([]string{args[0]}, flags...)
				if args[0] != "migrate" {
					cmd = append(cmd, "-redis", testRedisURL())
				}
				return invgen(t, append(cmd, args[1:]...)...).want(t, code)
			}

			// migrate creates the tables and records the layout.
			r := run(exitOK, "migrate")
			if !strings.Contains(r.stdout, "flash_sale: create its tables") {
				t.Errorf("migrate:\n%s", r.stdout)
			}
			r = run(exitOK, "migrate")
			if !strings.Contains(r.stdout, "flash_sale: up to date") {
				t.Errorf("migrate again:\n%s", r.stdout)
			}

			get, decr := appSale(t, engine, db, ns)
			run(exitOK, "admin", "init", "flash_sale", "sku-1", "10")
			if _, err := decr(ctx, "sku-1", 3, "o1"); err != nil {
				t.Fatalf("the application's Decr: %v", err)
			}
			r = run(exitOK, "admin", "get", "flash_sale", "sku-1")
			if !strings.Contains(r.stdout, "sku-1  7      7       10") {
				t.Errorf("get:\n%s", r.stdout)
			}
			run(exitOK, "admin", "adjust", "flash_sale", "sku-1", "5", "restock-1")
			if n, err := get(ctx, "sku-1"); err != nil || n != 12 {
				t.Errorf("the application sees sku-1 at %d, %v; want 12", n, err)
			}
			run(exitNo, "admin", "init", "flash_sale", "sku-1", "1")
			run(exitOK, "admin", "audit", "flash_sale")
			run(exitOK, "admin", "refresh", "flash_sale", "-all")
			r = run(exitOK, "admin", "list", "flash_sale")
			if !strings.Contains(r.stdout, "sku-1  12     12      15") {
				t.Errorf("list:\n%s", r.stdout)
			}

			// Holds: the application holds, invgen admin shows them and
			// ends the one past its deadline.
			hold := appHold(t, engine, db, ns)
			if _, err := hold(ctx, "sku-1", 2, "cart-short", 20*time.Millisecond); err != nil {
				t.Fatalf("the application's Hold: %v", err)
			}
			if _, err := hold(ctx, "sku-1", 1, "cart-long", time.Hour); err != nil {
				t.Fatalf("the application's Hold: %v", err)
			}
			if r := run(exitOK, "admin", "-json", "holds", "flash_sale", "sku-1"); !strings.Contains(r.stdout, `"held": 3`) {
				t.Errorf("holds:\n%s", r.stdout)
			}
			time.Sleep(50 * time.Millisecond)
			if r := run(exitOK, "admin", "expire", "flash_sale"); !strings.Contains(r.stdout, "expired  1") {
				t.Errorf("expire:\n%s", r.stdout)
			}
			if n, err := get(ctx, "sku-1"); err != nil || n != 11 {
				t.Errorf("after expire the application sees sku-1 at %d, %v; want 11 (one unit still held)", n, err)
			}
			if r := run(exitOK, "admin", "holds", "flash_sale", "sku-1", "cart-short"); !strings.Contains(r.stdout, "expired") {
				t.Errorf("hold cart-short after expire:\n%s", r.stdout)
			}

			// The stream prefix: the application buys, invgen flush writes.
			buy := appStream(t, engine, db, ns)
			run(exitOK, "admin", "init", "drop", "hot", "5")
			for _, op := range []string{"a", "b", "a"} {
				if _, err := buy(ctx, "hot", 1, op); err != nil {
					t.Fatalf("the application's Decr on the stream prefix: %v", err)
				}
			}
			run(exitOK, "flush", "-once")
			if n := testenv.SumSQL(t, db, "SELECT count(*) FROM drop_inventory_usage_record WHERE kind = 'decr' AND state = 'committed'"); n != 2 {
				t.Errorf("the ledger holds %d purchases after the flush, want 2", n)
			}
			run(exitOK, "admin", "audit", "drop")
		})
	}
}

type ctxArg = context.Context

// appSale is the application's flash_sale manager of engine.
func appSale(t *testing.T, engine string, db *sql.DB, ns string) (
	get func(ctx ctxArg, id string) (int64, error),
	decr func(ctx ctxArg, id string, n int64, op string) (invrt.Result, error),
) {
	t.Helper()
	switch engine {
	case "mysql":
		m, err := myflashsale.New(db, testenv.Redis(t), myflashsale.WithNamespace(ns))
		testenv.Must(t, err, "New")
		return m.Get, m.Decr
	default:
		m, err := liflashsale.New(db, testenv.Redis(t), liflashsale.WithNamespace(ns))
		testenv.Must(t, err, "New")
		return m.Get, m.Decr
	}
}

// appHold is the Hold of the application's flash_sale manager of engine.
func appHold(t *testing.T, engine string, db *sql.DB, ns string) func(ctx ctxArg, id string, n int64, key string, ttl time.Duration) (invrt.Result, error) {
	t.Helper()
	switch engine {
	case "mysql":
		m, err := myflashsale.New(db, testenv.Redis(t), myflashsale.WithNamespace(ns))
		testenv.Must(t, err, "New")
		return m.Hold
	default:
		m, err := liflashsale.New(db, testenv.Redis(t), liflashsale.WithNamespace(ns))
		testenv.Must(t, err, "New")
		return m.Hold
	}
}

// appStream is the application's drop (stream ledger) manager of engine.
func appStream(t *testing.T, engine string, db *sql.DB, ns string) func(ctx ctxArg, id string, n int64, op string) (invrt.Result, error) {
	t.Helper()
	switch engine {
	case "mysql":
		m, err := mydrop.New(db, testenv.Redis(t), mydrop.WithNamespace(ns))
		testenv.Must(t, err, "New")
		return m.Decr
	default:
		m, err := lidrop.New(db, testenv.Redis(t), lidrop.WithNamespace(ns))
		testenv.Must(t, err, "New")
		return m.Decr
	}
}
