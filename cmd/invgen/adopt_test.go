package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invgen/invgen/internal/testenv"
)

// inventory_manager's tables as SQLAlchemy creates them from the library's
// models (id, item_id VARCHAR(64), delta INTEGER, create_time BIGINT in
// unix milliseconds), on MySQL with the library's utf8mb4_unicode_ci.
const (
	oldTableMySQL = `CREATE TABLE %s (
	id INTEGER NOT NULL AUTO_INCREMENT,
	item_id VARCHAR(64) COMMENT 'item_id',
	delta INTEGER COMMENT 'num for modify',
	create_time BIGINT,
	PRIMARY KEY (id)
) DEFAULT CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci`
	oldTablePostgres = `CREATE TABLE %s (
	id SERIAL NOT NULL,
	item_id VARCHAR(64),
	delta INTEGER,
	create_time BIGINT,
	PRIMARY KEY (id)
)`
)

// oldRow is a row of an old table.
type oldRow struct {
	item  string
	delta int64
}

// The deployment every adoption test converts, with the library's known
// defects: an oversell that left Redis below zero (sku-2), a return of
// units never sold (sku-3), a purchase of an item never stocked (sku-4), a
// value in Redis of an item the ledger never saw (ghost), an item missing
// from Redis (SKU-1, which MySQL's collation of the old tables would take
// for sku-1).
var (
	oldMods  = []oldRow{{"sku-1", 10}, {"sku-2", 3}, {"sku-1", 5}, {"sku-3", 4}, {"SKU-1", 2}}
	oldUses  = []oldRow{{"sku-1", -3}, {"sku-2", -3}, {"sku-1", -2}, {"sku-3", 2}, {"sku-4", -1}}
	oldRedis = map[string]string{"sku-1": "10", "sku-2": "-2", "sku-3": "6", "ghost": "5"}
	// adopted is each item's stock once adopted: Σ modifications + Σ usage.
	adopted = map[string]int64{"sku-1": 10, "sku-2": 0, "sku-3": 6, "SKU-1": 2}
)

// createTime is the create_time of the i-th row: milliseconds, as the
// library wrote it.
func createTime(i int) int64 { return 1796148063754 + int64(i)*1000 }

// TestAdopt converts an inventory_manager deployment on MariaDB and on
// PostgreSQL: a dry run that changes nothing and reports the library's
// defects, a refusal while a row cannot be converted, the conversion, the
// Redis state built from it, and invgen's managers working on the result.
func TestAdopt(t *testing.T) {
	for _, engine := range []string{"mysql", "postgresql"} {
		t.Run(engine, func(t *testing.T) { testAdopt(t, engine) })
	}
}

