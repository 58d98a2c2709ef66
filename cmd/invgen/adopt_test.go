package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	mathrand "math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

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

// deployment is a ledger database of a test's own, with a spec of one
// string-keyed prefix named like the library's tables of it.
type deployment struct {
	engine, prefix, ns, dsn, spec string
	modT, useT                    string
	// exec runs a statement whose parameters are written $; one returns
	// the one number of a query.
	exec func(q string, args ...any)
	one  func(q string, args ...any) int64
}

// newDeployment makes a deployment on engine, its spec in a Go module.
func newDeployment(t *testing.T, ctx context.Context, engine string) *deployment {
	t.Helper()
	rdb := testenv.Redis(t)
	d := &deployment{engine: engine, ns: testenv.Namespace(t, rdb), prefix: "adopt_" + strings.ToLower(rand.Text()[:8])}
	d.modT, d.useT = d.prefix+"_inventory_modification_record", d.prefix+"_inventory_usage_record"

	// The spec: one string-keyed prefix named like the deployment's.
	dir := t.TempDir()
	testenv.Must(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/shop\n\ngo 1.26\n"), 0o644), "go.mod")
	d.spec = filepath.Join(dir, "inventory.yaml")
	testenv.Must(t, os.WriteFile(d.spec, fmt.Appendf(nil, "version: 1\noutput: inventory\nengine: %s\nprefixes:\n  - name: %s\n    key: string\n", engine, d.prefix), 0o644), "spec")

	// The ledger database, and a query helper over it.
	switch engine {
	case "mysql":
		db := testenv.SQLDB(t, "mysql")
		var name string
		testenv.Must(t, db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&name), "database")
		cfg, err := mysql.ParseDSN(testenv.MySQLURL())
		testenv.Must(t, err, "dsn")
		cfg.DBName = name
		d.dsn = cfg.FormatDSN()
		d.exec = func(q string, args ...any) {
			t.Helper()
			_, err := db.ExecContext(ctx, strings.ReplaceAll(q, "$", "?"), args...)
			testenv.Must(t, err, "%s", q)
		}
		d.one = func(q string, args ...any) int64 { t.Helper(); return testenv.SumSQL(t, db, q, args...) }
	default:
		pool := testenv.Pool(t)
		u, err := url.Parse(testenv.DatabaseURL())
		testenv.Must(t, err, "db url")
		v := u.Query()
		v.Set("search_path", testenv.Schema(pool))
		u.RawQuery = v.Encode()
		d.dsn = u.String()
		d.exec = func(q string, args ...any) {
			t.Helper()
			parts := strings.Split(q, "$")
			q = parts[0]
			for i, part := range parts[1:] {
				q += fmt.Sprintf("$%d", i+1) + part
			}
			_, err := pool.Exec(ctx, q, args...)
			testenv.Must(t, err, "%s", q)
		}
		d.one = func(q string, args ...any) int64 { t.Helper(); return pgOne(t, ctx, pool, q, args...) }
	}
	return d
}

// createOld creates the library's two tables of the deployment.
func (d *deployment) createOld() {
	ddl := oldTablePostgres
	if d.engine == "mysql" {
		ddl = oldTableMySQL
	}
	d.exec(fmt.Sprintf(ddl, d.modT))
	d.exec(fmt.Sprintf(ddl, d.useT))
}

// args are the arguments of verb (adopt or admin) on the deployment.
func (d *deployment) args(verb string, more ...string) []string {
	return append([]string{verb, "-f", d.spec, "-db", d.dsn, "-redis", testRedisURL(), "-namespace", d.ns}, more...)
}

