package runtime

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The check of a Redis server: before the gate of a server opens (gate.go),
// the Core reads the server's eviction policy and persistence settings.
//
// A server that may evict keys (any maxmemory-policy but noeviction) drops
// what invgen holds only in Redis: a volatile-* policy evicts the keys
// with a TTL, and those are invgen's op records (a pending change's own
// record, the buckets of settled ones), so a repeated purchase would be
// sold again or refused instead of replayed, and a change between its two
// steps would lose its record; allkeys-* evicts items, journals and
// streams too. The policy is refused whatever maxmemory says: with
// maxmemory 0 nothing is evicted yet, but a CONFIG SET maxmemory later
// (a managed service resizing) would start evicting without a restart,
// and the check runs only when the gate opens.
//
// The check runs when a server's gate opens (its first use by the Core,
// and after a restart, a failover or a SCRIPT FLUSH), not per call; a
// refusal is remembered for redisRecheck, so a server refused costs one
// CONFIG round trip per second at most, and serves again once its
// policy is fixed.

// redisRecheck is how long the result of a server's check stands for the
// calls that find its gate shut.
const redisRecheck = time.Second

// RedisConfig is what a Redis server's configuration means for invgen's
// data: whether it may evict keys, and how it persists them.
type RedisConfig struct {
	// Server is the server's address (host:port).
	Server string `json:"server"`
	// Checked is false when the server answered neither CONFIG GET nor
	// INFO (a managed Redis that renames CONFIG and forbids INFO, an ACL);
	// Unchecked then says why, and the other fields are unknown.
	Checked   bool   `json:"checked"`
	Unchecked string `json:"unchecked,omitempty"`
	// FromInfo is true when CONFIG GET was refused and INFO answered:
	// AppendFsync and Save are then unknown ("?").
	FromInfo bool `json:"from_info,omitempty"`
	// MaxMemory is maxmemory in bytes (0: no limit); Policy is
	// maxmemory-policy.
	MaxMemory int64  `json:"maxmemory"`
	Policy    string `json:"maxmemory_policy"`
	// AppendOnly is appendonly (AOF on); AppendFsync is appendfsync
	// (always, everysec or no); Save is the RDB snapshot schedule ("":
	// no snapshots).
	AppendOnly  bool   `json:"appendonly"`
	AppendFsync string `json:"appendfsync"`
	Save        string `json:"save"`
}

// Evicts reports whether the server may drop keys to make room: its policy
// is not noeviction. An unchecked server reports false.
func (r RedisConfig) Evicts() bool { return r.Checked && r.Policy != "noeviction" }

// Persistence names what the server keeps across a restart: "none",
// "rdb" (snapshots only), "aof-always", "aof-everysec" or "aof-no" (the
// append-only file and its fsync policy, with or without snapshots), or
// "unknown".
func (r RedisConfig) Persistence() string {
	switch {
	case !r.Checked:
		return "unknown"
	case r.AppendOnly && r.AppendFsync == "?":
		return "aof"
	case r.AppendOnly:
		return "aof-" + r.AppendFsync
	case r.Save == "?":
		return "unknown"
	case r.Save != "":
		return "rdb"
	}
	return "none"
}

