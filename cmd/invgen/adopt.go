package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/generator"
	invrt "github.com/invgen/invgen/runtime"
)

const adoptDoc = `Adopt converts a deployment of inventory_manager, the Python library invgen
replaces, into invgen's: for each prefix of the spec whose tables are the
library's (<prefix>_inventory_modification_record and
<prefix>_inventory_usage_record: id, item_id, delta and create_time in unix
milliseconds), it reads every row and the library's Redis values
(InventoryManager.<prefix>.<item>), and reports:

  - rows it cannot convert (a NULL item or delta, an item id that is not a
    valid key of the prefix's key type): adopt refuses until they are fixed;
  - items whose old Redis value differs from the ledger (the library's
    drift: its oversell left values below zero);
  - items with more units returned than sold, or sold but never stocked.

That is a dry run, and the default: nothing is changed. With -apply it
renames the old tables to <prefix>_im_modification_record and
<prefix>_im_usage_record (kept, untouched), creates invgen's tables and
copies every row into them with its id: a modification row becomes the
item's init if it is its first, else an adjustment; a usage row a purchase
if its delta is negative, else a return; an init gets the op key of
invgen's Init, every other row inventory_manager:<id>, and create_time
becomes created_at. Then it records
the prefix's layout and builds invgen's Redis state from the ledger, and
checks each item's stock against the ledger. PostgreSQL converts a prefix in
one transaction; MySQL in an atomic rename and one transaction of copies.
The old Redis keys are left as they are.

A run stopped at any point is finished by the next -apply: every run checks
each step (the tables, the rows, the layout record, invgen's Redis state,
audited against the ledger) and says "adopted already" only when all are
done. -apply of a prefix the database has no tables of changes nothing and
exits 2. Adopt writes no code: the spec's output need not be in a Go module.
On a terminal, the build of Redis shows its progress (items done of total,
rate, time left); the copy is one statement per table and shows none.

Exit codes: 0 done (or a clean dry run); 1 a failure; 2 bad arguments or
spec, or a prefix the database lacks (-apply); 3 rows adopt cannot convert.`

