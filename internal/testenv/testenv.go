// Package testenv connects tests to the real Redis and PostgreSQL they run
// against, each test in a namespace and schema of its own.
//
// Addresses come from INVGEN_REDIS_URL and INVGEN_DATABASE_URL, defaulting to
// the local servers on their standard ports. INVGEN_REDIS_CLUSTER (seed
// addresses, comma-separated) runs the Redis side on a Redis Cluster
// instead; StartCluster starts a cluster of a test's own, for failovers. A missing server fails the
// test: these tests never skip, under CI=true or anywhere else. `make
// services` starts (or installs) the servers.
package testenv

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"sync"
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

// ClusterSeeds returns the seed addresses (host:port) of INVGEN_REDIS_CLUSTER,
// or nil when it is not set.
func ClusterSeeds() []string {
	var seeds []string
	for _, s := range strings.Split(os.Getenv("INVGEN_REDIS_CLUSTER"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	return seeds
}

// Cluster reports whether the tests run against a Redis Cluster: whether
// INVGEN_REDIS_CLUSTER is set (`scripts/cluster.sh start` prints its value).
func Cluster() bool { return len(ClusterSeeds()) > 0 }

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// NewRedis returns a client of the test Redis without checking that it
// answers, for code that has no testing.TB (a child process): a
// *redis.ClusterClient of the seeds of INVGEN_REDIS_CLUSTER when it is set,
// else a *redis.Client of INVGEN_REDIS_URL.
func NewRedis(poolSize int) (redis.UniversalClient, error) {
	if seeds := ClusterSeeds(); len(seeds) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: seeds, PoolSize: poolSize}), nil
	}
	opt, err := redis.ParseURL(RedisURL())
	if err != nil {
		return nil, fmt.Errorf("INVGEN_REDIS_URL: %w", err)
	}
	opt.PoolSize = poolSize
	return redis.NewClient(opt), nil
}

// Redis returns a client of the test Redis: a *redis.ClusterClient when
// INVGEN_REDIS_CLUSTER is set, else a *redis.Client of INVGEN_REDIS_URL. It
// fails the test when Redis does not answer, or when a node of the cluster
// does not report cluster_state:ok.
func Redis(t testing.TB) redis.UniversalClient {
	t.Helper()
	rdb, err := NewRedis(128)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s does not answer (%v); start it with `make services`", redisWhere(), err)
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err := cc.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error {
			info, err := node.ClusterInfo(ctx).Result()
			if err != nil {
				return fmt.Errorf("%s: %w", node.Options().Addr, err)
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("%s does not report cluster_state:ok", node.Options().Addr)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Redis Cluster at %s is not ok (%v); start it with `make services`", redisWhere(), err)
		}
	}
	return rdb
}

func redisWhere() string {
	if seeds := ClusterSeeds(); len(seeds) > 0 {
		return strings.Join(seeds, ",")
	}
	return RedisURL()
}

// Namespace returns a Redis namespace no other test uses, and deletes its
// keys when the test ends. It never flushes the server.
func Namespace(t testing.TB, rdb redis.UniversalClient) string {
	t.Helper()
	ns := "t" + strings.ToLower(rand.Text()[:12])
	t.Cleanup(func() { DeleteKeys(context.Background(), rdb, ns) })
	return ns
}

// DeleteKeys deletes every key of namespace ns. On a cluster it scans every
// master and unlinks the keys one at a time: one UNLINK of keys in
// different slots fails with CROSSSLOT.
func DeleteKeys(ctx context.Context, rdb redis.UniversalClient, ns string) error {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return deleteKeys(ctx, node, ns, true)
		})
	}
	return deleteKeys(ctx, rdb, ns, false)
}

// deleteKeys deletes the keys of ns that one server holds, in batches of
// 500: one UNLINK of them all, or one UNLINK per key in a pipeline.
func deleteKeys(ctx context.Context, rdb redis.Cmdable, ns string, oneByOne bool) error {
	unlink := func(keys []string) error {
		if !oneByOne {
			return rdb.Unlink(ctx, keys...).Err()
		}
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Unlink(ctx, k)
			}
			return nil
		})
		return err
	}
	iter := rdb.Scan(ctx, 0, ns+":*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := unlink(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		if err := unlink(batch); err != nil {
			return err
		}
	}
	return iter.Err()
}

// Keys lists the keys of namespace ns; on a cluster, those of every master.
func Keys(ctx context.Context, rdb redis.UniversalClient, ns string) ([]string, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.Keys(ctx, ns+":*").Result()
	}
	var (
		mu  sync.Mutex
		all []string
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, err := node.Keys(ctx, ns+":*").Result()
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
		return err
	})
	return all, err
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
