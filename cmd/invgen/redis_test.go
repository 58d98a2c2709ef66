package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/internal/testenv"
)

// Every form of Redis URL the CLI takes, and the clear errors of bad ones.
func TestParseRedisURL(t *testing.T) {
	type want struct {
		addrs    []string // one address: a single server
		cluster  bool
		db       int
		user     string
		password string
		tls      bool
		dial     time.Duration // cluster only
		read     time.Duration
		pool     int
	}
	cluster := func(w want) want {
		w.cluster = true
		if w.dial == 0 {
			w.dial = clusterDialTimeout
		}
		if w.read == 0 {
			w.read = clusterReadTimeout
		}
		return w
	}
	for _, tc := range []struct {
		url  string
		want want
	}{
		{"redis://127.0.0.1:6379/0", want{addrs: []string{"127.0.0.1:6379"}}},
		{"redis://127.0.0.1:6380/3", want{addrs: []string{"127.0.0.1:6380"}, db: 3}},
		{"redis://u:p%40ss@h:6380/2?pool_size=7", want{addrs: []string{"h:6380"}, db: 2, user: "u", password: "p@ss", pool: 7}},
		{"rediss://:secret@h:6380", want{addrs: []string{"h:6380"}, password: "secret", tls: true}},
		{"REDIS://h", want{addrs: []string{"h:6379"}}},
		{"redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
			cluster(want{addrs: []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}})},
		{"redis+cluster://127.0.0.1:7001", cluster(want{addrs: []string{"127.0.0.1:7001"}})},
		{"redis+cluster://127.0.0.1:7001,127.0.0.1:7002/", cluster(want{addrs: []string{"127.0.0.1:7001", "127.0.0.1:7002"}})},
		{"rediss+cluster://user:p%2Cw@a:1,b:2", cluster(want{addrs: []string{"a:1", "b:2"}, user: "user", password: "p,w", tls: true})},
		{"redis+cluster://a,[::1]:7001,[::1]", cluster(want{addrs: []string{"a:6379", "[::1]:7001", "[::1]:6379"}})},
		{"redis+cluster://a:1,b:2?pool_size=9&dial_timeout=2s&read_timeout=3s",
			cluster(want{addrs: []string{"a:1", "b:2"}, pool: 9, dial: 2 * time.Second, read: 3 * time.Second})},
		{"redis://a:1?addr=b:2&addr=c:3", cluster(want{addrs: []string{"a:1", "b:2", "c:3"}})},
		{"redis://u:p@a:1/?addr=b:2", cluster(want{addrs: []string{"a:1", "b:2"}, user: "u", password: "p"})},
		{"rediss://a:1?addr=b:2", cluster(want{addrs: []string{"a:1", "b:2"}, tls: true})},
	} {
		t.Run(tc.url, func(t *testing.T) {
			got, err := parseRedisURL(tc.url)
			if err != nil {
				t.Fatalf("parseRedisURL: %v", err)
			}
			w := tc.want
			var g want
			switch {
			case got.single != nil && got.cluster == nil:
				o := got.single
				g = want{addrs: []string{o.Addr}, db: o.DB, user: o.Username, password: o.Password, tls: o.TLSConfig != nil, pool: o.PoolSize}
			case got.cluster != nil && got.single == nil:
				o := got.cluster
				g = want{addrs: o.Addrs, cluster: true, user: o.Username, password: o.Password, tls: o.TLSConfig != nil,
					dial: o.DialTimeout, read: o.ReadTimeout, pool: o.PoolSize}
				if o.WriteTimeout != clusterWriteTimeout {
					t.Errorf("WriteTimeout %v, want %v", o.WriteTimeout, clusterWriteTimeout)
				}
				if o.TLSConfig != nil && o.TLSConfig.ServerName != "" {
					t.Errorf("TLS ServerName %q for every node, want each node's own", o.TLSConfig.ServerName)
				}
			default:
				t.Fatalf("got %+v: want one of single and cluster", got)
			}
			if !slices.Equal(g.addrs, w.addrs) || g.cluster != w.cluster || g.db != w.db || g.user != w.user ||
				g.password != w.password || g.tls != w.tls || g.dial != w.dial || g.read != w.read || g.pool != w.pool {
				t.Fatalf("got  %+v\nwant %+v", g, w)
			}
		})
	}
}