func testAdopt(t *testing.T, engine string) {
	ctx := testenv.Context(t, 3*time.Minute)
	rdb := testenv.Redis(t)
	d := newDeployment(t, ctx, engine)
	prefix, ns, modT, useT, exec, one := d.prefix, d.ns, d.modT, d.useT, d.exec, d.one
	d.createOld()
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
		return invgen(t, d.args("adopt", args...)...).want(t, code)
	}
	admin := func(code int, args ...string) result {
		t.Helper()
		return invgen(t, d.args("admin", args...)...).want(t, code)
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

// TestMain runs the test binary as an invgen process when
// INVGEN_ADOPT_CHILD holds a command line (JSON): TestAdoptKilled starts it
// so and kills it with SIGKILL. Otherwise it runs the tests.
func TestMain(m *testing.M) {
	raw := os.Getenv("INVGEN_ADOPT_CHILD")
	if raw == "" {
		os.Exit(m.Run())
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitUsage)
	}
	os.Exit(run(args, os.Stdout, os.Stderr))
}

// TestAdoptKilled kills `invgen adopt -apply` with SIGKILL at random points
// (drawn from a logged seed; INVGEN_ADOPT_SEED replays one), among them
// after its copy committed while it records the layout and builds Redis,
// and runs -apply again until one completes. The end state is the
// conversion's: every row is in invgen's tables and the kept ones, the
// layout is recorded, Redis is built and matches the ledger (admin audit
// finds no drift), and only then does a run say "adopted already".
func TestAdoptKilled(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("INVGEN_ADOPT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		testenv.Must(t, err, "INVGEN_ADOPT_SEED")
		seed = n
	}
	t.Logf("seed %d (INVGEN_ADOPT_SEED=%d replays it)", seed, seed)
	for i, engine := range []string{"mysql", "postgresql"} {
		t.Run(engine, func(t *testing.T) { testAdoptKilled(t, engine, seed+uint64(i)) })
	}
}

// killedItems is how many items the killed adoptions convert: enough that
// building Redis takes a while.
const killedItems = 3000

