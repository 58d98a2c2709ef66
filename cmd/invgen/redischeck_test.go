package main

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/internal/testenv"
)

// startEvictingRedis starts a redis-server of the test's own whose
// maxmemory-policy is allkeys-lru, and returns its URL.
func startEvictingRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	testenv.Must(t, err, "redis-server (install it with `make services`)")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err, "listen")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	testenv.Must(t, cmd.Start(), "start redis-server")
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for i := 0; rdb.Ping(context.Background()).Err() != nil; i++ {
		if i == 100 {
			t.Fatalf("redis-server on port %d did not start", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "redis://" + addr + "/0"
}

// TestAdminRedis: `invgen admin redis` reports each server's eviction
// policy and persistence and what they guarantee for the prefix's ledger
// mode; a server that may evict keys exits 3, and the other verbs are
// refused on it (ErrUnsafeRedis).
func TestAdminRedis(t *testing.T) {
	rdb, pool := testenv.Redis(t), testenv.Pool(t)
	ns := testenv.Namespace(t, rdb)
	flags := adminFlags(t, testenv.Schema(pool), ns)
	admin := func(code int, args ...string) result {
		t.Helper()
		return invgen(t, append(append([]string{}, flags...), args...)...).want(t, code)
	}
	r := admin(exitOK, "redis", "flash_sale")
	if !strings.Contains(r.stdout, "noeviction") || !strings.Contains(r.stdout, "sync ledger:") || !strings.Contains(r.stdout, "safe") {
		t.Errorf("redis on the test's Redis:\n%s", r.stdout)
	}
	r = admin(exitOK, "-json", "redis", "drop")
	var rows []redisRow
	testenv.Must(t, json.Unmarshal([]byte(r.stdout), &rows), "redis -json %q", r.stdout)
	if len(rows) == 0 || rows[0].Policy != "noeviction" || rows[0].Verdict != "safe" || !strings.Contains(rows[0].Guarantee, "stream ledger") {
		t.Errorf("redis -json of a stream prefix = %+v", rows)
	}

	url := startEvictingRedis(t)
	r = admin(exitNo, "-redis", url, "redis", "flash_sale")
	if !strings.Contains(r.stdout, "allkeys-lru") || !strings.Contains(r.stdout, "refused") || !strings.Contains(r.stdout, "UNSAFE") {
		t.Errorf("redis on an evicting Redis:\n%s\n%s", r.stdout, r.stderr)
	}
	sale, err := flashsale.New(pool, rdb, flashsale.WithNamespace(ns))
	testenv.Must(t, err, "New")
	testenv.Must(t, sale.CreateTables(context.Background()), "CreateTables")
	testenv.Must(t, sale.Init(context.Background(), "sku-1", 5), "Init")
	r = admin(exitFail, "-redis", url, "get", "flash_sale", "sku-1")
	if !strings.Contains(r.stderr, "unsafe redis") {
		t.Errorf("get on an evicting Redis: %s", r.stderr)
	}
}