// runAdopt is `invgen adopt`.
func runAdopt(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("invgen adopt", flag.ContinueOnError)
	fset.SetOutput(stderr)
	file := fset.String("f", "inventory.yaml", "the spec `FILE`")
	redisURL := fset.String("redis", envOr("INVGEN_REDIS_URL", "redis://127.0.0.1:6379/0"), redisURLHelp)
	oldRedis := fset.String("old-redis", "", "the Redis `URL` of inventory_manager's values (default: -redis)")
	dbURL := fset.String("db", "", dbFlagDoc)
	namespace := fset.String("namespace", "", "Redis `namespace` of invgen's state, replacing the spec's")
	apply := fset.Bool("apply", false, "convert; without it adopt only reports (a dry run)")
	timeout := fset.Duration("timeout", 30*time.Minute, "give up after this long")
	fset.Usage = func() {
		fmt.Fprintf(stderr, "Usage: invgen adopt [-f FILE] [-db DB] [-redis URL] [-old-redis URL] [-namespace NS] [-apply]\n\n%s\n\nFlags:\n", adoptDoc)
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fset.NArg() > 0 {
		fmt.Fprintf(stderr, "invgen adopt: unexpected argument %q\n", fset.Arg(0))
		return exitUsage
	}
	if *oldRedis == "" {
		*oldRedis = *redisURL
	}
	for _, u := range []string{*redisURL, *oldRedis} {
		if _, err := parseRedisURL(u); err != nil {
			fmt.Fprintf(stderr, "invgen adopt: %v\n", err)
			return exitUsage
		}
	}
	m, code := loadAdoptModel(*file, stderr)
	if code != exitOK {
		return code
	}
	if m.Engine == "sqlite" {
		fmt.Fprintf(stderr, "invgen adopt: inventory_manager ran on PostgreSQL or MySQL; %s uses engine sqlite\n", *file)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	db, err := openDB(ctx, m.Engine, *dbURL)
	if err != nil {
		fmt.Fprintf(stderr, "invgen adopt: %v\n", err)
		if errors.Is(err, errBadDB) {
			return exitUsage
		}
		return exitFail
	}
	defer db.close()
	old, err := openRedis(ctx, *oldRedis)
	if err != nil {
		fmt.Fprintf(stderr, "invgen adopt: -old-redis: %v\n", err)
		return exitFail
	}
	defer old.Close()

	adoptions := make([]adoption, len(m.Prefixes))
	for i, p := range m.Prefixes {
		adoptions[i] = adoption{ctx: ctx, db: db, m: m, p: p, old: old, out: stdout, ns: *namespace, dbURL: *dbURL, redisURL: *redisURL}
	}
	if *apply {
		// A prefix the database has no tables of is a spec or a -db that
		// names the wrong thing: -apply refuses before it changes anything.
		for _, a := range adoptions {
			missing, err := a.missing()
			if err != nil {
				fmt.Fprintf(stderr, "invgen adopt: %s: %v\n", a.p.Name, err)
				return exitFail
			}
			if missing {
				old, _ := generator.OldTables(a.p)
				fmt.Fprintf(stderr, "invgen adopt: %s: the database has no table %s (inventory_manager's) nor %s (kept by an earlier adopt): is the prefix's name the library's, and -db its database? nothing was changed\n",
					a.p.Name, a.p.ModTable, old)
				return exitUsage
			}
		}
	}
	result := exitOK
	for _, a := range adoptions {
		p := a.p
		plan, err := a.inspect()
		if err == nil && plan != nil && len(plan.blocking) > 0 {
			result = exitNo
			continue
		}
		if err == nil && plan != nil && *apply {
			err = a.convert(plan)
		}
		if err != nil {
			fmt.Fprintf(stderr, "invgen adopt: %s: %v\n", p.Name, err)
			return exitFail
		}
	}
	if !*apply && result == exitOK {
		fmt.Fprintln(stdout, "dry run: nothing was changed; run again with -apply to convert")
	}
	return result
}

// adoption is the adoption of one prefix.
type adoption struct {
	ctx context.Context
	db  ledgerDB
	m   *generator.Model
	p   *generator.Prefix
	old redis.UniversalClient
	out io.Writer
	// ns, dbURL and redisURL are where invgen's manager of the prefix
	// runs: its Redis namespace (empty: the spec's), ledger and Redis.
	ns, dbURL, redisURL string
}

// missing reports whether the database has neither the library's tables
// of the prefix nor the tables an earlier adopt kept.
func (a adoption) missing() (bool, error) {
	mod, err := a.columns(a.p.ModTable)
	if err != nil || len(mod) > 0 {
		return false, err
	}
	oldMod, _ := generator.OldTables(a.p)
	kept, err := a.columns(oldMod)
	return len(kept) == 0, err
}

// plan is what inspect found: where the rows are, and what they hold.
type plan struct {
	generator.Adoption
	// resume: an earlier -apply renamed the tables (MySQL) but copied
	// nothing; the rows are in the renamed tables.
	resume bool
	// converted: an earlier -apply converted the tables and copied the
	// rows, but stopped before the layout was recorded or Redis built.
	converted bool
	mod, use  map[string]itemSums
	blocking  []string
	// available is each item's stock per the old ledger: Σ modifications
	// + Σ usage, which invgen's ledger will say too.
	available map[string]int64
}

// itemSums is one item's rows in one old table.
type itemSums struct{ rows, sum, negative int64 }

// columns lists the columns of table (none when it does not exist).
func (a adoption) columns(table string) ([]string, error) {
	q, err := generator.AdoptSQL(a.m, a.p, generator.Adoption{}, table)
	if err != nil {
		return nil, err
	}
	rows, err := a.db.query(a.ctx, q["Columns"], table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		cols = append(cols, strings.ToLower(c))
	}
	return cols, rows.Err()
}

// inspect finds the prefix's old tables, reads them and the old Redis
// values, and prints its report. A nil plan means there is nothing to
// adopt.
func (a adoption) inspect() (*plan, error) {
	p := a.p
	pl := &plan{}
	pl.OldMod, pl.OldUsage = generator.OldTables(p)
	mod, err := a.columns(p.ModTable)
	if err != nil {
		return nil, err
	}
	kept, err := a.columns(pl.OldMod)
	if err != nil {
		return nil, err
	}
	src := [2]string{p.ModTable, p.UsageTable}
	switch {
	case len(mod) == 0 && len(kept) == 0:
		fmt.Fprintf(a.out, "%s: no tables of inventory_manager (%s): nothing to adopt (-apply refuses a prefix the database has no tables of)\n", p.Name, p.ModTable)
		return nil, nil
	case len(kept) > 0 && (len(mod) == 0 || slices.Contains(mod, "op_key")):
		// Renamed by an earlier -apply: done, stopped before the copy, or
		// stopped after it.
		copied, err := a.copied(pl, mod)
		if err != nil {
			return nil, err
		}
		if copied {
			return a.finished(pl)
		}
		pl.resume, src = true, [2]string{pl.OldMod, pl.OldUsage}
		mod = kept
	case slices.Contains(mod, "op_key"):
		fmt.Fprintf(a.out, "%s: %s is invgen's already: nothing to adopt\n", p.Name, p.ModTable)
		return nil, nil
	}
	for _, c := range []string{"id", "item_id", "delta"} {
		if !slices.Contains(mod, c) {
			return nil, fmt.Errorf("%s has no column %s: it is not a table of inventory_manager", src[0], c)
		}
	}
	usage, err := a.columns(src[1])
	if err != nil {
		return nil, err
	}
	if len(usage) == 0 {
		return nil, fmt.Errorf("%s exists but %s does not: inventory_manager creates both", src[0], src[1])
	}
	pl.CreateTime = slices.Contains(mod, "create_time") && slices.Contains(usage, "create_time")

	if pl.mod, err = a.sums(src[0], pl); err != nil {
		return nil, err
	}
	if pl.use, err = a.sums(src[1], pl); err != nil {
		return nil, err
	}
	var rowsMod, rowsUse int64
	items := map[string]bool{}
	for it, s := range pl.mod {
		items[it], rowsMod = true, rowsMod+s.rows
	}
	for it, s := range pl.use {
		items[it], rowsUse = true, rowsUse+s.rows
	}
	fmt.Fprintf(a.out, "%s: inventory_manager's %s (%d rows) and %s (%d rows), %d items\n",
		p.Name, src[0], rowsMod, src[1], rowsUse, len(items))
	if pl.resume {
		fmt.Fprintf(a.out, "  an earlier -apply renamed the tables and stopped: -apply copies them now\n")
	}

	codec := textCodec{keyType: p.Key, str: invrt.StringCodec{MaxLen: max(p.MaxKeyLen, 1)}}
	sorted := make([]string, 0, len(items))
	for it := range items {
		sorted = append(sorted, it)
	}
	sort.Strings(sorted)
	pl.available = map[string]int64{}
	var notes []string
	for _, it := range sorted {
		// The key's Redis form must be the id itself (up to the case of a
		// UUID), so that two old ids never become one item: "7" and "007"
		// are one int64.
		form, err := codec.Encode(itemKey(it))
		if err == nil && form != it && (p.Key != "uuid" || form != strings.ToLower(it)) {
			err = fmt.Errorf("its key would be %q", form)
		}
		if err != nil {
			pl.blocking = append(pl.blocking, fmt.Sprintf("item %q is not a %s key of %s as it is written: %v", it, p.Key, p.Name, err))
			continue
		}
		m, u := pl.mod[it], pl.use[it]
		pl.available[it] = m.sum + u.sum
		switch {
		case m.rows == 0:
			notes = append(notes, fmt.Sprintf("item %s: %d usage rows but no stock ever: kept in the ledger, not for sale until Init", it, u.rows))
			delete(pl.available, it)
		case u.sum > 0:
			notes = append(notes, fmt.Sprintf("item %s: %d more units returned than sold (the library did not check returns): the stock keeps them", it, u.sum))
		}
	}
	drift, err := a.oldRedis(pl, items)
	if err != nil {
		return nil, err
	}
	notes = append(notes, drift...)
	for _, b := range pl.blocking {
		fmt.Fprintf(a.out, "  cannot convert: %s\n", b)
	}
	for _, n := range notes {
		fmt.Fprintf(a.out, "  %s\n", n)
	}
	if len(pl.blocking) > 0 {
		fmt.Fprintf(a.out, "  %s is not converted: fix the rows above first\n", p.Name)
	}
	return pl, nil
}

// copied reports whether invgen's tables of the prefix exist and hold the
// rows of the kept ones: the copy is one transaction, so either invgen's
// tables hold rows or the copy did not commit (or had nothing to copy).
// mod is the columns of invgen's modification table (none: missing).
func (a adoption) copied(pl *plan, mod []string) (bool, error) {
	use, err := a.columns(a.p.UsageTable)
	if err != nil || !slices.Contains(mod, "op_key") || !slices.Contains(use, "op_key") {
		return false, err
	}
	var rows int64
	for _, t := range []string{a.p.ModTable, a.p.UsageTable, pl.OldMod, pl.OldUsage} {
		n, err := a.count(t)
		if err != nil {
			return false, err
		}
		rows += n
		if t == a.p.UsageTable && rows > 0 {
			return true, nil
		}
	}
	return rows == 0, nil
}

// finished checks the steps after the copy: the layout record and invgen's
// Redis state, which Audit compares with the ledger. It prints "adopted
// already" and returns nil when both are there, else a plan that finishes
// them.
func (a adoption) finished(pl *plan) (*plan, error) {
	p := a.p
	l, err := newSQLLedger(a.db, a.m, p)
	if err != nil {
		return nil, err
	}
	rec, found, err := l.LoadLayout(a.ctx)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table: no record
		found, err = false, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the layout record: %w", err)
	}
	var missing string
	if !found {
		missing = "its layout was recorded and invgen's Redis state built"
	} else {
		core, closeAll, err := openCore(a.ctx, a.m, p, a.ns, a.dbURL, a.redisURL)
		if err != nil {
			return nil, err
		}
		defer closeAll()
		if err := invrt.VerifyLayout(p.Name, core.Layout(), &rec); err != nil {
			return nil, err
		}
		rep, err := core.Audit(a.ctx)
		if err != nil {
			return nil, fmt.Errorf("audit invgen's Redis state: %w", err)
		}
		if len(rep.Drift) == 0 {
			fmt.Fprintf(a.out, "%s: adopted already: %d items, Redis as the ledger says (the old tables are kept as %s and %s)\n",
				p.Name, rep.Items, pl.OldMod, pl.OldUsage)
			return nil, nil
		}
		missing = fmt.Sprintf("invgen's Redis state was built (%d of %d items are not as the ledger says)", len(rep.Drift), rep.Items)
	}
	fmt.Fprintf(a.out, "%s: an earlier -apply converted the tables (the old ones are kept as %s and %s) and stopped before %s: -apply finishes it\n",
		p.Name, pl.OldMod, pl.OldUsage, missing)
	pl.converted = true
	return pl, nil
}

// count is the number of rows of table.
func (a adoption) count(table string) (n int64, err error) {
	err = a.db.queryRow(a.ctx, "SELECT COUNT(*) FROM "+table).Scan(&n)
	return n, err
}

// sums reads the rows of an old table, by item.
func (a adoption) sums(table string, pl *plan) (map[string]itemSums, error) {
	q, err := generator.AdoptSQL(a.m, a.p, pl.Adoption, table)
	if err != nil {
		return nil, err
	}
	var nulls int64
	if err := a.db.queryRow(a.ctx, q["Nulls"]).Scan(&nulls); err != nil {
		return nil, err
	}
	if nulls > 0 {
		pl.blocking = append(pl.blocking, fmt.Sprintf("%s has %d rows with a NULL item_id or delta", table, nulls))
	}
	rows, err := a.db.query(a.ctx, q["ItemSums"])
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]itemSums{}
	for rows.Next() {
		var item []byte
		var s itemSums
		if err := rows.Scan(&item, &s.rows, &s.sum, &s.negative); err != nil {
			return nil, err
		}
		out[string(item)] = s
	}
	return out, rows.Err()
}

