package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// A master of a Redis Cluster dies: its replica is promoted after the
// cluster's node timeout, but go-redis keeps sending the dead master's
// slots to its address until its cluster state is reloaded, which by
// itself happens only every ClusterStateReloadInterval (a minute by
// default). So whenever a call fails because a server did not answer,
// invgen asks the client to reload its state (go-redis coalesces the
// reloads) and tries again within WithBusyWait. The calls of a dead
// master's slots then succeed within a reload of the promotion.

// nodeDown reports whether err says that a Redis server did not answer,
// that the cluster has no master for a slot yet, or that a slot moved
// more often than go-redis follows (MOVED, ASK after its redirects), rather
// than that Redis refused the command or the caller's context ended. The
// command did not run, or its reply was lost; either way trying again is
// safe for invgen's scripts, which are idempotent by op key and attempt.
func nodeDown(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	for _, p := range []string{"CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING", "MOVED", "ASK"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// reloadOnFailure asks a cluster client to reload the cluster's state when
// err says a server did not answer, and reports whether it did.
func reloadOnFailure(rdb redis.UniversalClient, err error) bool {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok || !nodeDown(err) {
		return false
	}
	cc.ReloadState(context.Background())
	return true
}

// waitable reports whether WAIT can be pipelined with a change on rdb:
// on one connection to the server that ran it.
func waitable(rdb redis.UniversalClient) bool {
	switch rdb.(type) {
	case *redis.Client, *redis.ClusterClient:
		return true
	}
	return false
}

// tryAcked runs the Core's reserve script and a WAIT for one replica in
// one pipeline to the master of item k (WithReplicaAck). acked reports
// whether a replica confirmed the change (and every earlier write of the
// connection) in time.
func (c *Core[K]) tryAcked(ctx context.Context, k itemKeys, keys []string, args []any) (v string, acked bool, err error) {
	node := redis.Cmdable(c.rdb)
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		if node, err = cc.MasterForKey(ctx, k.item); err != nil {
			return "", false, err
		}
	}
	var ev, w *redis.Cmd
	node.Pipelined(ctx, func(p redis.Pipeliner) error {
		ev = c.gate.EvalSha(ctx, p, keys, args...)
		w = p.Do(ctx, "wait", 1, max(c.opt.replicaAck.Milliseconds(), 1))
		return nil
	})
	if v, err = ev.Text(); err != nil {
		return "", false, err
	}
	n, werr := w.Int64()
	return v, werr == nil && n >= 1, nil
}

// notReplicated answers a change that no replica confirmed within
// WithReplicaAck. A sync-ledger reservation is undone, as its ledger row
// was not written; a stream-ledger change stays, in doubt.
func (c *Core[K]) notReplicated(ctx context.Context, kind Kind, id K, k itemKeys, opRec, mode string, attempt int64) (Result, error) {
	if mode == "stream" {
		return Result{}, fmt.Errorf("%w: %s %v: no replica confirmed it within %v; retry with the op key for its outcome",
			ErrInDoubt, kind, id, c.opt.replicaAck)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.ledgerTimeout)
	defer cancel()
	if _, err := c.abort(sctx, k, opRec, "forget", kind, 0, attempt); err != nil {
		return Result{}, fmt.Errorf("%w: %s %v: no replica confirmed it within %v, and undoing it failed: %w",
			ErrInDoubt, kind, id, c.opt.replicaAck, err)
	}
	return Result{}, fmt.Errorf("%w: %s %v: no replica confirmed it within %v; nothing was done",
		ErrBusy, kind, id, c.opt.replicaAck)
}
