// Package testenv connects tests to the real Redis and PostgreSQL they run
// against, each test in a namespace and schema of its own.
//
// Addresses come from INVGEN_REDIS_URL and INVGEN_DATABASE_URL, defaulting to
// the local servers on their standard ports. A missing server fails the
// test: these tests never skip, under CI=true or anywhere else. `make
// services` starts (or installs) the servers.
package testenv

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Default addresses of the local servers.
const (
	DefaultRedisURL    = "redis://127.0.0.1:6379/0"
	DefaultDatabaseURL = "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable"
)

// RedisURL returns INVGEN_REDIS_URL or the default.
func RedisURL() string { return env("INVGEN_REDIS_URL", DefaultRedisURL) }

// DatabaseURL returns INVGEN_DATABASE_URL or the default.
func DatabaseURL() string { return env("INVGEN_DATABASE_URL", DefaultDatabaseURL) }

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Redis returns a client of the test Redis; it fails the test when Redis
// does not answer.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("INVGEN_REDIS_URL: %v", err)
	}
	opt.PoolSize = 128
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s does not answer (%v); start it with `make services`", RedisURL(), err)
	}
	return rdb
}

// Namespace returns a Redis namespace no other test uses, and deletes its
// keys when the test ends. It never flushes the server.
func Namespace(t testing.TB, rdb redis.UniversalClient) string {
	t.Helper()
	ns := "t" + strings.ToLower(rand.Text()[:12])
	t.Cleanup(func() { DeleteKeys(context.Background(), rdb, ns) })
	return ns
}

// DeleteKeys deletes every key of namespace ns.
func DeleteKeys(ctx context.Context, rdb redis.UniversalClient, ns string) error {
	iter := rdb.Scan(ctx, 0, ns+":*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}

// Keys lists the keys of namespace ns.
func Keys(ctx context.Context, rdb redis.UniversalClient, ns string) ([]string, error) {
	return rdb.Keys(ctx, ns+":*").Result()
}

// Pool returns a pool whose connections work in a new, empty schema of
// their own, dropped when the test ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return PoolIn(t, newSchema(t))
}

// newSchema creates an empty schema, dropped when the test ends.
func newSchema(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, DatabaseURL())
	if err != nil {
		t.Fatalf("PostgreSQL at %s does not answer (%v); start it with `make services`", DatabaseURL(), err)
	}
	defer admin.Close(ctx)
	schema := "t_" + strings.ToLower(rand.Text()[:12])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, DatabaseURL())
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// PoolIn returns a pool whose connections work in an existing schema (a
// child process joins its parent's schema with it).
func PoolIn(t testing.TB, schema string) *pgxpool.Pool {
	t.Helper()
	return PoolInWith(t, schema, func(*pgxpool.Config) {})
}

// PoolInWith is PoolIn with the pool's configuration changed by tune
// first (a pool of one connection, for tests of pool pressure).
func PoolInWith(t testing.TB, schema string, tune func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(DatabaseURL())
	if err != nil {
		t.Fatalf("INVGEN_DATABASE_URL: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 32
	tune(cfg)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Schema returns the schema a pool of Pool or PoolIn works in.
func Schema(pool *pgxpool.Pool) string {
	return pool.Config().ConnConfig.RuntimeParams["search_path"]
}

// Context returns a context that ends with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Sum runs a query that returns one bigint and returns it.
func Sum(t testing.TB, pool *pgxpool.Pool, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// Must fails the test on err.
func Must(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

// PoolWith returns a pool in a new schema of its own (dropped when the test
// ends), its configuration changed by tune first.
func PoolWith(t testing.TB, tune func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	return PoolInWith(t, newSchema(t), tune)
}