// oldRedis compares the library's Redis values with the old ledger: the
// library's key is InventoryManager.<prefix>.<item>, a string holding the
// available count.
func (a adoption) oldRedis(pl *plan, items map[string]bool) ([]string, error) {
	base := "InventoryManager." + a.p.Name + "."
	var keys []string
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, base+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		return iter.Err()
	}
	var err error
	if cc, ok := a.old.(*redis.ClusterClient); ok {
		var mu sync.Mutex // ForEachMaster runs its function on every master at once
		err = cc.ForEachMaster(a.ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, c)
		})
	} else if c, ok := a.old.(*redis.Client); ok {
		err = scan(a.ctx, c)
	}
	if err != nil {
		return nil, fmt.Errorf("old Redis: %w", err)
	}
	sort.Strings(keys)
	var notes []string
	seen := map[string]bool{}
	for _, k := range keys {
		it := strings.TrimPrefix(k, base)
		seen[it] = true
		v, err := a.old.Get(a.ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("old Redis: %w", err)
		}
		n, perr := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		want, known := pl.available[it]
		switch {
		case perr != nil:
			notes = append(notes, fmt.Sprintf("item %s: the old Redis holds %q, not a count", it, v))
		case !items[it]:
			notes = append(notes, fmt.Sprintf("item %s: the old Redis holds %d but the ledger has no row of it (dropped: the ledger decides)", it, n))
		case !known:
		case n < 0:
			notes = append(notes, fmt.Sprintf("item %s: the old Redis holds %d, below zero (the library's oversell); the ledger says %d", it, n, want))
		case n != want:
			notes = append(notes, fmt.Sprintf("item %s: the old Redis holds %d, the ledger says %d (the library's drift; invgen takes the ledger's)", it, n, want))
		}
	}
	var missing []string
	for it := range pl.available {
		if !seen[it] {
			missing = append(missing, fmt.Sprintf("item %s: no value in the old Redis; the ledger says %d", it, pl.available[it]))
		}
	}
	sort.Strings(missing)
	return append(notes, missing...), nil
}

