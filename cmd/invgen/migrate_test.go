package main

import (
	"fmt"
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
		"max_key_len = 40", "-- +goose Down\n-- +goose StatementBegin\nDO $$",
		"over the new max_key_len 8", "ALTER TABLE shop_inventory_modification_record ALTER COLUMN item_id TYPE varchar(8) USING item_id::text;"} {
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
	// Every table's key column changes, the hold table's too.
	holdKeyColumn := func() string {
		t.Helper()
		var typ string
		var n *int32
		err := pool.QueryRow(ctx, "SELECT data_type, character_maximum_length FROM information_schema.columns "+
			"WHERE table_schema = current_schema() AND table_name = 'shop_inventory_hold' AND column_name = 'item_id'").Scan(&typ, &n)
		testenv.Must(t, err, "the hold table's key column")
		if n != nil {
			return fmt.Sprintf("%s(%d)", typ, *n)
		}
		return typ
	}
	if got := holdKeyColumn(); got != "character varying(40)" {
		t.Errorf("the hold table's key column after the migration to string40 is %s", got)
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
	if got := holdKeyColumn(); got != "bigint" {
		t.Errorf("the hold table's key column after the migration to int64 is %s", got)
	}
}

// TestMigrateRefusesTruncation: max_key_len shrinks from 64 to 16 while
// the ledger holds a 30-byte key. PostgreSQL truncates on an explicit
// cast, so a migration casting to varchar(16) would turn the key into
// another item's. The migration must fail with an error naming the key
// and the length, change nothing (the rows and the column type are as
// before) and record nothing as applied; a dry run lists it as pending
// until it is applied, and not after.
func TestMigrateRefusesTruncation(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	rdb, pool := testenv.Redis(t), testenv.Pool(t)
	ns := testenv.Namespace(t, rdb)
	inModule(t)
	flags := adminFlags(t, testenv.Schema(pool), ns)
	db := flags[len(flags)-1]
	spec := func(maxLen int) {
		writeFile(t, "inventory.yaml", fmt.Sprintf("version: 1\noutput: gen\nprefixes:\n  - name: shop\n    key: string\n    max_key_len: %d\n", maxLen))
	}
	admin := func(code int, args ...string) result {
		t.Helper()
		a := append([]string{"admin", "-namespace", ns, "-redis", testRedisURL(), "-db", db}, args...)
		return invgen(t, a...).want(t, code)
	}
	migrate := func(code int, args ...string) result {
		t.Helper()
		return invgen(t, append([]string{"migrate", "-namespace", ns, "-db", db}, args...)...).want(t, code)
	}
	const long = "a-key-of-thirty-bytes-xxxxxxxx" // 30 bytes; its first 16 are another key
	const short = "a-key-of-thirty-"
	if len(long) != 30 || long[:16] != short {
		t.Fatal("the keys of the test are wrong")
	}
	const name = "0001_shop_key_string64_to_string16.sql"

	spec(64)
	invgen(t, "generate").want(t, exitOK)
	migrate(exitOK)
	admin(exitOK, "init", "shop", long, "7")
	admin(exitOK, "init", "shop", "k1", "3")

	type state struct {
		keys  string
		width string
		done  int
	}
	read := func() state {
		t.Helper()
		var s state
		err := pool.QueryRow(ctx, "SELECT string_agg(item_id || ':' || delta, ',' ORDER BY id) FROM shop_inventory_modification_record").Scan(&s.keys)
		testenv.Must(t, err, "rows")
		err = pool.QueryRow(ctx, `SELECT string_agg(table_name || ' ' || data_type || '(' || character_maximum_length || ')', ',' ORDER BY table_name)
			FROM information_schema.columns WHERE table_schema = current_schema() AND column_name = 'item_id'`).Scan(&s.width)
		testenv.Must(t, err, "column types")
		err = pool.QueryRow(ctx, "SELECT count(*) FROM invgen_migrations WHERE prefix = 'shop' AND name = $1", name).Scan(&s.done)
		testenv.Must(t, err, "applied")
		return s
	}
	before := read()
	if !strings.Contains(before.keys, long+":7") || !strings.Contains(before.width, "varying(64)") {
		t.Fatalf("before the migration: %+v", before)
	}

	spec(16)
	r := invgen(t, "generate").want(t, exitOK)
	if !strings.Contains(r.stdout, name) {
		t.Fatalf("generate wrote no migration %s:\n%s", name, r.stdout)
	}
	if r := migrate(exitOK, "-dry-run"); !strings.Contains(r.stdout, "shop: apply "+name) {
		t.Fatalf("dry run before the migration: %s", r.stdout)
	}
	r = migrate(exitFail)
	for _, want := range []string{name + " (nothing of it applied)", long, "16"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the failed migration's error lacks %q: %s", want, r.stderr)
		}
	}
	if after := read(); after != before {
		t.Fatalf("a failed migration changed the database:\nbefore %+v\nafter  %+v", before, after)
	}
	if r := migrate(exitOK, "-dry-run"); !strings.Contains(r.stdout, "shop: apply "+name) {
		t.Fatalf("dry run after the failed migration: %s", r.stdout)
	}

	// A migration written by an older invgen, which cast with truncation,
	// is refused by invgen migrate itself.
	file := filepath.Join("gen", "shop", "migrations", name)
	current := readFile(t, file)
	up, down, _ := strings.Cut(current, "-- +goose Down")
	writeFile(t, file, "-- +goose Up\n"+
		"ALTER TABLE shop_inventory_modification_record ALTER COLUMN item_id TYPE varchar(16) USING item_id::text::varchar(16);\n"+
		"ALTER TABLE shop_inventory_usage_record ALTER COLUMN item_id TYPE varchar(16) USING item_id::text::varchar(16);\n"+
		up[strings.Index(up, "UPDATE shop_inventory_layout"):]+"-- +goose Down"+down)
	r = migrate(exitFail)
	if !strings.Contains(r.stderr, name+" (nothing of it applied)") || !strings.Contains(r.stderr, long) {
		t.Errorf("the old migration's failure: %s", r.stderr)
	}
	if after := read(); after != before {
		t.Fatalf("an old, truncating migration changed the database:\nbefore %+v\nafter  %+v", before, after)
	}
	writeFile(t, file, current)

	// Without the long key it applies, once.
	_, err := pool.Exec(ctx, "DELETE FROM shop_inventory_modification_record WHERE item_id = $1", long)
	testenv.Must(t, err, "delete")
	if r := migrate(exitOK); !strings.Contains(r.stdout, "shop: apply "+name) {
		t.Fatalf("migrate: %s", r.stdout)
	}
	if s := read(); s.done != 1 || !strings.Contains(s.width, "varying(16)") || s.keys != "k1:3" {
		t.Fatalf("after the migration: %+v", s)
	}
	if r := migrate(exitOK, "-dry-run"); strings.Contains(r.stdout, "apply") || !strings.Contains(r.stdout, "shop: up to date") {
		t.Fatalf("a dry run lists an applied migration: %s", r.stdout)
	}
}
