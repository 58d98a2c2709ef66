package runtime

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The gate: a Redis server that may have lost recent writes sells nothing
// until the items it serves are checked against the ledger again.
//
// Replication and snapshots are asynchronous. A replica promoted by a
// failover, or a server restarted from a snapshot or an AOF that was not
// synced on every write, can hold an older copy of the data than the one
// the processes acknowledged: purchases it never saw, op records settled
// later. Sold units would be offered again.
//
// Every such server has one thing in common: it lost its script cache. The
// cache is neither replicated (Redis 7 and later replicate the effects of
// a script, not the script) nor persisted. So each Core runs reserve.lua
// under a source of its own (its namespace and prefix in a comment, hence
// a SHA of its own) with EVALSHA and never with EVAL. A server without that
// script answers NOSCRIPT, and no purchase of the prefix runs on it until
// the gate is opened: openGate gives each shard the server serves a new
// epoch and loads the script. From then on every item whose field e names
// an older epoch is refreshed from the ledger on its first change
// (reserve.lua's code 10), before anything is sold from it; the others go
// on at once.
//
// The cost is nothing per call; a restart, a failover or a SCRIPT FLUSH
// costs one refresh per item on its next change.

// gateCall is one opening of the gate on one server; callers that find
// the gate shut meanwhile wait for it.
type gateCall struct {
	done chan struct{}
	err  error
}

// newGate returns the Core's own reserve script.
func newGate(namespace, prefix string) *redis.Script {
	return redis.NewScript(fmt.Sprintf("-- invgen gate of %s:%s (see gate.go)\n", namespace, prefix) + settledSrc + reserveSrc)
}

// isNoScript reports whether Redis does not hold the script.
func isNoScript(err error) bool { return redis.HasErrorPrefix(err, "NOSCRIPT") }

// openGate opens the gate of the server that serves item k: it gives each
// of the prefix's shards on that server a new epoch, then loads the Core's
// reserve script there. Concurrent callers of one Core share one opening.
func (c *Core[K]) openGate(ctx context.Context, k itemKeys) error {
	node, addr := redis.Cmdable(c.rdb), ""
	cc, cluster := c.rdb.(*redis.ClusterClient)
	if cluster {
		n, err := cc.MasterForKey(ctx, k.epoch)
		if err != nil {
			return err
		}
		node, addr = n, n.Options().Addr
	}
	c.gateMu.Lock()
	if g := c.gates[addr]; g != nil {
		c.gateMu.Unlock()
		select {
		case <-g.done:
			return g.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	g := &gateCall{done: make(chan struct{})}
	c.gates[addr] = g
	c.gateMu.Unlock()
	defer func() {
		c.gateMu.Lock()
		delete(c.gates, addr)
		c.gateMu.Unlock()
		close(g.done)
	}()

	start := time.Now()
	shards := make([]int, 0, len(c.ks.tags))
	for s := range c.ks.tags {
		if cluster {
			n, err := cc.MasterForKey(ctx, c.ks.epochs[s])
			if err != nil {
				g.err = err
				return err
			}
			if n.Options().Addr != addr {
				continue
			}
		}
		shards = append(shards, s)
	}
	epoch := newToken()
	_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, s := range shards {
			p.Set(ctx, c.ks.epochs[s], epoch, 0)
		}
		return nil
	})
	if err == nil {
		err = c.gate.Load(ctx, node).Err()
	}
	if err != nil {
		g.err = fmt.Errorf("invgen: open the gate of %s on redis %s: %w", c.prefix, addr, err)
		return g.err
	}
	c.opt.logger.InfoContext(ctx, "invgen: gate opened: a Redis server lacked the prefix's scripts (first use, restart, failover or SCRIPT FLUSH); its items are refreshed from the ledger on their next change",
		"prefix", c.prefix, "server", addr, "shards", len(shards), "took", time.Since(start))
	return nil
}
