package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/go-sql-driver/mysql"
	_ "github.com/ncruces/go-sqlite3/driver" // database/sql driver "sqlite3"
	_ "github.com/ncruces/go-sqlite3/embed"  // the SQLite library

	mydrop "github.com/invgen/invgen/examples/engines/mysql/drop"
	myflashsale "github.com/invgen/invgen/examples/engines/mysql/flashsale"
	lidrop "github.com/invgen/invgen/examples/engines/sqlite/drop"
	liflashsale "github.com/invgen/invgen/examples/engines/sqlite/flashsale"
	invrt "github.com/invgen/invgen/runtime"
)

// The rows of the other engines: each with its own baseline, bare Lua and
// one INSERT on that database, measured in the same rounds.
const (
	nMySQLLimit  = "8. MariaDB sync limit: bare Lua + one INSERT"
	nMySQLSync   = "8. MariaDB sync Decr, generated manager"
	nMySQLStream = "8. MariaDB stream Decr + its flusher"
	nLiteLimit   = "9. SQLite sync limit: bare Lua + one INSERT"
	nLiteSync    = "9. SQLite sync Decr, generated manager"
	nLiteStream  = "9. SQLite stream Decr + its flusher"
)

// engineManager is what the engine rows use of a generated Manager.
type engineManager interface {
	CreateTables(ctx context.Context) error
	Init(ctx context.Context, id string, qty int64) error
	Decr(ctx context.Context, id string, n int64, opKey string) (invrt.Result, error)
	Close(ctx context.Context) error
}

type engineStream interface {
	engineManager
	RunFlusher(ctx context.Context, cfg invrt.FlusherConfig) error
	Flush(ctx context.Context) (int, error)
}

// engineDB is the database of one engine's rows.
type engineDB struct {
	name   string // as the table prints it
	db     *sql.DB
	limit  string // the baseline's table
	ddl    string // its CREATE TABLE
	sync   func() (engineManager, error)
	stream func() (engineStream, error)
	close  func()
}

// openEngines opens MariaDB (a database of the bench's own on
// INVGEN_MYSQL_URL) and SQLite (a file of its own) for the engine rows.
func (b *bench) openEngines(ctx context.Context) ([]*engineDB, error) {
	cfg, err := mysql.ParseDSN(env("INVGEN_MYSQL_URL", "root@tcp(127.0.0.1:3306)/test"))
	if err != nil {
		return nil, err
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	_, err = admin.ExecContext(ctx, "DROP DATABASE IF EXISTS invgen_bench")
	if err == nil {
		_, err = admin.ExecContext(ctx, "CREATE DATABASE invgen_bench")
	}
	admin.Close()
	if err != nil {
		return nil, fmt.Errorf("MariaDB: %w", err)
	}
	cfg.DBName = "invgen_bench"
	my, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	my.SetMaxOpenConns(buyers)
	my.SetMaxIdleConns(buyers)
	dir, err := os.MkdirTemp("", "invgen-bench-")
	if err != nil {
		return nil, err
	}
	// SQLite as docs/engines.md advises: WAL, a busy timeout, one connection.
	lite, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "ledger.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)")
	if err != nil {
		return nil, err
	}
	lite.SetMaxOpenConns(1)
	opts := []invrt.Option{invrt.WithNamespace(namespace)}
	return []*engineDB{
		{name: "MariaDB", db: my, limit: "bench_my_usage",
			ddl:    "CREATE TABLE bench_my_usage (id INTEGER PRIMARY KEY AUTO_INCREMENT, item_id VARCHAR(64) NOT NULL, delta BIGINT NOT NULL, op_key VARCHAR(128) NOT NULL, UNIQUE (item_id, op_key))",
			sync:   func() (engineManager, error) { return myflashsale.New(my, b.rdb, opts...) },
			stream: func() (engineStream, error) { return mydrop.New(my, b.rdb, opts...) },
			close:  func() { my.Close() }},
		{name: "SQLite", db: lite, limit: "bench_lite_usage",
			ddl:    "CREATE TABLE bench_lite_usage (id INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL, delta INTEGER NOT NULL, op_key TEXT NOT NULL, UNIQUE (item_id, op_key))",
			sync:   func() (engineManager, error) { return liflashsale.New(lite, b.rdb, opts...) },
			stream: func() (engineStream, error) { return lidrop.New(lite, b.rdb, opts...) },
			close:  func() { lite.Close(); os.RemoveAll(dir) }},
	}, nil
}

