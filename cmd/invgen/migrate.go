package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invgen/invgen/generator"
	invrt "github.com/invgen/invgen/runtime"
)

const migrateDoc = `Migrate brings the ledger database to the spec. For each prefix whose tables
are missing it creates them and records the prefix's layout (what the
application's CreateTables does), and counts the prefix's migrations as
applied. For a prefix whose tables exist it applies, in order and each in a
transaction of its own, the migrations in <package>/migrations/ that it has
not applied yet: invgen generate writes one when the spec changes the
prefix's key type or key length. The table invgen_migrations records what
was applied. With -dry-run it prints what it would do. On the mysql and
sqlite engines it creates what is missing; their key columns have no
migrations (invgen generate refuses to change them). On a terminal it shows
its progress over a prefix's migrations (done of total, time left).`

// migrationsTable records the migrations applied, per prefix.
const migrationsTable = `CREATE TABLE IF NOT EXISTS invgen_migrations (
    prefix     text        NOT NULL,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (prefix, name)
)`

// runMigrate is `invgen migrate`.
func runMigrate(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("invgen migrate", flag.ContinueOnError)
	fset.SetOutput(stderr)
	file := fset.String("f", "inventory.yaml", "the spec `FILE`")
	dbURL := fset.String("db", "", dbFlagDoc)
	namespace := fset.String("namespace", "", "Redis `namespace` the layout of new tables records, replacing the spec's")
	dry := fset.Bool("dry-run", false, "print what would be done, and do nothing")
	fset.Usage = func() {
		fmt.Fprintf(stderr, "Usage: invgen migrate [-f FILE] [-db DB] [-namespace NS] [-dry-run]\n\n%s\n\nFlags:\n", migrateDoc)
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fset.NArg() > 0 {
		fmt.Fprintf(stderr, "invgen migrate: unexpected argument %q\n", fset.Arg(0))
		return exitUsage
	}
	if err := checkNamespace(*namespace); err != nil {
		fmt.Fprintf(stderr, "invgen migrate: %v\n", err)
		return exitUsage
	}
	m, code := loadModel(*file, stderr)
	if code != exitOK {
		return code
	}
	ns := m.Namespace
	if *namespace != "" {
		ns = *namespace
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	mode := dbCreate
	if *dry {
		mode = dbRead
	}
	db, err := openLedger(ctx, m.Engine, *dbURL, mode)
	if *dry && m.Engine == "sqlite" && err != nil && !errors.Is(err, errBadDB) && sqliteMissing(*dbURL) {
		// A dry run creates no file: the tables of every prefix are
		// missing.
		for _, p := range m.Prefixes {
			fmt.Fprintf(stdout, "%s: create its tables (layout %s)\n", p.Name, invrt.Layout{Namespace: ns, Shards: p.Shards, Ledger: p.Ledger, KeyType: p.Key, MaxKeyLen: p.MaxKeyLen})
		}
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "invgen migrate: %v\n", err)
		if errors.Is(err, errBadDB) {
			return exitUsage
		}
		return exitFail
	}
	defer db.close()
	pg, isPG := db.(pgDB)
	if !isPG {
		// The mysql and sqlite engines: create what is missing; key
		// migrations are PostgreSQL's only (CheckMigrations).
		for _, p := range m.Prefixes {
			if err := createPrefix(ctx, db, m, p, ns, *dry, stdout); err != nil {
				fmt.Fprintf(stderr, "invgen migrate: %s: %v\n", p.Name, err)
				return exitFail
			}
		}
		return exitOK
	}
	pool := pg.pool
	if !*dry {
		if _, err := pool.Exec(ctx, migrationsTable); err != nil {
			fmt.Fprintf(stderr, "invgen migrate: %v\n", err)
			return exitFail
		}
	}
	for _, p := range m.Prefixes {
		if err := migratePrefix(ctx, pool, m, p, ns, *dry, stdout); err != nil {
			fmt.Fprintf(stderr, "invgen migrate: %s: %v\n", p.Name, err)
			return exitFail
		}
	}
	return exitOK
}

// createPrefix creates the tables of p, and records its layout, when they
// are missing (the mysql and sqlite engines).
func createPrefix(ctx context.Context, db ledgerDB, m *generator.Model, p *generator.Prefix, ns string, dry bool, out io.Writer) error {
	l, err := newSQLLedger(db, m, p)
	if err != nil {
		return err
	}
	exists, err := l.TablesInitialized(ctx)
	if err != nil || exists {
		if err == nil {
			fmt.Fprintf(out, "%s: up to date\n", p.Name)
		}
		return err
	}
	lay := invrt.Layout{Namespace: ns, Shards: p.Shards, Ledger: p.Ledger, KeyType: p.Key, MaxKeyLen: p.MaxKeyLen}
	fmt.Fprintf(out, "%s: create its tables (layout %s)\n", p.Name, lay)
	if dry {
		return nil
	}
	if err := l.CreateTables(ctx); err != nil {
		return err
	}
	_, err = l.RecordLayout(ctx, lay)
	return err
}

func migratePrefix(ctx context.Context, pool *pgxpool.Pool, m *generator.Model, p *generator.Prefix, ns string, dry bool, out io.Writer) error {
	l, err := newSQLLedger(pgDB{pool}, m, p)
	if err != nil {
		return err
	}
	names, err := generator.Migrations(m.OutDir, p)
	if err != nil {
		return err
	}
	exists, err := l.TablesInitialized(ctx)
	if err != nil {
		return err
	}
	if !exists {
		fmt.Fprintf(out, "%s: create its tables (layout %s)\n", p.Name, invrt.Layout{Namespace: ns, Shards: p.Shards, Ledger: p.Ledger, KeyType: p.Key, MaxKeyLen: p.MaxKeyLen})
		if dry {
			return nil
		}
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, l.schema); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, l.q["RecordLayout"], ns, p.Shards, p.Ledger, p.Key, p.MaxKeyLen); err != nil {
				return err
			}
			// The tables are made as the spec says now: its migrations
			// are history.
			for _, name := range names {
				if _, err := tx.Exec(ctx, "INSERT INTO invgen_migrations (prefix, name) VALUES ($1, $2) ON CONFLICT DO NOTHING", p.Name, name); err != nil {
					return err
				}
			}
			return nil
		})
	}
	applied := map[string]bool{}
	// A dry run creates nothing: without the table, nothing was applied.
	var recorded bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('invgen_migrations') IS NOT NULL").Scan(&recorded); err != nil {
		return err
	}
	if recorded {
		rows, err := pool.Query(ctx, "SELECT name FROM invgen_migrations WHERE prefix = $1", p.Name)
		if err != nil {
			return err
		}
		done, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, n := range done {
			applied[n] = true
		}
	}
	var pending []string
	for _, name := range names {
		if !applied[name] {
			pending = append(pending, name)
		}
	}
	var bar *progress
	if !dry {
		bar = newProgress(out, false, int64(len(pending)), "migrate "+p.Name, "migrations")
		defer bar.finish()
	}
	for _, name := range pending {
		bar.clear()
		fmt.Fprintf(out, "%s: apply %s\n", p.Name, name)
		if dry {
			continue
		}
		data, err := os.ReadFile(filepath.Join(m.OutDir, filepath.FromSlash(p.Dir), generator.MigrationsDir, name))
		if err != nil {
			return err
		}
		up, err := generator.UpSQL(data)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if err := checkKeysFit(ctx, tx, p, name); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, up); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO invgen_migrations (prefix, name) VALUES ($1, $2)", p.Name, name)
			return err
		})
		if err != nil {
			return fmt.Errorf("%s (nothing of it applied): %w", name, err)
		}
		bar.add(1)
	}
	if len(pending) == 0 {
		fmt.Fprintf(out, "%s: up to date\n", p.Name)
	}
	return nil
}

