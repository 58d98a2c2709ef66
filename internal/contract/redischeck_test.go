package contract

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/internal/testenv"
	"github.com/invgen/invgen/metrics"
	invrt "github.com/invgen/invgen/runtime"
)

// startRedisWith starts a redis-server of the test's own, keeping nothing
// on disk, with the extra arguments args, and returns a client of it.
func startRedisWith(t *testing.T, args ...string) *redis.Client {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	testenv.Must(t, err, "redis-server (install it with `make services`)")
	port := freePort(t)
	dir := t.TempDir()
	all := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log")}, args...)
	cmd := exec.Command(bin, all...)
	testenv.Must(t, cmd.Start(), "start redis-server")
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	rdb := redisThrough(t, "127.0.0.1:"+strconv.Itoa(port))
	for i := 0; rdb.Ping(context.Background()).Err() != nil; i++ {
		if i == 100 {
			t.Fatalf("redis-server on port %d did not start", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return rdb
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gauge returns the value of the gauge name with the labels want, and
// whether the registry has it.
func gauge(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	testenv.Must(t, err, "gather")
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestEvictingRedisIsRefused: a Redis whose maxmemory-policy may evict keys
// (allkeys-*, and volatile-*, which evicts invgen's op records: they are
// the keys with a TTL) is refused at its first use with ErrUnsafeRedis,
// and nothing of the prefix is written to it; once its policy is
// noeviction, it serves. The policy is read through INFO when CONFIG is
// renamed away.
func TestEvictingRedisIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"allkeys-lru", []string{"--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"}},
		{"volatile-ttl", []string{"--maxmemory", "100mb", "--maxmemory-policy", "volatile-ttl"}},
		{"volatile-lru without maxmemory", []string{"--maxmemory-policy", "volatile-lru"}},
		{"config renamed", []string{"--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lfu", "--rename-command", "CONFIG", "CONFIG-" + strconv.Itoa(freePort(t))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := startRedisWith(t, tc.args...)
			f := stringFixtureOn(t, rdb)
			ctx := ctxT(t)
			err := f.m.Init(ctx, "sku-1", 10)
			if !errors.Is(err, invrt.ErrUnsafeRedis) {
				t.Fatalf("Init on a Redis with %v: %v, want ErrUnsafeRedis", tc.args, err)
			}
			t.Logf("Init: %v", err)
			if _, err := f.m.Decr(ctx, "sku-1", 1, "o1"); !errors.Is(err, invrt.ErrUnsafeRedis) {
				t.Errorf("Decr: %v, want ErrUnsafeRedis", err)
			}
			if _, err := f.m.Get(ctx, "sku-1"); !errors.Is(err, invrt.ErrUnsafeRedis) {
				t.Errorf("Get: %v, want ErrUnsafeRedis", err)
			}
			keys, err := testenv.Keys(ctx, rdb, f.ns)
			testenv.Must(t, err, "keys")
			if len(keys) > 0 {
				t.Errorf("the refused Redis holds keys of the prefix: %v", keys)
			}
			if tc.name == "config renamed" {
				return
			}
			// Fixed: it serves, within the recheck interval.
			testenv.Must(t, rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(), "config set")
			var r invrt.Result
			for i := 0; ; i++ {
				r, err = f.m.Decr(ctx, "sku-1", 1, "o1")
				if !errors.Is(err, invrt.ErrUnsafeRedis) || i == 40 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil || r.Available != 9 {
				t.Fatalf("Decr once the policy is noeviction: %+v, %v; want 9 left", r, err)
			}
		})
	}
}

// TestEvictionAllowedWarns: with WithEvictionAllowed a Redis that may evict
// serves, and the manager says so through its logger (a warning) and its
// observer (invgen_redis_unsafe{reason="eviction_allowed"} = 1).
func TestEvictionAllowedWarns(t *testing.T) {
	rdb := startRedisWith(t, "--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru")
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	obs, err := metrics.New(reg)
	testenv.Must(t, err, "metrics")
	f := stringFixtureOn(t, rdb, invrt.WithEvictionAllowed(),
		invrt.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), invrt.WithObserver(obs))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "sku-1", 10), "Init")
	r, err := f.m.Decr(ctx, "sku-1", 3, "o1")
	if err != nil || r.Available != 7 {
		t.Fatalf("Decr = %+v, %v; want 7 left", r, err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "maxmemory_policy=allkeys-lru") {
		t.Errorf("no warning about the evicting policy in the log:\n%s", logs.String())
	}
	server := rdb.Options().Addr
	if v, ok := gauge(t, reg, "invgen_redis_unsafe", map[string]string{"prefix": "flash_sale", "server": server, "reason": "eviction_allowed"}); !ok || v != 1 {
		t.Errorf("invgen_redis_unsafe{reason=eviction_allowed} = %v (present %v), want 1", v, ok)
	}
}

// TestUncheckableRedisWarns: a Redis that answers neither CONFIG nor INFO
// (renamed away, as on some managed services) is used, with a warning
// that its policy could not be checked, and invgen_redis_unsafe{reason=
// "unchecked"} = 1.
func TestUncheckableRedisWarns(t *testing.T) {
	salt := strconv.Itoa(freePort(t))
	rdb := startRedisWith(t, "--rename-command", "CONFIG", "CONFIG-"+salt, "--rename-command", "INFO", "INFO-"+salt)
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	obs, err := metrics.New(reg)
	testenv.Must(t, err, "metrics")
	f := stringFixtureOn(t, rdb, invrt.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), invrt.WithObserver(obs))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "sku-1", 10), "Init")
	if _, err := f.m.Decr(ctx, "sku-1", 1, "o1"); err != nil {
		t.Fatalf("Decr: %v", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "could not check") {
		t.Errorf("no warning that the policy could not be checked:\n%s", logs.String())
	}
	if v, ok := gauge(t, reg, "invgen_redis_unsafe", map[string]string{"server": rdb.Options().Addr, "reason": "unchecked"}); !ok || v != 1 {
		t.Errorf("invgen_redis_unsafe{reason=unchecked} = %v (present %v), want 1", v, ok)
	}
}