// Guarantee says what a restart of the server keeps of a prefix's data,
// for its ledger mode (docs/operating.md#redis-persistence-and-eviction
// has the table). A failover is another matter: see WithReplicaAck.
func (r RedisConfig) Guarantee(stream bool) string {
	evict := ""
	if r.Evicts() {
		evict = "UNSAFE: policy " + r.Policy + " may evict op records and items, so a repeated op key can be applied again or refused instead of replayed; "
	}
	p := r.Persistence()
	if !stream {
		switch p {
		case "unknown":
			return evict + "persistence unknown; sync ledger: every acknowledged change is in the ledger whatever Redis keeps, and a server that lost writes is refreshed from it before it sells (the gate)"
		case "none":
			return evict + "a restart empties Redis; sync ledger: nothing acknowledged is lost, every item is rebuilt from the ledger on first use (RefreshAll: at once)"
		}
		return evict + "a restart returns older data (" + p + "); sync ledger: nothing acknowledged is lost, the gate refreshes the items from the ledger before they sell again"
	}
	switch p {
	case "none":
		return evict + "a restart empties Redis; stream ledger: every purchase not yet flushed is lost from the ledger (at most FlushLag), and op keys are forgotten"
	case "rdb":
		return evict + "a restart returns the last snapshot; stream ledger: purchases after it that were not yet flushed are lost (minutes' worth)"
	case "aof-everysec":
		return evict + "a crash loses at most about one second of writes; stream ledger: that second's unflushed purchases are lost"
	case "aof-always":
		return evict + "every write is on disk before its reply; stream ledger: a restart loses no acknowledged purchase (a failover still can: WithReplicaAck)"
	case "aof-no", "aof":
		return evict + "the operating system decides when the AOF reaches the disk (about 30s with appendfsync no); stream ledger: that long of unflushed purchases can be lost"
	}
	return evict + "persistence unknown; stream ledger: unflushed purchases may be lost at a restart"
}

// RedisVerdict is what the check of a server decided.
type RedisVerdict string

// The verdicts of a server's check.
const (
	// RedisSafe: the server does not evict.
	RedisSafe RedisVerdict = "safe"
	// RedisRefused: the server may evict; calls that reach it fail with
	// ErrUnsafeRedis.
	RedisRefused RedisVerdict = "refused"
	// RedisEvictionAllowed: the server may evict, and WithEvictionAllowed
	// lets it serve; the Core warns.
	RedisEvictionAllowed RedisVerdict = "eviction_allowed"
	// RedisUnchecked: the server's configuration could not be read; the
	// Core warns and goes on.
	RedisUnchecked RedisVerdict = "unchecked"
)

// ReadRedisConfig reads the eviction and persistence settings of the one
// server node (a *redis.Client, or a node of a cluster), whose address is
// addr. A server that refuses CONFIG GET is asked INFO; one that refuses
// both is reported unchecked, with no error. The error is a failure to
// reach the server.
func ReadRedisConfig(ctx context.Context, node redis.Cmdable, addr string) (RedisConfig, error) {
	r := RedisConfig{Server: addr}
	names := []string{"maxmemory", "maxmemory-policy", "appendonly", "appendfsync", "save"}
	cmds := make([]*redis.MapStringStringCmd, len(names))
	_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range names {
			cmds[i] = p.ConfigGet(ctx, n)
		}
		return nil
	})
	if err == nil {
		v := map[string]string{}
		for _, c := range cmds {
			for k, x := range c.Val() {
				v[k] = x
			}
		}
		policy, ok := v["maxmemory-policy"]
		if !ok {
			r.Unchecked = "CONFIG GET answered without maxmemory-policy"
			return r, nil
		}
		r.Checked, r.Policy = true, policy
		r.MaxMemory, _ = strconv.ParseInt(v["maxmemory"], 10, 64)
		r.AppendOnly = v["appendonly"] == "yes"
		r.AppendFsync = v["appendfsync"]
		r.Save = strings.TrimSpace(v["save"])
		return r, nil
	}
	if !isServerError(err) {
		return r, err
	}
	why := "CONFIG GET: " + err.Error()
	info, err := node.Info(ctx, "memory", "persistence").Result()
	if err != nil {
		if !isServerError(err) {
			return r, err
		}
		r.Unchecked = why + "; INFO: " + err.Error()
		return r, nil
	}
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	policy, ok := fields["maxmemory_policy"]
	if !ok {
		r.Unchecked = why + "; INFO has no maxmemory_policy"
		return r, nil
	}
	r.Checked, r.FromInfo, r.Policy = true, true, policy
	r.MaxMemory, _ = strconv.ParseInt(fields["maxmemory"], 10, 64)
	r.AppendOnly = fields["aof_enabled"] == "1"
	r.AppendFsync, r.Save = "?", "?"
	return r, nil
}

