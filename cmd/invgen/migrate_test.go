package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/invgen/invgen/internal/testenv"
)

// TestMigrate: a prefix's key length, then its key type, change in the
// spec while its ledger holds data. generate writes a migration of each
// change, check accepts it, the old layout's tables refuse the new build
// until invgen migrate applies it, and the data is still there after.
func TestMigrate(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	rdb, pool := testenv.Redis(t), testenv.Pool(t)
	ns := testenv.Namespace(t, rdb)
	inModule(t)
	flags := adminFlags(t, testenv.Schema(pool), ns)
	db := flags[len(flags)-1]
	spec := func(key string) {
		writeFile(t, "inventory.yaml", "version: 1\noutput: gen\nprefixes:\n  - name: shop\n"+key)
	}
	admin := func(code int, args ...string) result {
		t.Helper()
		a := append([]string{"admin", "-namespace", ns, "-redis", testRedisURL(), "-db", db}, args...)
		return invgen(t, a...).want(t, code)
	}
	migrate := func() result {
		t.Helper()
		return invgen(t, "migrate", "-namespace", ns, "-db", db).want(t, exitOK)
	}

	spec("    key: string\n    max_key_len: 8\n")
	invgen(t, "generate").want(t, exitOK)
	if r := migrate(); !strings.Contains(r.stdout, "shop: create its tables") {
		t.Fatalf("first migrate: %s", r.stdout)
	}
	admin(exitOK, "init", "shop", "123", "5")
	admin(exitUsage, "init", "shop", "a-key-of-20-bytes-xx", "1") // too long for 8

	// The key grows to 40 bytes: a migration, which check accepts.
	spec("    key: string\n    max_key_len: 40\n")
	invgen(t, "check").want(t, exitFail)
	r := invgen(t, "generate").want(t, exitOK)
	name := filepath.Join("gen", "shop", "migrations", "0001_shop_key_string8_to_string40.sql")
	if !strings.Contains(r.stdout, "wrote "+name+": a migration") {
		t.Fatalf("generate after the change:\n%s", r.stdout)
	}
	sql := readFile(t, name)
	for _, want := range []string{"-- +goose Up\nALTER TABLE shop_inventory_modification_record ALTER COLUMN item_id TYPE varchar(40)",
		"max_key_len = 40", "-- +goose Down\nALTER TABLE shop_inventory_modification_record ALTER COLUMN item_id TYPE varchar(8)"} {
		if !strings.Contains(sql, want) {
			t.Errorf("the migration lacks %q:\n%s", want, sql)
		}
	}
	invgen(t, "check").want(t, exitOK)
	invgen(t, "generate").want(t, exitOK) // writes no second migration
	if entries, _ := os.ReadDir(filepath.Join("gen", "shop", "migrations")); len(entries) != 1 {
		t.Fatalf("%d migrations after generating twice", len(entries))
	}
	// Before the migration, the database still records the old layout.
	if r := admin(exitFail, "get", "shop", "123"); !strings.Contains(r.stderr, "layout mismatch") {
		t.Errorf("the new build against the old tables: %s", r.stderr)
	}
	if r := migrate(); !strings.Contains(r.stdout, "shop: apply 0001_shop_key_string8_to_string40.sql") {
		t.Fatalf("migrate: %s", r.stdout)
	}
	if r := migrate(); !strings.Contains(r.stdout, "shop: up to date") {
		t.Fatalf("second migrate: %s", r.stdout)
	}
	admin(exitOK, "refresh", "shop", "-all")
	if r := admin(exitOK, "get", "shop", "123"); !strings.Contains(r.stdout, "123   5      5") {
		t.Errorf("the item after the migration:\n%s", r.stdout)
	}
	admin(exitOK, "init", "shop", "a-key-of-20-bytes-xx", "1")
	admin(exitOK, "adjust", "shop", "123", "-1", "fix")

	// The key becomes an int64: a key that is not a number makes the
	// migration fail and change nothing; without it, it applies.
	spec("    key: int64\n")
	invgen(t, "generate").want(t, exitOK)
	r = invgen(t, "migrate", "-namespace", ns, "-db", db).want(t, exitFail)
	if !strings.Contains(r.stderr, "0002_shop_key_string40_to_int64.sql (nothing of it applied)") {
		t.Fatalf("migrate with a key that is not a number: %s", r.stderr)
	}
	_, err := pool.Exec(ctx, "DELETE FROM shop_inventory_modification_record WHERE item_id = 'a-key-of-20-bytes-xx'")
	testenv.Must(t, err, "delete")
	migrate()
	admin(exitOK, "refresh", "shop", "-all")
	if r := admin(exitOK, "get", "shop", "123"); !strings.Contains(r.stdout, "123   4      4") {
		t.Errorf("the item after the second migration:\n%s", r.stdout)
	}
	admin(exitUsage, "get", "shop", "abc")
}
