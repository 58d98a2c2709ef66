package runtime

import (
	"context"
	"errors"
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

// nodeDown reports whether err says that a Redis server did not answer or
// that the cluster has no master for a slot yet, rather than that Redis
// refused the command or the caller's context ended.
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
	for _, p := range []string{"CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING"} {
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
