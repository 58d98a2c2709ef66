package main

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/invgen/invgen/examples/flashsale/inventory/coupon"
	"github.com/invgen/invgen/examples/flashsale/inventory/drop"
	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/examples/flashsale/inventory/giftcard"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// adminArgsFor are the flags of `invgen admin` of the root spec against
// the test's schema and namespace.
func adminFlags(t *testing.T, schema, ns string) []string {
	u, err := url.Parse(testenv.DatabaseURL())
	testenv.Must(t, err, "db url")
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return []string{"admin", "-f", "../../inventory.yaml", "-namespace", ns, "-redis", testRedisURL(), "-db", u.String()}
}

// TestAdmin walks every verb of invgen admin over the four example
// prefixes (string, int64 and uuid keys; sync and stream ledgers) on real
// Redis and PostgreSQL, next to the application's own managers.
func TestAdmin(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	rdb, pool := testenv.Redis(t), testenv.Pool(t)
	ns := testenv.Namespace(t, rdb)
	flags := adminFlags(t, testenv.Schema(pool), ns)
	admin := func(code int, args ...string) result {
		t.Helper()
		return invgen(t, append(append([]string{}, flags...), args...)...).want(t, code)
	}
	sale, err := flashsale.New(pool, rdb, flashsale.WithNamespace(ns))
	testenv.Must(t, err, "New")
	testenv.Must(t, sale.CreateTables(ctx), "CreateTables")
	testenv.Must(t, sale.Init(ctx, "sku-1", 10), "Init")
	_, err = sale.Decr(ctx, "sku-1", 3, "o1")
	testenv.Must(t, err, "Decr")

	// list and get, as a table and as JSON.
	r := admin(exitOK, "list", "flash_sale")
	if !strings.Contains(r.stdout, "item") || !strings.Contains(r.stdout, "sku-1  7      7       10        1") {
		t.Errorf("list:\n%s", r.stdout)
	}
	r = admin(exitOK, "-json", "get", "flash_sale", "sku-1")
	var row itemRow
	testenv.Must(t, json.Unmarshal([]byte(r.stdout), &row), "get -json %q", r.stdout)
	if row != (itemRow{Item: "sku-1", Redis: 7, Ledger: 7, Capacity: 10, Buckets: 1}) {
		t.Errorf("get -json = %+v", row)
	}
	admin(exitNo, "get", "flash_sale", "nope")
	admin(exitUsage, "get", "flash_sale")
	admin(exitUsage, "get", "no_such_prefix", "x")
	admin(exitUsage, "fly", "flash_sale")

	// init (also split into buckets) and adjust, replayed by op key.
	admin(exitOK, "init", "flash_sale", "sku-2", "40", "4")
	if n, err := sale.Get(ctx, "sku-2"); err != nil || n != 40 {
		t.Fatalf("the application sees sku-2 at %d, %v", n, err)
	}
	admin(exitNo, "init", "flash_sale", "sku-2", "5") // exists
	r = admin(exitOK, "adjust", "flash_sale", "sku-2", "-15", "fix-1")
	r2 := admin(exitOK, "-json", "adjust", "flash_sale", "sku-2", "-15", "fix-1")
	if !strings.Contains(r.stdout, "-15") || !strings.Contains(r2.stdout, `"Replayed": true`) {
		t.Errorf("adjust:\n%s\nrepeat:\n%s", r.stdout, r2.stdout)
	}
	admin(exitNo, "adjust", "flash_sale", "sku-2", "-100", "fix-2")
	admin(exitUsage, "adjust", "flash_sale", "sku-2", "x", "fix-3")
	if n, _ := sale.Get(ctx, "sku-2"); n != 25 {
		t.Fatalf("sku-2 at %d after the adjustments, want 25", n)
	}

	// audit finds a drifting item (exit 3); refresh repairs it.
	testenv.Must(t, rdb.HIncrBy(ctx, ns+":{flash_sale:"+itoa(shardOfItem("sku-1", 16))+"}:item:sku-1", "a", 5).Err(), "tamper")
	r = admin(exitNo, "audit", "flash_sale")
	if !strings.Contains(r.stdout, "sku-1") || !strings.Contains(r.stderr, "refresh them") {
		t.Errorf("audit:\nstdout %s\nstderr %s", r.stdout, r.stderr)
	}
	admin(exitOK, "refresh", "flash_sale", "sku-1")
	admin(exitOK, "audit", "flash_sale")
	r = admin(exitOK, "refresh", "flash_sale", "-all")
	if !strings.Contains(r.stdout, "refreshed  2") {
		t.Errorf("refresh -all: %s", r.stdout)
	}
	r = admin(exitOK, "reconcile", "flash_sale")
	if !strings.Contains(r.stdout, "voided") {
		t.Errorf("reconcile: %s", r.stdout)
	}

	// int64 and uuid keys.
	cp, err := coupon.New(pool, rdb, coupon.WithNamespace(ns))
	testenv.Must(t, err, "New")
	testenv.Must(t, cp.CreateTables(ctx), "CreateTables")
	admin(exitOK, "init", "coupon", "1007", "3")
	if n, err := cp.Get(ctx, 1007); err != nil || n != 3 {
		t.Fatalf("coupon 1007 at %d, %v", n, err)
	}
	admin(exitUsage, "get", "coupon", "not-a-number")
	gc, err := giftcard.New(pool, rdb, giftcard.WithNamespace(ns))
	testenv.Must(t, err, "New")
	testenv.Must(t, gc.CreateTables(ctx), "CreateTables")
	id := uuid.New()
	testenv.Must(t, gc.Init(ctx, id, 2), "Init")
	r = admin(exitOK, "list", "gift_card")
	if !strings.Contains(r.stdout, id.String()) {
		t.Errorf("list gift_card:\n%s", r.stdout)
	}

	// lag and drain on the stream prefix.
	st, err := drop.New(pool, rdb, drop.WithNamespace(ns))
	testenv.Must(t, err, "New")
	testenv.Must(t, st.CreateTables(ctx), "CreateTables")
	testenv.Must(t, st.Init(ctx, "hot", 9), "Init")
	for _, op := range []string{"a", "b"} {
		_, err := st.Decr(ctx, "hot", 1, op)
		testenv.Must(t, err, "Decr")
	}
	r = admin(exitOK, "-json", "lag", "drop")
	if !strings.Contains(r.stdout, `"stream_entries": 2`) {
		t.Errorf("lag: %s", r.stdout)
	}
	r = admin(exitOK, "drain", "drop")
	if !strings.Contains(r.stdout, "stream entries   0") {
		t.Errorf("drain: %s", r.stdout)
	}
	r = admin(exitOK, "-json", "get", "drop", "hot")
	testenv.Must(t, json.Unmarshal([]byte(r.stdout), &row), "get -json")
	if row.Redis != 7 || row.Ledger != 7 {
		t.Errorf("drop/hot after drain: %+v", row)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// shardOfItem is the runtime's shard of an item: FNV-1a of its Redis form.
func shardOfItem(item string, shards int) int {
	h := uint32(2166136261)
	for i := 0; i < len(item); i++ {
		h ^= uint32(item[i])
		h *= 16777619
	}
	return int(h % uint32(shards))
}

// TestAdminRefusals: bad arguments exit 2 before anything is opened, and
// no verb creates a SQLite ledger that is not there (a mistyped -db): a
// read-only verb opens the file read-only, the others open it without
// creating it, and only invgen migrate (not its dry run) creates one.
func TestAdminRefusals(t *testing.T) {
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	sqliteSpec := filepath.Join("..", "..", "examples", "engines", "sqlite.yaml")

	t.Run("namespace", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "ledger.db")
		for _, args := range [][]string{
			{"admin", "-f", sqliteSpec, "-namespace", "BAD NS!", "-redis", testRedisURL(), "-db", missing, "get", "flash_sale", "x"},
			{"admin", "-f", sqliteSpec, "-namespace", "BAD NS!", "-redis", testRedisURL(), "-db", missing, "init", "flash_sale", "x", "1"},
			{"migrate", "-f", sqliteSpec, "-namespace", "BAD NS!", "-db", missing},
		} {
			r := invgen(t, args...).want(t, exitUsage)
			if !strings.Contains(r.stderr, "namespace") || !strings.Contains(r.stderr, "BAD NS!") {
				t.Errorf("%v: the error does not name the namespace: %s", args, r.stderr)
			}
			if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%v created %s (%v)", args, missing, err)
			}
		}
	})

	t.Run("missing sqlite ledger", func(t *testing.T) {
		dir := t.TempDir()
		missing := filepath.Join(dir, "ledgr.db") // mistyped
		for _, verb := range [][]string{
			{"list", "flash_sale"}, {"get", "flash_sale", "x"}, {"audit", "flash_sale"}, {"lag", "drop"},
			{"init", "flash_sale", "x", "1"}, {"adjust", "flash_sale", "x", "1", "op"}, {"reconcile", "flash_sale"},
			{"refresh", "flash_sale", "-all"}, {"drain", "drop"},
		} {
			args := append([]string{"admin", "-f", sqliteSpec, "-namespace", ns, "-redis", testRedisURL(), "-db", missing}, verb...)
			r := invgen(t, args...).want(t, exitFail)
			if !strings.Contains(r.stderr, missing) || !strings.Contains(r.stderr, "no SQLite ledger") {
				t.Errorf("admin %s: the error does not say the file is missing: %s", verb[0], r.stderr)
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Fatalf("admin %s on a missing SQLite file created %s", verb[0], entries[0].Name())
			}
		}
		r := invgen(t, "migrate", "-f", sqliteSpec, "-namespace", ns, "-db", missing, "-dry-run").want(t, exitOK)
		if !strings.Contains(r.stdout, "flash_sale: create its tables") {
			t.Errorf("migrate -dry-run on a missing file: %s", r.stdout)
		}
		invgen(t, "flush", "-f", sqliteSpec, "-namespace", ns, "-redis", testRedisURL(), "-db", missing, "-once").want(t, exitFail)
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Fatalf("migrate -dry-run or flush created %s", entries[0].Name())
		}
		// migrate creates it; then the read-only verbs read it.
		invgen(t, "migrate", "-f", sqliteSpec, "-namespace", ns, "-db", missing).want(t, exitOK)
		admin := func(code int, verb ...string) result {
			t.Helper()
			return invgen(t, append([]string{"admin", "-f", sqliteSpec, "-namespace", ns, "-redis", testRedisURL(), "-db", missing}, verb...)...).want(t, code)
		}
		admin(exitOK, "init", "flash_sale", "sku-1", "4")
		if r := admin(exitOK, "get", "flash_sale", "sku-1"); !strings.Contains(r.stdout, "sku-1  4      4       4") {
			t.Errorf("get:\n%s", r.stdout)
		}
		admin(exitOK, "list", "flash_sale")
		admin(exitOK, "audit", "flash_sale")
		admin(exitOK, "lag", "drop")
	})
}