func testAdoptKilled(t *testing.T, engine string, seed uint64) {
	ctx := testenv.Context(t, 4*time.Minute)
	rng := mathrand.New(mathrand.NewPCG(seed, 0x5eed))
	d := newDeployment(t, ctx, engine)
	d.createOld()
	// Every item stocked, some adjusted; purchases and returns.
	var wantMod, wantUse, modRows, useRows int64
	insert := func(table string, rows [][2]int64) {
		for len(rows) > 0 {
			n := min(len(rows), 500)
			var b strings.Builder
			var args []any
			for i, r := range rows[:n] {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString("($, $, $)")
				args = append(args, fmt.Sprintf("item-%05d", r[0]), r[1], createTime(int(r[0])))
			}
			d.exec("INSERT INTO "+table+" (item_id, delta, create_time) VALUES "+b.String(), args...)
			rows = rows[n:]
		}
	}
	var mods, uses [][2]int64
	for i := range int64(killedItems) {
		mods = append(mods, [2]int64{i, 10 + i%7})
		if i%5 == 0 {
			mods = append(mods, [2]int64{i, 3})
		}
		if i%2 == 0 {
			uses = append(uses, [2]int64{i, -1 - i%3})
		}
		if i%11 == 0 {
			uses = append(uses, [2]int64{i, 1})
		}
	}
	for _, r := range mods {
		wantMod, modRows = wantMod+r[1], modRows+1
	}
	for _, r := range uses {
		wantUse, useRows = wantUse+r[1], useRows+1
	}
	insert(d.modT, mods)
	insert(d.useT, uses)
	// The library's Redis values agree with its ledger: the reports stay short.
	rdb := testenv.Redis(t)
	stock := map[int64]int64{}
	for _, r := range append(mods, uses...) {
		stock[r[0]] += r[1]
	}
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range stock {
			p.Set(ctx, fmt.Sprintf("InventoryManager.%s.item-%05d", d.prefix, i), n, time.Hour)
		}
		return nil
	})
	testenv.Must(t, err, "old Redis")
	t.Cleanup(func() {
		for i := range stock {
			rdb.Del(context.Background(), fmt.Sprintf("InventoryManager.%s.item-%05d", d.prefix, i))
		}
	})

	exe, err := os.Executable()
	testenv.Must(t, err, "test binary")
	args, err := json.Marshal(d.args("adopt", "-apply"))
	testenv.Must(t, err, "args")
	// start runs adopt -apply in a process of its own; converted is closed
	// when it printed that the copy committed (in this run or an earlier).
	type child struct {
		cmd       *exec.Cmd
		out       *bytes.Buffer
		converted chan struct{}
		done      chan error
	}
	start := func() *child {
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(), "INVGEN_ADOPT_CHILD="+string(args))
		pr, pw, err := os.Pipe()
		testenv.Must(t, err, "pipe")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = pw, &stderr
		testenv.Must(t, cmd.Start(), "start adopt")
		pw.Close()
		c := &child{cmd: cmd, out: &bytes.Buffer{}, converted: make(chan struct{}), done: make(chan error, 1)}
		lines := make(chan struct{})
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(pr)
			closed := false
			for sc.Scan() {
				c.out.WriteString(sc.Text() + "\n")
				if !closed && (strings.Contains(sc.Text(), "  converted: ") || strings.Contains(sc.Text(), "an earlier -apply converted the tables")) {
					close(c.converted)
					closed = true
				}
			}
			pr.Close()
		}()
		go func() {
			err := cmd.Wait()
			<-lines
			if err != nil && stderr.Len() > 0 {
				err = fmt.Errorf("%w: %s", err, stderr.String())
			}
			c.done <- err
		}()
		return c
	}

	// Kill rounds: at a random time from the start, or after the copy
	// committed (while the layout is recorded and Redis built). At least
	// one of the latter.
	rounds := 2 + rng.IntN(3)
	late := rng.IntN(rounds)
	for round := range rounds {
		c := start()
		afterCopy := round == late || rng.IntN(2) == 0
		var delay time.Duration
		if afterCopy {
			select {
			case <-c.converted:
			case err := <-c.done:
				t.Logf("round %d: adopt ended before its copy committed (%v):\n%s", round, err, c.out)
				continue
			}
			delay = time.Duration(rng.Int64N(int64(400 * time.Millisecond)))
		} else {
			delay = time.Duration(rng.Int64N(int64(1500 * time.Millisecond)))
		}
		select {
		case err := <-c.done:
			t.Logf("round %d: adopt ended (%v) before its kill %v after %s:\n%s", round, err, delay, map[bool]string{true: "the copy", false: "its start"}[afterCopy], c.out)
			continue
		case <-time.After(delay):
		}
		testenv.Must(t, c.cmd.Process.Signal(syscall.SIGKILL), "kill adopt")
		<-c.done
		t.Logf("round %d: killed %v after %s", round, delay, map[bool]string{true: "the copy committed", false: "its start"}[afterCopy])
	}

	// A dry run says "adopted already" only of a complete conversion, and
	// changes nothing.
	dry := invgen(t, d.args("adopt")...).want(t, exitOK)
	complete := strings.Contains(dry.stdout, "adopted already")
	if !complete && !strings.Contains(dry.stdout, "-apply finishes it") && !strings.Contains(dry.stdout, "-apply copies them now") {
		t.Errorf("dry run after the kills:\n%s", firstLines(dry.stdout, 8))
	}
	if complete {
		if a := invgen(t, d.args("admin", "audit", d.prefix)...); a.code != exitOK {
			t.Errorf("a dry run said adopted already, but admin audit exits %d:\n%s%s", a.code, firstLines(a.stdout, 8), a.stderr)
		}
	}

	// The next -apply finishes the conversion.
	r := invgen(t, d.args("adopt", "-apply")...)
	t.Logf("adopt -apply after the kills:\n%s%s", r.stdout, r.stderr)
	r.want(t, exitOK)

	// Every row is kept, in invgen's tables and in the library's.
	oldModT, oldUseT := d.prefix+"_im_modification_record", d.prefix+"_im_usage_record"
	for _, c := range []struct {
		table     string
		rows, sum int64
	}{{d.modT, modRows, wantMod}, {d.useT, useRows, wantUse}, {oldModT, modRows, wantMod}, {oldUseT, useRows, wantUse}} {
		if n, s := d.one("SELECT COUNT(*) FROM "+c.table), d.one("SELECT SUM(delta) FROM "+c.table); n != c.rows || s != c.sum {
			t.Errorf("%s holds %d rows summing to %d, want %d summing to %d", c.table, n, s, c.rows, c.sum)
		}
	}
	if n := d.one("SELECT COUNT(*) FROM " + d.prefix + "_inventory_layout"); n != 1 {
		t.Errorf("%d layouts recorded, want 1", n)
	}
	// Redis is built and matches the ledger.
	a := invgen(t, d.args("admin", "audit", d.prefix)...)
	if a.code != exitOK || !regexp.MustCompile(`items\s+`+strconv.Itoa(killedItems)+`\n`).MatchString(a.stdout) {
		t.Errorf("admin audit after the kills and a completed -apply: exit %d\n%s%s", a.code, firstLines(a.stdout, 8), a.stderr)
	}
	if got := invgen(t, d.args("adopt", "-apply")...).want(t, exitOK); !strings.Contains(got.stdout, "adopted already") {
		t.Errorf("adopt -apply once complete:\n%s", got.stdout)
	}
}

