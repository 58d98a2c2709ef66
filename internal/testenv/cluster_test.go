package testenv

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestStartCluster starts a cluster of the test's own, pauses a replica,
// kills its master, sees the replica promoted without the write it had not
// applied, restarts the old master and sees it rejoin as the new one's
// replica.
func TestStartCluster(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, ClusterConfig{})
	t.Logf("cluster up in %v: %v", time.Since(start).Round(time.Millisecond), c.Seeds())
	ctx := Context(t, time.Minute)

	rdb := c.Client(nil)
	Must(t, rdb.Ping(ctx).Err(), "ping through the cluster client")
	var key, master string
	for i := 0; ; i++ { // a key on the first node, whose replica is the fourth
		key = "k" + strconv.Itoa(i)
		if master = c.MasterOf(ctx, key); master == c.Seeds()[0] {
			break
		}
	}
	replica := c.Seeds()[3]
	Must(t, rdb.Set(ctx, key, "before", 0).Err(), "set")
	if n, err := c.Exec(ctx, master, "WAIT", 1, 2000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d replicas, %v", n, err)
	}

	c.Pause(replica, 5*time.Second)
	Must(t, rdb.Set(ctx, key, "after", 0).Err(), "set while the replica is paused")
	time.Sleep(50 * time.Millisecond)
	if v, _ := readOnly(ctx, c, replica, key); v != "before" {
		t.Fatalf("the paused replica has %q, want it still at %q", v, "before")
	}

	c.Kill(master)
	killed := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	promoted, at, err := c.WaitPromoted(wctx, master)
	Must(t, err, "promotion")
	t.Logf("%s promoted %v after %s was killed", promoted, at.Sub(killed).Round(time.Millisecond), master)
	if promoted != replica {
		t.Fatalf("%s promoted, want %s", promoted, replica)
	}
	if got := c.MasterOf(ctx, key); got != promoted {
		t.Fatalf("MasterOf = %s, want %s", got, promoted)
	}
	if v := c.Exec(ctx, promoted, "GET", key).Val(); v != "before" {
		t.Fatalf("the promoted replica has %v: want the write it had not applied lost", v)
	}

	c.Restart(master)
	Must(t, c.WaitSynced(wctx), "sync after the restart")
	role, err := c.Exec(ctx, master, "ROLE").Slice()
	Must(t, err, "ROLE")
	if len(role) < 3 || role[0] != "slave" || !strings.HasSuffix(promoted, ":"+strconv.FormatInt(toInt(role[2]), 10)) {
		t.Fatalf("restarted %s: ROLE %v, want a replica of %s", master, role, promoted)
	}
	if v, err := readOnly(ctx, c, master, key); err != nil || v != "before" {
		t.Fatalf("restarted %s reads %q, %v", master, v, err)
	}
	t.Logf("%s rejoined as a replica of %s; %v in all", master, promoted, time.Since(start).Round(time.Millisecond))
}

// readOnly reads key on the replica on addr.
func readOnly(ctx context.Context, c *LocalCluster, addr, key string) (string, error) {
	r := redis.NewClient(&redis.Options{Addr: addr, OnConnect: func(ctx context.Context, cn *redis.Conn) error {
		return cn.ReadOnly(ctx).Err()
	}})
	defer r.Close()
	return r.Get(ctx, key).Result()
}

func toInt(v any) int64 {
	n, _ := v.(int64)
	return n
}
