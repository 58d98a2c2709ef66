package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisURLHelp is the help text of every -redis flag.
const redisURLHelp = "Redis `URL`, of one server: redis://[user:pass@]host:port[/db] (rediss:// for TLS),\n" +
	"or of a Redis Cluster: redis+cluster://[user:pass@]host1:port1,host2:port2,... (rediss+cluster://)\n" +
	"or redis://host1:port1?addr=host2:port2&addr=... (default $INVGEN_REDIS_URL)"

// Client options for a Redis Cluster, unless the URL sets them: the values
// the runtime's failover tests run with. A dead master's calls fail after
// DialTimeout instead of go-redis's 5 s, and the runtime then reloads the
// cluster's state and tries again (runtime/failover.go).
const (
	clusterDialTimeout  = 500 * time.Millisecond
	clusterReadTimeout  = time.Second
	clusterWriteTimeout = time.Second
)

// redisTarget is what a Redis URL names: exactly one of single and cluster
// is set.
type redisTarget struct {
	single  *redis.Options
	cluster *redis.ClusterOptions
}

// parseRedisURL parses the URL of one Redis server or of a Redis Cluster:
//
//	redis://[user:pass@]host:port[/db]                 one server (rediss:// for TLS; unix:// too)
//	redis+cluster://[user:pass@]host1:port1,host2:port2,...  a cluster's seeds (rediss+cluster:// for TLS)
//	redis://[user:pass@]host1:port1?addr=host2:port2&addr=...  the same, in go-redis's own form
//
// Query parameters are go-redis's (pool_size, dial_timeout, ...). A Redis
// Cluster has database 0 only, so a database number with a cluster is an
// error. Errors never repeat the URL, which may hold a password.
func parseRedisURL(raw string) (redisTarget, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || scheme == "" {
		return redisTarget{}, errors.New("the Redis URL has no scheme: want redis://host:port, rediss://, redis+cluster://host1:port1,host2:port2,... or rediss+cluster://")
	}
	switch scheme = strings.ToLower(scheme); scheme {
	case "redis", "rediss", "unix":
		u, err := url.Parse(raw)
		if err != nil {
			return redisTarget{}, fmt.Errorf("bad Redis URL: %w", unwrapURLError(err))
		}
		if _, err := url.ParseQuery(u.RawQuery); err != nil {
			return redisTarget{}, fmt.Errorf("bad Redis URL: its query: %w", err)
		}
		if !u.Query().Has("addr") {
			o, err := redis.ParseURL(raw)
			if err != nil {
				return redisTarget{}, fmt.Errorf("bad Redis URL: %w", unwrapURLError(err))
			}
			return redisTarget{single: o}, nil
		}
		if scheme == "unix" {
			return redisTarget{}, errors.New("bad Redis URL: addr= (a cluster's seeds) with a unix socket")
		}
		if err := noDatabase(u.Path, u.Query()); err != nil {
			return redisTarget{}, err
		}
		return parseCluster(raw)
	case "redis+cluster", "rediss+cluster":
		return parseClusterList(strings.TrimSuffix(scheme, "+cluster"), rest)
	default:
		return redisTarget{}, fmt.Errorf("unknown Redis URL scheme %q: want redis, rediss, redis+cluster or rediss+cluster", scheme)
	}
}

// parseClusterList parses what follows "redis+cluster://": the seeds as a
// comma-separated list, rewritten into go-redis's own form (the first
// seed as the host, the others as addr= parameters).
func parseClusterList(scheme, rest string) (redisTarget, error) {
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	if hosts == "" {
		return redisTarget{}, errors.New("bad Redis Cluster URL: no seed address (want redis+cluster://host1:port1,host2:port2,...)")
	}
	var addrs []string
	for i, h := range strings.Split(hosts, ",") {
		a, err := seedAddr(h)
		if err != nil {
			return redisTarget{}, fmt.Errorf("bad Redis Cluster URL: seed %d: %w", i+1, err)
		}
		addrs = append(addrs, a)
	}
	// The rest of the URL (path, query) is parsed with the first seed as
	// its host; the seeds themselves were checked above.
	u, err := url.Parse(scheme + "://" + userinfo + addrs[0] + tail)
	if err != nil {
		return redisTarget{}, fmt.Errorf("bad Redis Cluster URL: %w", unwrapURLError(err))
	}
	if u.Fragment != "" {
		return redisTarget{}, errors.New("bad Redis Cluster URL: a #fragment")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return redisTarget{}, fmt.Errorf("bad Redis Cluster URL: its query: %w", err)
	}
	if err := noDatabase(u.Path, q); err != nil {
		return redisTarget{}, err
	}
	if q.Has("addr") {
		return redisTarget{}, errors.New("bad Redis Cluster URL: addr= with redis+cluster:// (list every seed before the path instead)")
	}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	u.RawQuery = q.Encode()
	return parseCluster(u.String())
}