// isServerError reports whether err is an error reply of the server (an
// unknown or renamed command, NOPERM), not a failure to reach it.
func isServerError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}

// RedisConfigs reads the eviction and persistence settings of every Redis
// server the Core uses: the server of a Client, every master of a
// ClusterClient, every shard of a Ring. It judges nothing: see the
// RedisConfig methods.
func (c *Core[K]) RedisConfigs(ctx context.Context) ([]RedisConfig, error) {
	var (
		mu  sync.Mutex
		out []RedisConfig
	)
	each := func(ctx context.Context, n *redis.Client) error {
		r, err := ReadRedisConfig(ctx, n, n.Options().Addr)
		if err != nil {
			return fmt.Errorf("invgen: redis %s: %w", n.Options().Addr, err)
		}
		mu.Lock()
		out = append(out, r)
		mu.Unlock()
		return nil
	}
	var err error
	switch rdb := c.rdb.(type) {
	case *redis.ClusterClient:
		err = rdb.ForEachMaster(ctx, each)
	case *redis.Ring:
		err = rdb.ForEachShard(ctx, each)
	case *redis.Client:
		err = each(ctx, rdb)
	default:
		var r RedisConfig
		r, err = ReadRedisConfig(ctx, c.rdb, "")
		out = append(out, r)
	}
	return out, err
}

// redisChecks holds a Core's checks of its servers, by address.
type redisChecks struct {
	mu sync.Mutex
	m  map[string]*redisCheck
}

// redisCheck is one check of one server; done is closed once err is set.
type redisCheck struct {
	done chan struct{}
	at   time.Time
	err  error
}

// openChecked opens the gate of the server of item k (openGate) once the
// server has passed its check.
func (c *Core[K]) openChecked(ctx context.Context, k itemKeys) error {
	if err := c.checkRedis(ctx, k); err != nil {
		return err
	}
	return c.openGate(ctx, k)
}

// vet checks the server of item k before the Core's first call on it: a
// server whose gate another process opened (one allowed to use an
// evicting server, or of an older release) never answers NOSCRIPT, so
// openChecked alone would not see it. A server that passed is remembered
// for the Core's life (openChecked checks it again when its gate has to
// be opened again); one that cannot be reached now is left to the call's
// own command, which waits for it or fails as it always does.
func (c *Core[K]) vet(ctx context.Context, k itemKeys) error {
	// Keyed by the server's client, a pointer: the lookup of every call
	// allocates nothing.
	var node any = c.rdb
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		n, err := cc.MasterForKey(ctx, k.epoch)
		if err != nil {
			return nil
		}
		node = n
	}
	if _, ok := c.vetted.Load(node); ok {
		return nil
	}
	addr, judge, err := c.serverOf(ctx, k)
	if err != nil {
		return nil
	}
	switch err := c.checkNode(ctx, addr, judge); {
	case err == nil:
		c.vetted.Store(node, true)
	case errors.Is(err, ErrUnsafeRedis):
		return err
	}
	return nil
}

// checkRedis checks the server of item k, or finds its recent check.
func (c *Core[K]) checkRedis(ctx context.Context, k itemKeys) error {
	addr, judge, err := c.serverOf(ctx, k)
	if err != nil {
		return err
	}
	return c.checkNode(ctx, addr, judge)
}

// serverOf names the server of item k and how to judge it.
func (c *Core[K]) serverOf(ctx context.Context, k itemKeys) (addr string, judge func(context.Context) error, err error) {
	switch rdb := c.rdb.(type) {
	case *redis.ClusterClient:
		n, err := rdb.MasterForKey(ctx, k.epoch)
		if err != nil {
			return "", nil, err
		}
		addr = n.Options().Addr
		judge = func(ctx context.Context) error { return c.judgeServer(ctx, n, addr) }
	case *redis.Ring:
		// Every shard, at once.
		addr = "ring"
		judge = func(ctx context.Context) error {
			return rdb.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
				return c.judgeServer(ctx, n, n.Options().Addr)
			})
		}
	case *redis.Client:
		addr = rdb.Options().Addr
		judge = func(ctx context.Context) error { return c.judgeServer(ctx, rdb, addr) }
	default:
		judge = func(ctx context.Context) error { return c.judgeServer(ctx, c.rdb, addr) }
	}
	return addr, judge, nil
}