func testAdopt(t *testing.T, engine string) {
	ctx := testenv.Context(t, 3*time.Minute)
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	prefix := "adopt_" + strings.ToLower(rand.Text()[:8])
	modT, useT := prefix+"_inventory_modification_record", prefix+"_inventory_usage_record"

	// The spec: one string-keyed prefix named like the deployment's.
	dir := t.TempDir()
	testenv.Must(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/shop\n\ngo 1.26\n"), 0o644), "go.mod")
	spec := filepath.Join(dir, "inventory.yaml")
	testenv.Must(t, os.WriteFile(spec, fmt.Appendf(nil, "version: 1\noutput: inventory\nengine: %s\nprefixes:\n  - name: %s\n    key: string\n", engine, prefix), 0o644), "spec")

	// The ledger database, and a query helper over it.
	var dsn string
	var exec func(q string, args ...any)
	var one func(q string, args ...any) int64
	switch engine {
	case "mysql":
		db := testenv.SQLDB(t, "mysql")
		var name string
		testenv.Must(t, db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&name), "database")
		cfg, err := mysql.ParseDSN(testenv.MySQLURL())
		testenv.Must(t, err, "dsn")
		cfg.DBName = name
		dsn = cfg.FormatDSN()
		exec = func(q string, args ...any) {
			t.Helper()
			_, err := db.ExecContext(ctx, strings.ReplaceAll(q, "$", "?"), args...)
			testenv.Must(t, err, "%s", q)
		}
		one = func(q string, args ...any) int64 { t.Helper(); return testenv.SumSQL(t, db, q, args...) }
	default:
		pool := testenv.Pool(t)
		u, err := url.Parse(testenv.DatabaseURL())
		testenv.Must(t, err, "db url")
		v := u.Query()
		v.Set("search_path", testenv.Schema(pool))
		u.RawQuery = v.Encode()
		dsn = u.String()
		exec = func(q string, args ...any) {
			t.Helper()
			parts := strings.Split(q, "$")
			q = parts[0]
			for i, part := range parts[1:] {
				q += fmt.Sprintf("$%d", i+1) + part
			}
			_, err := pool.Exec(ctx, q, args...)
			testenv.Must(t, err, "%s", q)
		}
		one = func(q string, args ...any) int64 { t.Helper(); return pgOne(t, ctx, pool, q, args...) }
	}
	ddl := oldTablePostgres
	if engine == "mysql" {
		ddl = oldTableMySQL
	}
	exec(fmt.Sprintf(ddl, modT))
	exec(fmt.Sprintf(ddl, useT))
	for i, r := range oldMods {
		exec("INSERT INTO "+modT+" (item_id, delta, create_time) VALUES ($, $, $)", r.item, r.delta, createTime(i))
	}
	for i, r := range oldUses {
		exec("INSERT INTO "+useT+" (item_id, delta, create_time) VALUES ($, $, $)", r.item, r.delta, createTime(10+i))
	}
	exec("INSERT INTO " + useT + " (item_id, delta) VALUES (NULL, -1)") // a row adopt cannot convert
	for item, v := range oldRedis {
		key := "InventoryManager." + prefix + "." + item
		testenv.Must(t, rdb.Set(ctx, key, v, 0).Err(), "old Redis")
		t.Cleanup(func() { rdb.Del(context.Background(), key) })
	}

	adopt := func(code int, args ...string) result {
		t.Helper()
		all := append([]string{"adopt", "-f", spec, "-db", dsn, "-redis", testRedisURL(), "-namespace", ns}, args...)
		return invgen(t, all...).want(t, code)
	}
	admin := func(code int, args ...string) result {
		t.Helper()
		all := append([]string{"admin", "-f", spec, "-db", dsn, "-redis", testRedisURL(), "-namespace", ns}, args...)
		return invgen(t, all...).want(t, code)
	}

	// A NULL item: the dry run says so and adopt refuses, -apply too.
	r := adopt(exitNo)
	if !strings.Contains(r.stdout, "1 rows with a NULL item_id or delta") {
		t.Errorf("dry run with a NULL row:\n%s", r.stdout)
	}
	adopt(exitNo, "-apply")
	if n := one("SELECT COUNT(*) FROM " + modT); n != int64(len(oldMods)) {
		t.Fatalf("a refused adopt changed %s: %d rows", modT, n)
	}
	exec("DELETE FROM " + useT + " WHERE item_id IS NULL")

	// The dry run reports the library's defects and changes nothing.
	r = adopt(exitOK)
	for _, want := range []string{
		fmt.Sprintf("inventory_manager's %s (5 rows) and %s (5 rows), 5 items", modT, useT),
		"item sku-2: the old Redis holds -2, below zero (the library's oversell); the ledger says 0",
		"item sku-3: 2 more units returned than sold",
		"item sku-4: 1 usage rows but no stock ever",
		"item ghost: the old Redis holds 5 but the ledger has no row of it",
		"item SKU-1: no value in the old Redis; the ledger says 2",
		"dry run: nothing was changed",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run: %q missing from\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "item sku-1:") {
		t.Errorf("dry run reports sku-1, whose old Redis value matches its ledger:\n%s", r.stdout)
	}
	keys, err := testenv.Keys(ctx, rdb, ns)
	testenv.Must(t, err, "keys")
	if len(keys) != 0 {
		t.Fatalf("the dry run wrote Redis keys %v", keys)
	}

	if engine == "mysql" {
		// A run stopped after its rename is finished by the next.
		exec(fmt.Sprintf("RENAME TABLE %s TO %s_im_modification_record, %s TO %s_im_usage_record", modT, prefix, useT, prefix))
		if r := adopt(exitOK); !strings.Contains(r.stdout, "an earlier -apply renamed the tables and stopped") {
			t.Errorf("dry run after a stopped -apply:\n%s", r.stdout)
		}
	}

	r = adopt(exitOK, "-apply")
	if !strings.Contains(r.stdout, "converted:") || !strings.Contains(r.stdout, "Redis built from the ledger: 4 items, each checked against it") {
		t.Fatalf("adopt -apply:\n%s", r.stdout)
	}

	// Every old row is in invgen's tables, with its id, delta and time; the
	// old tables are kept.
	oldModT, oldUseT := prefix+"_im_modification_record", prefix+"_im_usage_record"
	for i, row := range oldMods {
		id := int64(i + 1)
		kind := "adjust"
		if row.item != "sku-1" || i == 0 {
			kind = "init"
		}
		op := "inventory_manager:" + fmt.Sprint(id)
		if kind == "init" {
			op = "init" // as invgen's Init writes it
		}
		if n := one("SELECT COUNT(*) FROM "+modT+" WHERE id = "+fmt.Sprint(id)+" AND item_id = "+placeholder(engine, 1)+" AND delta = "+fmt.Sprint(row.delta)+
			" AND kind = '"+kind+"' AND op_key = '"+op+"' AND state = 'committed'", row.item); n != 1 {
			t.Errorf("modification row %d (%+v, %s) is not in %s as converted", id, row, kind, modT)
		}
	}
	for i, row := range oldUses {
		id := int64(i + 1)
		kind := "decr"
		if row.delta > 0 {
			kind = "incr"
		}
		if n := one("SELECT COUNT(*) FROM "+useT+" WHERE id = "+fmt.Sprint(id)+" AND item_id = "+placeholder(engine, 1)+" AND delta = "+fmt.Sprint(row.delta)+
			" AND kind = '"+kind+"' AND op_key = 'inventory_manager:"+fmt.Sprint(id)+"'", row.item); n != 1 {
			t.Errorf("usage row %d (%+v) is not in %s as converted", id, row, useT)
		}
	}
	epochMS := "CAST(EXTRACT(EPOCH FROM created_at) * 1000 AS bigint)"
	if engine == "mysql" {
		epochMS = "CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED)"
	}
	if got := one("SELECT " + epochMS + " FROM " + modT + " WHERE id = 3"); got != createTime(2) {
		t.Errorf("created_at of modification row 3 is %d ms, want create_time %d", got, createTime(2))
	}
	for _, tb := range []string{oldModT, oldUseT} {
		if n := one("SELECT COUNT(*) FROM " + tb); n != 5 {
			t.Errorf("the kept old table %s holds %d rows, want 5", tb, n)
		}
	}

	// Redis holds what the ledger says; invgen works on the adopted tables.
	for item, want := range adopted {
		r := admin(exitOK, "-json", "get", prefix, item)
		if !strings.Contains(r.stdout, fmt.Sprintf(`"redis": %d`, want)) && !strings.Contains(r.stdout, fmt.Sprintf(`"Redis": %d`, want)) {
			t.Errorf("get %s after adopt: %s; want Redis %d", item, r.stdout, want)
		}
	}
	admin(exitNo, "get", prefix, "sku-4")
	admin(exitNo, "init", prefix, "sku-1", "1")
	admin(exitOK, "adjust", prefix, "sku-2", "7", "restock-after-adopt")
	admin(exitOK, "audit", prefix)

	// Adopting again finds nothing to do.
	r = adopt(exitOK, "-apply")
	if !strings.Contains(r.stdout, "adopted already") {
		t.Errorf("a second adopt:\n%s", r.stdout)
	}
}

// placeholder is the engine's n-th parameter.
func placeholder(engine string, n int) string {
	if engine == "mysql" {
		return "?"
	}
	return fmt.Sprintf("$%d", n)
}

func pgOne(t *testing.T, ctx context.Context, pool *pgxpool.Pool, q string, args ...any) int64 {
	t.Helper()
	var n sql.NullInt64
	testenv.Must(t, pool.QueryRow(ctx, q, args...).Scan(&n), "%s", q)
	return n.Int64
}