// convert applies pl: the tables, then the layout and invgen's Redis state.
func (a adoption) convert(pl *plan) error {
	p := a.p
	if pl.converted {
		return a.build(pl)
	}
	l, err := newSQLLedger(a.db, a.m, p)
	if err != nil {
		return err
	}
	q, err := generator.AdoptSQL(a.m, p, pl.Adoption, "")
	if err != nil {
		return err
	}
	switch pg, ok := a.db.(pgDB); {
	case ok:
		// One transaction: all of it, or nothing.
		steps := []string{q["RenameOld"], q["RenameOldUsage"]}
		if pl.resume {
			steps = nil
		}
		steps = append(steps, l.schema, q["CopyModification"], q["CopyUsage"], q["SyncModificationIDs"], q["SyncUsageIDs"])
		err = pgx.BeginFunc(a.ctx, pg.pool, func(tx pgx.Tx) error {
			for _, s := range steps {
				if _, err := tx.Exec(a.ctx, s); err != nil {
					return err
				}
			}
			return nil
		})
	default:
		// MySQL: DDL commits by itself. The rename of both tables is
		// atomic; a run stopped after it resumes here (pl.resume).
		if !pl.resume {
			if _, err = a.db.exec(a.ctx, q["RenameOld"]); err != nil {
				return err
			}
		}
		if err = l.CreateTables(a.ctx); err != nil {
			return err
		}
		err = a.copyInTx(q)
	}
	if err != nil {
		return fmt.Errorf("converting the tables (nothing of the copy is committed): %w", err)
	}
	fmt.Fprintf(a.out, "  converted: invgen's %s and %s hold every row; the old tables are kept as %s and %s\n",
		p.ModTable, p.UsageTable, pl.OldMod, pl.OldUsage)
	return a.build(pl)
}