// engineSteps are the rows of e: its baseline, sync Decr and stream Decr.
func (b *bench) engineSteps(e *engineDB, names [3]string) []step {
	return []step{
		{name: names[0], run: func() (result, error) { return b.engineLimit(e, names[0]) }},
		{name: names[1], run: func() (result, error) { return b.engineSync(e, names[1]) }},
		{name: names[2], run: func() (result, error) { return b.engineStream(e, names[2]) }},
	}
}

// engineLimit is the sync limit on e's database: the bare Lua, then one
// INSERT of a usage row with a unique op key.
func (b *bench) engineLimit(e *engineDB, name string) (result, error) {
	ctx := context.Background()
	for _, q := range []string{"DROP TABLE IF EXISTS " + e.limit, e.ddl} {
		if _, err := e.db.ExecContext(ctx, q); err != nil {
			return result{name: name}, err
		}
	}
	key := namespace + ":{" + e.limit + "}:hot"
	b.rdb.Set(ctx, key, bigStock, 0)
	ops, err := b.hammer(func(ctx context.Context, seq int64) error {
		if err := bareLua.Run(ctx, b.rdb, []string{key}, 1).Err(); err != nil {
			return err
		}
		_, err := e.db.ExecContext(ctx, "INSERT INTO "+e.limit+" (item_id, delta, op_key) VALUES (?, ?, ?)", "hot", -1, strconv.FormatInt(seq, 10))
		return err
	})
	return result{name: name, ops: ops, note: "hand-written, no idempotency in Redis"}, err
}

// engineFresh empties a prefix's tables on e and the bench's Redis keys.
func (b *bench) engineFresh(ctx context.Context, e *engineDB, tables ...string) error {
	for _, t := range tables {
		if _, err := e.db.ExecContext(ctx, "DELETE FROM "+t); err != nil {
			return err
		}
	}
	return clear(ctx, b.rdb)
}

// prepare creates m's tables, empties them (prefix's) and Redis, and
// stocks the hot SKU.
func (b *bench) prepare(ctx context.Context, e *engineDB, m engineManager, prefix string) error {
	if err := m.CreateTables(ctx); err != nil {
		return err
	}
	if err := b.engineFresh(ctx, e, prefix+"_inventory_modification_record", prefix+"_inventory_usage_record"); err != nil {
		return err
	}
	return m.Init(ctx, "hot", bigStock)
}

func (b *bench) engineSync(e *engineDB, name string) (result, error) {
	ctx := context.Background()
	m, err := e.sync()
	if err != nil {
		return result{name: name}, err
	}
	defer m.Close(ctx)
	if err := b.prepare(ctx, e, m, "flash_sale"); err != nil {
		return result{name: name}, err
	}
	ops, err := b.hammer(func(ctx context.Context, seq int64) error {
		_, err := m.Decr(ctx, "hot", 1, strconv.FormatInt(seq, 10))
		return err
	})
	return result{name: name, ops: ops, note: "returns after the usage row is committed"}, err
}

func (b *bench) engineStream(e *engineDB, name string) (result, error) {
	ctx := context.Background()
	m, err := e.stream()
	if err != nil {
		return result{name: name}, err
	}
	defer m.Close(ctx)
	if err := b.prepare(ctx, e, m, "drop"); err != nil {
		return result{name: name}, err
	}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.RunFlusher(fctx, invrt.FlusherConfig{}) }()
	ops, err := b.hammer(func(ctx context.Context, seq int64) error {
		_, err := m.Decr(ctx, "hot", 1, strconv.FormatInt(seq, 10))
		return err
	})
	stop()
	if ferr := <-done; err == nil && ferr != nil && ferr != context.Canceled {
		err = ferr
	}
	return result{name: name, ops: ops, note: "the flusher writes batches beside the buyers"}, err
}