func TestParseRedisURLErrors(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"127.0.0.1:6379", "no scheme"},
		{"", "no scheme"},
		{"http://h:1", `unknown Redis URL scheme "http"`},
		{"redis+sentinel://h:1", "unknown Redis URL scheme"},
		{"redis://h:1/x", "invalid database number"},
		{"redis://h:1/0/1", "invalid URL path"},
		{"redis://h:1?bogus=1", "unexpected option: bogus"},
		{"redis+cluster://a:1,b:2/0", "a Redis Cluster has database 0 only: remove /0"},
		{"redis+cluster://a:1,b:2/3", "a Redis Cluster has database 0 only: remove /3"},
		{"redis+cluster://a:1?db=1", "db= given"},
		{"redis://a:1/2?addr=b:2", "a Redis Cluster has database 0 only: remove /2"},
		{"redis://a:1?addr=b:2&db=2", "db= given"},
		{"redis://a:1?addr=b", "unable to parse addr param"},
		{"redis+cluster://", "no seed address"},
		{"redis+cluster://u:p@/", "no seed address"},
		{"redis+cluster://a:1,,b:2", "seed 2: empty address"},
		{"redis+cluster://a:1,", "seed 2: empty address"},
		{"redis+cluster://a:99999", `seed 1: "a:99999": bad port`},
		{"redis+cluster://a:1,b:x", `seed 2: "b:x": bad port`},
		{"redis+cluster://a:1,b:", `seed 2: "b:": bad port`},
		{"redis+cluster://:1", `seed 1: ":1" is not host:port`},
		{"redis+cluster://::1", `seed 1: "::1" is not host:port`},
		{"redis+cluster://a:1?addr=b:2", "addr= with redis+cluster://"},
		{"redis+cluster://a:1?pool_size=x", "pool_size"},
		{"redis+cluster://a:1#frag", "fragment"},
		{"unix://r.sock?addr=b:2", "unix socket"},
		{"redis://h:1?addr=%zz", "its query"},
		{"redis+cluster://a:1?pool_size=%zz", "its query"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			got, err := parseRedisURL(tc.url)
			if err == nil {
				t.Fatalf("parseRedisURL = %+v, want an error saying %q", got, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// An error about a URL never repeats its password.
func TestParseRedisURLHidesPassword(t *testing.T) {
	for _, u := range []string{
		"redis://u:s3cr3t@h:1/%zz",
		"redis://u:s3cr3t@h:1/x",
		"redis://u:s3cr3t@h:1?addr=%zz",
		"redis+cluster://u:s3cr3t@a:1,b:x",
		"redis+cluster://u:s3cr3t@a:1/%zz",
		"rediss+cluster://u:s3cr3t@a:1/?db=1",
	} {
		_, err := parseRedisURL(u)
		if err == nil {
			t.Errorf("%s: no error", u)
		} else if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: error %q shows the password", u, err)
		}
	}
}

// openRedis returns a client of the kind the URL names, and refuses a URL
// of the other kind: a single-server client of a cluster node would not
// follow the cluster's redirections.
func TestOpenRedis(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	seeds := testCluster(t)

	rdb, err := openRedis(ctx, clusterURL(seeds))
	testenv.Must(t, err, "openRedis(cluster)")
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("openRedis(cluster) = %T, want *redis.ClusterClient", rdb)
	}
	if o := cc.Options(); o.DialTimeout != clusterDialTimeout || o.ReadTimeout != clusterReadTimeout || o.WriteTimeout != clusterWriteTimeout {
		t.Errorf("cluster client timeouts dial %v read %v write %v", o.DialTimeout, o.ReadTimeout, o.WriteTimeout)
	}
	testenv.Must(t, rdb.Ping(ctx).Err(), "ping the cluster")
	rdb.Close()

	if !testenv.Cluster() {
		rdb, err = openRedis(ctx, testenv.RedisURL())
		testenv.Must(t, err, "openRedis(single)")
		if _, ok := rdb.(*redis.Client); !ok {
			t.Fatalf("openRedis(single) = %T, want *redis.Client", rdb)
		}
		rdb.Close()
		opt, err := redis.ParseURL(testenv.RedisURL())
		testenv.Must(t, err, "INVGEN_REDIS_URL")
		_, err = openRedis(ctx, "redis+cluster://"+opt.Addr)
		if err == nil || !strings.Contains(err.Error(), "is not a Redis Cluster") {
			t.Errorf("a single server named as a cluster: error %v", err)
		}
	}

	_, err = openRedis(ctx, "redis://"+seeds[0])
	if err == nil || !strings.Contains(err.Error(), "is a node of a Redis Cluster") {
		t.Errorf("a cluster node named as a single server: error %v", err)
	}
	_, err = openRedis(ctx, "redis+cluster://127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("no cluster there: error %v", err)
	}
}

// testCluster returns the seeds of a Redis Cluster for the test: those of
// INVGEN_REDIS_CLUSTER (`scripts/cluster.sh start`, which `make services`
// runs, prints them), checked to answer with cluster_state:ok, or else a
// cluster of the test's own. A missing cluster fails the test.
func testCluster(t *testing.T) []string {
	t.Helper()
	if testenv.Cluster() {
		testenv.Redis(t) // fails the test unless every node reports cluster_state:ok
		return testenv.ClusterSeeds()
	}
	return testenv.StartCluster(t, testenv.ClusterConfig{}).Seeds()
}

// clusterURL names a cluster by its seeds.
func clusterURL(seeds []string) string { return "redis+cluster://" + strings.Join(seeds, ",") }

// testRedisURL is the -redis of the test Redis: the cluster of
// INVGEN_REDIS_CLUSTER when it is set, as testenv.Redis.
func testRedisURL() string {
	if testenv.Cluster() {
		return clusterURL(testenv.ClusterSeeds())
	}
	return testenv.RedisURL()
}