// build records the prefix's layout and builds invgen's Redis state from
// the ledger, then checks it: each item against the old ledger's sums
// after a conversion of this run, every item against the ledger (Audit)
// when it finishes an earlier run's.
func (a adoption) build(pl *plan) error {
	core, closeAll, err := openCore(a.ctx, a.m, a.p, a.ns, a.dbURL, a.redisURL)
	if err != nil {
		return err
	}
	defer closeAll()
	if err := core.CreateTables(a.ctx); err != nil {
		return err
	}
	// A run killed while it built Redis leaves its items fenced until
	// their fences expire (seconds): those items are busy until then.
	ctx, bar := withItemProgress(a.ctx, a.out, false, "build Redis of "+a.p.Name)
	n, err := core.RefreshAll(ctx)
	for start := time.Now(); errors.Is(err, invrt.ErrBusy) && time.Since(start) < time.Minute; {
		select {
		case <-a.ctx.Done():
		case <-time.After(time.Second):
		}
		n, err = core.RefreshAll(ctx)
	}
	bar.finish()
	if err != nil {
		return fmt.Errorf("building Redis from the ledger: %w", err)
	}
	if pl.converted {
		rep, err := core.Audit(a.ctx)
		if err != nil {
			return fmt.Errorf("audit after the build: %w", err)
		}
		if len(rep.Drift) > 0 {
			d := rep.Drift[0]
			return fmt.Errorf("after the build %d items differ from the ledger (item %v: Redis %d, ledger %d + pending %d)", len(rep.Drift), d.Item, d.Redis, d.Ledger, d.Pending)
		}
		fmt.Fprintf(a.out, "  finished: the layout recorded, Redis built from the ledger: %d items, audited against it\n", n)
		return nil
	}
	for it, want := range pl.available {
		got, err := core.Get(a.ctx, itemKey(it))
		if err != nil {
			return fmt.Errorf("item %s after the build: %w", it, err)
		}
		if got != want {
			return fmt.Errorf("item %s: Redis holds %d after the build, the ledger %d", it, got, want)
		}
	}
	fmt.Fprintf(a.out, "  Redis built from the ledger: %d items, each checked against it\n", n)
	return nil
}