// firstLines is the first n lines of s.
func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	return strings.Join(lines[:min(n, len(lines))], "")
}

// TestAdoptEdges: an empty deployment (the library's tables, no rows) is
// adopted once and then reported as adopted; -apply of a prefix the
// database has no tables of fails and changes nothing; a spec whose output
// is in no Go module is adopted (adopt writes no code).
func TestAdoptEdges(t *testing.T) {
	for _, engine := range []string{"mysql", "postgresql"} {
		t.Run(engine, func(t *testing.T) {
			ctx := testenv.Context(t, 2*time.Minute)
			d := newDeployment(t, ctx, engine)
			adopt := func(code int, args ...string) result {
				t.Helper()
				return invgen(t, d.args("adopt", args...)...).want(t, code)
			}

			// No tables of the prefix: a mistyped spec.
			r := adopt(exitUsage, "-apply")
			if !strings.Contains(r.stderr, d.prefix+": the database has no table "+d.modT) || !strings.Contains(r.stderr, "nothing was changed") {
				t.Errorf("-apply of a prefix without tables:\n%s", r.stderr)
			}
			if r := adopt(exitOK); !strings.Contains(r.stdout, "nothing to adopt (-apply refuses") {
				t.Errorf("dry run of a prefix without tables:\n%s", r.stdout)
			}
			if n := d.one("SELECT COUNT(*) FROM information_schema.tables WHERE table_name LIKE '" + d.prefix + "%'"); n != 0 {
				t.Errorf("-apply of a prefix without tables created %d tables", n)
			}

			// An empty deployment, its spec in no Go module.
			testenv.Must(t, os.Remove(filepath.Join(filepath.Dir(d.spec), "go.mod")), "go.mod")
			d.createOld()
			r = adopt(exitOK, "-apply")
			if !strings.Contains(r.stdout, "converted:") || !strings.Contains(r.stdout, "Redis built from the ledger: 0 items") {
				t.Errorf("adopt -apply of an empty deployment:\n%s", r.stdout)
			}
			for _, args := range [][]string{nil, {"-apply"}} {
				r = adopt(exitOK, args...)
				if !strings.Contains(r.stdout, "adopted already") || strings.Contains(r.stdout, "converted:") {
					t.Errorf("adopt %v of an adopted empty deployment:\n%s", args, r.stdout)
				}
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(d.spec), "inventory")); !os.IsNotExist(err) {
				t.Errorf("adopt wrote the output directory (%v)", err)
			}
		})
	}
}