// nopWriter is a BatchWriter that is never called.
type nopWriter struct{}

func (nopWriter) Flush(context.Context, *invrt.Batch) ([]string, error) { return nil, nil }

// TestCheckNamespace: the namespaces that admin and migrate refuse up
// front are exactly those the runtime refuses.
func TestCheckNamespace(t *testing.T) {
	rdb := testenv.Redis(t)
	for _, ns := range []string{"inv", "Shop.EU", "a:b", "t-1_x", "BAD NS!", "inv{x}", "ä", "x/y", strings.Repeat("n", 64), strings.Repeat("n", 65)} {
		_, rterr := invrt.NewFlusher(rdb, ns, "p", 1, nopWriter{}, invrt.FlusherConfig{})
		if err := checkNamespace(ns); (err == nil) != (rterr == nil) {
			t.Errorf("namespace %q: checkNamespace says %v, the runtime %v", ns, err, rterr)
		}
	}
}

// TestAdminHolds: admin holds shows an item's units on hold and one hold,
// and admin expire ends the holds past their deadline; a stream prefix has
// none (exit 2).
func TestAdminHolds(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	rdb, pool := testenv.Redis(t), testenv.Pool(t)
	ns := testenv.Namespace(t, rdb)
	flags := adminFlags(t, testenv.Schema(pool), ns)
	admin := func(code int, args ...string) result {
		t.Helper()
		return invgen(t, append(append([]string{}, flags...), args...)...).want(t, code)
	}
	sale, err := flashsale.New(pool, rdb, flashsale.WithNamespace(ns))
	testenv.Must(t, err, "New")
	testenv.Must(t, sale.CreateTables(ctx), "CreateTables")
	testenv.Must(t, sale.Init(ctx, "sku-1", 10), "Init")
	_, err = sale.Hold(ctx, "sku-1", 3, "cart-1", time.Hour)
	testenv.Must(t, err, "Hold")
	_, err = sale.Hold(ctx, "sku-1", 2, "cart-2", 20*time.Millisecond)
	testenv.Must(t, err, "Hold")

	var held map[string]any
	r := admin(exitOK, "-json", "holds", "flash_sale", "sku-1")
	testenv.Must(t, json.Unmarshal([]byte(r.stdout), &held), "holds -json %q", r.stdout)
	if held["held"] != float64(5) {
		t.Fatalf("holds: %s", r.stdout)
	}
	var row holdRow
	r = admin(exitOK, "-json", "holds", "flash_sale", "sku-1", "cart-1")
	testenv.Must(t, json.Unmarshal([]byte(r.stdout), &row), "holds -json %q", r.stdout)
	if row.Units != 3 || row.State != "open" || row.Left < 59*time.Minute {
		t.Fatalf("hold cart-1: %+v", row)
	}
	admin(exitNo, "holds", "flash_sale", "sku-1", "nothing")
	time.Sleep(50 * time.Millisecond)
	r = admin(exitOK, "expire", "flash_sale")
	if !strings.Contains(r.stdout, "expired  1") {
		t.Fatalf("expire:\n%s", r.stdout)
	}
	if n, err := sale.Get(ctx, "sku-1"); err != nil || n != 7 {
		t.Fatalf("after expire the application sees %d, %v; want 7", n, err)
	}
	r = admin(exitOK, "holds", "flash_sale", "sku-1", "cart-2")
	if !strings.Contains(r.stdout, "expired") {
		t.Fatalf("hold cart-2 after expire:\n%s", r.stdout)
	}
	admin(exitUsage, "holds", "drop", "sku-1")
}