// copyInTx copies the old rows into invgen's (empty) tables in one
// transaction of the database/sql engine.
func (a adoption) copyInTx(q map[string]string) error {
	sq, ok := a.db.(sqlDB)
	if !ok {
		return errors.New("copyInTx needs a database/sql engine")
	}
	for _, t := range []string{a.p.ModTable, a.p.UsageTable} {
		if n, err := a.count(t); err != nil || n > 0 {
			if err == nil {
				err = fmt.Errorf("%s holds %d rows already; adopt copies into empty tables only", t, n)
			}
			return err
		}
	}
	tx, err := sq.db.BeginTx(a.ctx, nil)
	if err != nil {
		return sq.wrap(err)
	}
	defer tx.Rollback()
	for _, s := range []string{q["CopyModification"], q["CopyUsage"]} {
		if _, err := tx.ExecContext(a.ctx, s); err != nil {
			return sq.wrap(err)
		}
	}
	return sq.wrap(tx.Commit())
}

// loadAdoptModel loads the spec as loadModel does. Adopt writes no code, so
// a spec whose output directory is in no Go module is loaded as if it
// were in one: the import path it lacks is of no use here.
func loadAdoptModel(file string, stderr io.Writer) (*generator.Model, int) {
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "invgen: %v\n", err)
		return nil, exitFail
	}
	s, err := generator.Parse(file, data)
	abs, aerr := filepath.Abs(file)
	if err != nil || aerr != nil || !s.Output.Set || !filepath.IsLocal(filepath.FromSlash(s.Output.Value)) ||
		outputInModule(filepath.Join(filepath.Dir(abs), filepath.FromSlash(s.Output.Value))) {
		return loadModel(file, stderr)
	}
	tmp, err := os.MkdirTemp("", "invgen-adopt-")
	if err == nil {
		defer os.RemoveAll(tmp)
		err = os.WriteFile(filepath.Join(tmp, "go.mod"), []byte("module invgen.adopt\n"), 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "invgen: %v\n", err)
		return nil, exitFail
	}
	s.Path = filepath.Join(tmp, filepath.Base(file))
	m, err := generator.NewModel(s)
	var specErrs generator.Errors
	switch {
	case errors.As(err, &specErrs):
		for _, e := range specErrs {
			if e.File == s.Path {
				e.File = file
			}
			fmt.Fprintln(stderr, e)
		}
		return nil, exitUsage
	case err != nil:
		fmt.Fprintf(stderr, "invgen: %v\n", err)
		return nil, exitFail
	}
	m.SpecPath = file
	return m, exitOK
}

// outputInModule reports whether dir is in a Go module: a go.mod at or above it.
func outputInModule(dir string) bool {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return false
		}
		dir = parent
	}
}