// TestNoEvictionRedisPassesOnce: a noeviction Redis serves, and is checked
// once per server per manager, not per call: its CONFIG GET count does
// not move during the purchases after the first.
func TestNoEvictionRedisPassesOnce(t *testing.T) {
	rdb := startRedisWith(t, "--maxmemory", "100mb", "--maxmemory-policy", "noeviction")
	reg := prometheus.NewRegistry()
	obs, err := metrics.New(reg)
	testenv.Must(t, err, "metrics")
	f := stringFixtureOn(t, rdb, invrt.WithObserver(obs))
	ctx := ctxT(t)
	configGets := func() int64 {
		info, err := rdb.Info(ctx, "commandstats").Result()
		testenv.Must(t, err, "info")
		for _, line := range strings.Split(info, "\r\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_config|get:calls="); ok {
				n, _, _ := strings.Cut(rest, ",")
				v, err := strconv.ParseInt(n, 10, 64)
				testenv.Must(t, err, "calls")
				return v
			}
		}
		return 0
	}
	testenv.Must(t, f.m.Init(ctx, "sku-1", 1000), "Init")
	first := configGets()
	if first == 0 {
		t.Fatalf("the manager used the server without reading its configuration")
	}
	for i := range 100 {
		if _, err := f.m.Decr(ctx, "sku-1", 1, fmt.Sprintf("o%d", i)); err != nil {
			t.Fatalf("Decr #%d: %v", i, err)
		}
	}
	if n := configGets(); n != first {
		t.Errorf("CONFIG GET ran %d times during 100 purchases; the check is once per server", n-first)
	}
	for _, reason := range []string{"eviction_allowed", "unchecked", "refused"} {
		if v, ok := gauge(t, reg, "invgen_redis_unsafe", map[string]string{"server": rdb.Options().Addr, "reason": reason}); !ok || v != 0 {
			t.Errorf("invgen_redis_unsafe{reason=%s} = %v (present %v), want 0", reason, v, ok)
		}
	}
}

// TestEvictingClusterMasterIsRefused: on a Redis Cluster each master is
// checked: with one master set to evict, the items it serves are refused
// with ErrUnsafeRedis naming it, and the items of the other masters sell.
func TestEvictingClusterMasterIsRefused(t *testing.T) {
	cl := testenv.StartCluster(t, testenv.ClusterConfig{})
	rdb := cl.Client(clusterOptions(cl.Seeds()))
	ctx := ctxT(t)
	var masters []string
	var mu sync.Mutex
	testenv.Must(t, rdb.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		masters = append(masters, n.Options().Addr)
		return nil
	}), "masters")
	bad := masters[0]
	testenv.Must(t, cl.Exec(ctx, bad, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru").Err(), "config set")
	f := fixtureOn(t, rdb, false)
	refused, sold := 0, 0
	for i := range 30 {
		id := "sku-" + strconv.Itoa(i)
		err := f.m.Init(ctx, id, 5)
		switch {
		case errors.Is(err, invrt.ErrUnsafeRedis):
			refused++
			if !strings.Contains(err.Error(), bad) {
				t.Errorf("Init %s: %v, which does not name the evicting master %s", id, err, bad)
			}
		case err != nil:
			t.Fatalf("Init %s: %v", id, err)
		default:
			if _, err := f.m.Decr(ctx, id, 1, "o1"); err != nil {
				t.Fatalf("Decr %s on a master that does not evict: %v", id, err)
			}
			sold++
		}
	}
	t.Logf("%d items refused on %s, %d sold on the other masters", refused, bad, sold)
	if refused == 0 || sold == 0 {
		t.Errorf("%d refused, %d sold: want both, one master of three evicts", refused, sold)
	}
}

// A strict process must refuse an evicting server even when another
// process (one with WithEvictionAllowed, or of an older release) opened
// the server's gate first: the gate's script is then loaded and this
// process never meets NOSCRIPT.
func TestEvictingRedisIsRefusedAfterAnotherProcessOpenedIt(t *testing.T) {
	rdb := startRedisWith(t, "--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru")
	f := stringFixtureOn(t, rdb, invrt.WithEvictionAllowed())
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "sku-1", 10), "Init by the tolerant process")
	strict := f.reopen()
	if _, err := strict.Decr(ctx, "sku-1", 1, "o1"); !errors.Is(err, invrt.ErrUnsafeRedis) {
		t.Fatalf("Decr by a strict process on a server another one opened = %v, want ErrUnsafeRedis", err)
	}
	if _, err := strict.Get(ctx, "sku-1"); !errors.Is(err, invrt.ErrUnsafeRedis) {
		t.Fatalf("Get by the strict process = %v, want ErrUnsafeRedis", err)
	}
}