// checkNode runs judge for the server at addr, or finds its recent check.
func (c *Core[K]) checkNode(ctx context.Context, addr string, judge func(context.Context) error) error {
	s := c.opt.checks
	s.mu.Lock()
	if ch := s.m[addr]; ch != nil {
		select {
		case <-ch.done:
			if time.Since(ch.at) < redisRecheck {
				s.mu.Unlock()
				return ch.err
			}
		default:
			s.mu.Unlock()
			select {
			case <-ch.done:
				return ch.err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	ch := &redisCheck{done: make(chan struct{})}
	s.m[addr] = ch
	s.mu.Unlock()

	err := judge(ctx)
	if err != nil && !errors.Is(err, ErrUnsafeRedis) {
		// The server was not reached: no verdict to remember.
		s.mu.Lock()
		delete(s.m, addr)
		s.mu.Unlock()
	}
	ch.err, ch.at = err, time.Now()
	close(ch.done)
	return err
}

// judgeServer reads the configuration of node and judges it.
func (c *Core[K]) judgeServer(ctx context.Context, node redis.Cmdable, addr string) error {
	r, err := ReadRedisConfig(ctx, node, addr)
	if err != nil {
		return fmt.Errorf("invgen: check redis %s: %w", addr, err)
	}
	return c.judgeRedis(ctx, r)
}

// judgeRedis decides whether the Core may use the server r describes,
// logs and reports the verdict, and returns ErrUnsafeRedis for a refusal.
func (c *Core[K]) judgeRedis(ctx context.Context, r RedisConfig) error {
	log := c.opt.logger
	attrs := []any{"prefix", c.prefix, "server", r.Server, "maxmemory_policy", r.Policy, "maxmemory", r.MaxMemory,
		"persistence", r.Persistence(), "save", r.Save}
	var verdict RedisVerdict
	var err error
	switch {
	case !r.Checked:
		verdict = RedisUnchecked
		log.WarnContext(ctx, "invgen: could not check the Redis server's eviction policy: it must be noeviction, or the server may drop op records and items (see docs/operating.md#redis-persistence-and-eviction)",
			"prefix", c.prefix, "server", r.Server, "why", r.Unchecked)
	case r.Evicts() && c.opt.evictionAllowed:
		verdict = RedisEvictionAllowed
		log.WarnContext(ctx, "invgen: the Redis server may evict keys and WithEvictionAllowed lets it serve: an evicted op record lets a repeated op key be applied again, or refused instead of replayed; an evicted item is rebuilt from the ledger", attrs...)
	case r.Evicts():
		verdict = RedisRefused
		limit := strconv.FormatInt(r.MaxMemory, 10)
		if r.MaxMemory == 0 {
			limit = "0: none yet, and setting one would start evictions"
		}
		err = fmt.Errorf("%w: redis %s has maxmemory-policy %s (maxmemory %s): it may evict the op records and items of %s; set maxmemory-policy noeviction (WithEvictionAllowed runs anyway, with a warning)",
			ErrUnsafeRedis, r.Server, r.Policy, limit, c.prefix)
		log.ErrorContext(ctx, "invgen: refusing a Redis server that may evict keys", append(attrs, "err", err)...)
	default:
		verdict = RedisSafe
		log.InfoContext(ctx, "invgen: Redis server checked: no eviction", append(attrs, "guarantee", r.Guarantee(c.stream))...)
	}
	if o, ok := c.opt.observer.(RedisObserver); ok {
		o.RedisChecked(c.prefix, r, verdict)
	}
	return err
}