// seedAddr checks one seed of a list: host:port, or a host alone for
// Redis's port 6379 (an IPv6 host in brackets).
func seedAddr(h string) (string, error) {
	if h == "" {
		return "", errors.New("empty address (a stray comma?)")
	}
	host, port, err := net.SplitHostPort(h)
	var ae *net.AddrError
	switch {
	case errors.As(err, &ae) && ae.Err == "missing port in address":
		host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), "6379"
	case err != nil:
		return "", fmt.Errorf("%q is not host:port", h)
	}
	if host == "" || strings.ContainsAny(host, " []") {
		return "", fmt.Errorf("%q is not host:port", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strings.Trim(port, "0123456789") != "" {
		return "", fmt.Errorf("%q: bad port %q", h, port)
	}
	return net.JoinHostPort(host, port), nil
}

// noDatabase refuses a database number in a cluster URL: a Redis Cluster
// serves database 0 only, and go-redis would drop the number silently.
func noDatabase(path string, q url.Values) error {
	if p := strings.Trim(path, "/"); p != "" {
		return fmt.Errorf("bad Redis Cluster URL: database %q in the path, but a Redis Cluster has database 0 only: remove /%s", p, p)
	}
	if q.Has("db") {
		return errors.New("bad Redis Cluster URL: db= given, but a Redis Cluster has database 0 only: remove it")
	}
	return nil
}

// parseCluster parses go-redis's cluster form and sets the recommended
// timeouts the URL leaves unset.
func parseCluster(raw string) (redisTarget, error) {
	o, err := redis.ParseClusterURL(raw)
	if err != nil {
		return redisTarget{}, fmt.Errorf("bad Redis Cluster URL: %w", unwrapURLError(err))
	}
	if o.TLSConfig != nil {
		// go-redis names the first seed as every node's server name; let
		// each connection check the name of the node it dials instead.
		o.TLSConfig.ServerName = ""
		o.TLSConfig.MinVersion = max(o.TLSConfig.MinVersion, tls.VersionTLS12)
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = clusterDialTimeout
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = clusterReadTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = clusterWriteTimeout
	}
	return redisTarget{cluster: o}, nil
}

// unwrapURLError drops the URL from url.Parse's errors: it may hold a
// password.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// openRedis connects to the server or cluster a Redis URL names (see
// parseRedisURL) and checks that it answers: a single server must not be
// a cluster node (its client would not follow the cluster's redirections),
// and every node of a cluster must report cluster_state:ok.
func openRedis(ctx context.Context, raw string) (redis.UniversalClient, error) {
	t, err := parseRedisURL(raw)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if t.single != nil {
		c := redis.NewClient(t.single)
		if err := checkSingle(ctx, c); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	c := redis.NewClusterClient(t.cluster)
	if err := checkCluster(ctx, c, t.cluster.Addrs); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func checkSingle(ctx context.Context, c *redis.Client) error {
	addr := c.Options().Addr
	info, err := c.Info(ctx, "cluster").Result()
	if redis.HasErrorPrefix(err, "NOPERM") {
		// A user without INFO: it answers, which is all one can check.
		info, err = "", c.Ping(ctx).Err()
	}
	if err != nil {
		return fmt.Errorf("the Redis server at %s: %w", addr, err)
	}
	if infoField(info, "cluster_enabled") == "1" {
		return fmt.Errorf("the Redis server at %s is a node of a Redis Cluster: name the cluster, as redis+cluster://%s,... (seed addresses)", addr, addr)
	}
	return nil
}

func checkCluster(ctx context.Context, c *redis.ClusterClient, seeds []string) error {
	where := strings.Join(seeds, ",")
	err := c.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error {
		addr := node.Options().Addr
		info, err := node.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", addr, err)
		}
		if s := infoField(info, "cluster_state"); s != "ok" {
			return fmt.Errorf("%s reports cluster_state:%s", addr, s)
		}
		return nil
	})
	if err != nil {
		if strings.Contains(err.Error(), "cluster support disabled") {
			return fmt.Errorf("the Redis server at %s is not a Redis Cluster (%v): name a single server as redis://host:port", where, err)
		}
		return fmt.Errorf("the Redis Cluster at %s is not ok: %w", where, err)
	}
	return nil
}

// infoField returns a field of an INFO or CLUSTER INFO reply, "" if absent.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == name {
			return v
		}
	}
	return ""
}