// sqliteMissing reports whether the SQLite ledger file at dsn ("" for
// defaultDB) is not there.
func sqliteMissing(dsn string) bool {
	if dsn == "" {
		dsn = defaultDB("sqlite")
	}
	_, err := os.Stat(dsn)
	return errors.Is(err, fs.ErrNotExist)
}

// keyMigrationName is the name generate gives a migration of the key
// column: NNNN_<prefix>_key_<old>_to_<new>.sql.
var keyMigrationName = regexp.MustCompile(`^\d+_.+_key_[a-z0-9]+_to_string(\d+)\.sql$`)

// checkKeysFit refuses, in the migration's transaction, a migration of
// p's key column to a string no key of its tables fits (in bytes, as the
// runtime counts). The migrations generate writes check it themselves;
// this also stops one written by an older invgen, whose explicit cast
// PostgreSQL would truncate each longer key with, making it another item.
func checkKeysFit(ctx context.Context, tx pgx.Tx, p *generator.Prefix, name string) error {
	m := keyMigrationName.FindStringSubmatch(name)
	if m == nil {
		return nil
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return nil
	}
	var key string
	err = tx.QueryRow(ctx, "SELECT item_id::text FROM (SELECT item_id FROM "+p.ModTable+" UNION ALL SELECT item_id FROM "+p.UsageTable+
		") AS keys WHERE octet_length(item_id::text) > $1 LIMIT 1", n).Scan(&key)
	switch {
	case isNoRows(err):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("item key %s of prefix %s is %d bytes long, over the new max_key_len %d: nothing is changed; remove or rename the items whose keys are longer first", key, p.Name, len(key), n)
}
