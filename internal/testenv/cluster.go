package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterConfig configures StartCluster.
type ClusterConfig struct {
	// NodeTimeout is each node's cluster-node-timeout: how long a master
	// may not answer before its replica takes over. Default 2 s.
	NodeTimeout time.Duration
}

// LocalCluster is a 6-node Redis Cluster (3 masters, 3 replicas) of one test's
// own, on loopback, for failover tests. Every node is killed when the test
// ends.
type LocalCluster struct {
	t           testing.TB
	bin         string
	nodeTimeout time.Duration

	mu      sync.Mutex
	nodes   []*clusterNode
	clients []*redis.ClusterClient
}

type clusterNode struct {
	addr string
	port int
	dir  string

	cmd    *exec.Cmd     // nil while killed
	exited chan struct{} // closed when cmd has exited
	rdb    *redis.Client // to this node alone
	slots  [][2]int      // the slots it served when it was killed, if a master
}

// Ports of test clusters: each node's port and its cluster bus (port +
// 10000) stay below the kernel's ephemeral range (32768 and up on Linux),
// so that an outgoing connection never holds one, and away from the
// shared cluster of scripts/cluster.sh (7001-7006).
const clusterPortLow, clusterPortHigh = 12000, 22000

// StartCluster starts a cluster of the test's own: six redis-server
// processes on free ports, three masters with one replica each. It returns
// once every node reports cluster_state:ok and every replica has finished
// its first sync (a replica that has not cannot be promoted).
func StartCluster(t testing.TB, cfg ClusterConfig) *LocalCluster {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found (%v); install it with `make services`", err)
	}
	if cfg.NodeTimeout <= 0 {
		cfg.NodeTimeout = 2 * time.Second
	}
	c := &LocalCluster{t: t, bin: bin, nodeTimeout: cfg.NodeTimeout}
	// The directories first: cleanups run last in first out, and a
	// directory must outlive its node.
	for range 6 {
		c.nodes = append(c.nodes, &clusterNode{dir: t.TempDir()})
	}
	t.Cleanup(c.stopAll)
	used := map[int]bool{}
	for _, n := range c.nodes {
		var err error
		for attempt := 0; attempt < 10; attempt++ {
			n.port = freeClusterPort(used)
			used[n.port] = true
			n.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))
			if err = c.start(n); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("start cluster node: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.create(ctx); err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	if err := c.WaitSynced(ctx); err != nil {
		t.Fatalf("cluster did not come up: %v", err)
	}
	return c
}

// freeClusterPort picks a port, not in used, that is free and whose bus
// port is free too.
func freeClusterPort(used map[int]bool) int {
	for {
		p := clusterPortLow + rand.IntN(clusterPortHigh-clusterPortLow)
		if used[p] || used[p+10000] {
			continue
		}
		if portFree(p) && portFree(p+10000) {
			return p
		}
	}
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// start starts n's redis-server on its port and directory (whose nodes.conf
// a restarted node rejoins with) and waits until it answers.
func (c *LocalCluster) start(n *clusterNode) error {
	cmd := exec.Command(c.bin,
		"--port", strconv.Itoa(n.port), "--bind", "127.0.0.1",
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(c.nodeTimeout.Milliseconds(), 10),
		"--save", "", "--appendonly", "no",
		"--enable-debug-command", "local",
		// A replica's first sync starts at once, not after the 5 s a
		// master waits by default for more replicas to share it.
		"--repl-diskless-sync-delay", "0",
		"--dir", n.dir, "--logfile", filepath.Join(n.dir, "redis.log"))
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	if n.rdb == nil {
		n.rdb = redis.NewClient(&redis.Options{Addr: n.addr, MaxRetries: -1,
			DialTimeout: time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: time.Second})
	}
	for i := 0; ; i++ {
		select {
		case <-exited:
			return fmt.Errorf("redis-server on %s exited: %s", n.addr, logTail(n.dir))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := n.rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			break
		}
		if i == 250 {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s does not answer: %v", n.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	n.cmd, n.exited = cmd, exited
	c.mu.Unlock()
	return nil
}

func logTail(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return strings.TrimSpace(string(b))
}

// create joins the six nodes as redis-cli --cluster create would, without
// its pauses: the slots split in three among the first three nodes, each
// with a config epoch of its own, then the others made their replicas.
func (c *LocalCluster) create(ctx context.Context) error {
	masters, replicas := c.nodes[:3], c.nodes[3:]
	for i, m := range masters {
		lo, hi := i*16384/3, (i+1)*16384/3-1
		if err := m.rdb.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			return fmt.Errorf("%s: ADDSLOTSRANGE: %w", m.addr, err)
		}
		if err := m.rdb.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			return fmt.Errorf("%s: SET-CONFIG-EPOCH: %w", m.addr, err)
		}
	}
	for _, n := range c.nodes[1:] {
		if err := c.nodes[0].rdb.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(n.port)).Err(); err != nil {
			return fmt.Errorf("MEET %s: %w", n.addr, err)
		}
	}
	for i, r := range replicas {
		id, err := masters[i].rdb.ClusterMyID(ctx).Result()
		if err != nil {
			return err
		}
		// A replica must know its master before it can follow it.
		if err := poll(ctx, func() (bool, error) {
			nodes, err := r.rdb.ClusterNodes(ctx).Result()
			return strings.Contains(nodes, id), err
		}); err != nil {
			return fmt.Errorf("%s never learned of %s: %w", r.addr, masters[i].addr, err)
		}
		if err := r.rdb.Do(ctx, "CLUSTER", "REPLICATE", id).Err(); err != nil {
			return fmt.Errorf("%s: REPLICATE: %w", r.addr, err)
		}
	}
	return nil
}

// poll calls cond every 20 ms until it reports true or ctx ends; errors of
// cond count as false, the last one is returned with ctx's.
func poll(ctx context.Context, cond func() (bool, error)) error {
	var last error
	for {
		ok, err := cond()
		if ok && err == nil {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *LocalCluster) stopAll() {
	c.mu.Lock()
	clients := c.clients
	c.clients = nil
	c.mu.Unlock()
	for _, cl := range clients {
		cl.Close()
	}
	for _, n := range c.nodes {
		c.kill(n)
		n.rdb.Close()
	}
}

// node returns the node on addr, failing the test for an unknown address.
func (c *LocalCluster) node(addr string) *clusterNode {
	for _, n := range c.nodes {
		if n.addr == addr {
			return n
		}
	}
	c.t.Fatalf("no node %s in the cluster %v", addr, c.Seeds())
	return nil
}

// live returns the nodes not killed.
func (c *LocalCluster) live() []*clusterNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*clusterNode
	for _, n := range c.nodes {
		if n.cmd != nil {
			out = append(out, n)
		}
	}
	return out
}

// Seeds returns the address of every node, killed or not.
func (c *LocalCluster) Seeds() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

// Client returns a cluster client of this cluster, closed when the test
// ends. opt may be nil; its Addrs default to Seeds.
func (c *LocalCluster) Client(opt *redis.ClusterOptions) *redis.ClusterClient {
	var o redis.ClusterOptions
	if opt != nil {
		o = *opt
	}
	if len(o.Addrs) == 0 {
		o.Addrs = c.Seeds()
	}
	cl := redis.NewClusterClient(&o)
	c.mu.Lock()
	c.clients = append(c.clients, cl)
	c.mu.Unlock()
	return cl
}

// Exec sends one command to the node on addr alone.
func (c *LocalCluster) Exec(ctx context.Context, addr string, args ...any) *redis.Cmd {
	return c.node(addr).rdb.Do(ctx, args...)
}

// nodeLine is one line of CLUSTER NODES.
type nodeLine struct {
	id, addr string
	flags    map[string]bool
	masterID string
	epoch    int64
	slots    [][2]int
}

func parseNodes(s string) []nodeLine {
	var out []nodeLine
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		l := nodeLine{id: f[0], masterID: f[3], flags: map[string]bool{}}
		l.epoch, _ = strconv.ParseInt(f[6], 10, 64)
		l.addr, _, _ = strings.Cut(f[1], "@")
		for _, fl := range strings.Split(f[2], ",") {
			l.flags[fl] = true
		}
		for _, sl := range f[8:] {
			if strings.HasPrefix(sl, "[") {
				continue // a slot being imported or migrated
			}
			a, b, ok := strings.Cut(sl, "-")
			lo, err1 := strconv.Atoi(a)
			hi, err2 := lo, error(nil)
			if ok {
				hi, err2 = strconv.Atoi(b)
			}
			if err1 == nil && err2 == nil {
				l.slots = append(l.slots, [2]int{lo, hi})
			}
		}
		out = append(out, l)
	}
	return out
}

// myself returns the line of the node itself.
func myself(lines []nodeLine) (nodeLine, bool) {
	for _, l := range lines {
		if l.flags["myself"] {
			return l, true
		}
	}
	return nodeLine{}, false
}

func owns(slots [][2]int, slot int) bool {
	for _, r := range slots {
		if r[0] <= slot && slot <= r[1] {
			return true
		}
	}
	return false
}

// MasterOf returns the address of the master that serves key. It asks
// the live nodes (CLUSTER KEYSLOT, CLUSTER NODES) and, since a node may not
// have heard of a promotion yet, believes the claim with the highest
// config epoch. It fails the test when no live node answers.
func (c *LocalCluster) MasterOf(ctx context.Context, key string) string {
	c.t.Helper()
	var (
		last  error
		best  string
		epoch int64 = -1
	)
	for _, n := range c.live() {
		slot, err := n.rdb.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			last = err
			continue
		}
		s, err := n.rdb.ClusterNodes(ctx).Result()
		if err != nil {
			last = err
			continue
		}
		for _, l := range parseNodes(s) {
			if l.flags["master"] && owns(l.slots, int(slot)) && l.epoch > epoch {
				best, epoch = l.addr, l.epoch
			}
		}
	}
	if best == "" {
		c.t.Fatalf("master of %q: no live node answers (%v)", key, last)
	}
	return best
}

// Kill kills the node on addr with SIGKILL and waits until it has exited.
func (c *LocalCluster) Kill(addr string) {
	c.t.Helper()
	n := c.node(addr)
	// Remember what it served, for WaitPromoted.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if s, err := n.rdb.ClusterNodes(ctx).Result(); err == nil {
		if me, ok := myself(parseNodes(s)); ok && me.flags["master"] {
			n.slots = me.slots
		}
	}
	cancel()
	if !c.kill(n) {
		c.t.Fatalf("kill %s: it is not running", addr)
	}
}

func (c *LocalCluster) kill(n *clusterNode) bool {
	c.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return false
	}
	cmd.Process.Kill()
	<-exited
	return true
}

// Restart starts the killed node on addr again, on its port and with its
// nodes.conf: it rejoins the cluster and, when a replica took over its
// slots meanwhile, becomes that one's replica. It holds no data (nothing
// is saved), so it syncs in full; WaitSynced waits for it.
func (c *LocalCluster) Restart(addr string) {
	c.t.Helper()
	n := c.node(addr)
	c.mu.Lock()
	running := n.cmd != nil
	c.mu.Unlock()
	if running {
		c.t.Fatalf("restart %s: it is running", addr)
	}
	if err := c.start(n); err != nil {
		c.t.Fatalf("restart %s: %v", addr, err)
	}
}

// WaitPromoted waits until a node other than oldMaster is master for the
// slots oldMaster served and reports cluster_state:ok, polling the live
// nodes every 20 ms. promotedAt is when it first saw that.
func (c *LocalCluster) WaitPromoted(ctx context.Context, oldMaster string) (newMaster string, promotedAt time.Time, err error) {
	old := c.node(oldMaster)
	slots := old.slots
	if len(slots) == 0 {
		// Not killed by Kill (or a replica then): what the others say it
		// serves now.
		for _, n := range c.live() {
			s, err := n.rdb.ClusterNodes(ctx).Result()
			if err != nil {
				continue
			}
			for _, l := range parseNodes(s) {
				if l.addr == oldMaster {
					slots = l.slots
				}
			}
			break
		}
	}
	if len(slots) == 0 {
		return "", time.Time{}, fmt.Errorf("%s serves no slots", oldMaster)
	}
	slot := slots[0][0]
	err = poll(ctx, func() (bool, error) {
		for _, n := range c.live() {
			if n.addr == oldMaster {
				continue
			}
			s, err := n.rdb.ClusterNodes(ctx).Result()
			if err != nil {
				continue
			}
			me, ok := myself(parseNodes(s))
			if !ok || !me.flags["master"] || !owns(me.slots, slot) {
				continue
			}
			info, err := n.rdb.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				newMaster, promotedAt = n.addr, time.Now()
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("no node took over slot %d of %s: %w", slot, oldMaster, err)
	}
	old.slots = nil
	return newMaster, promotedAt, nil
}

// WaitSynced waits until every live node reports cluster_state:ok, every
// live replica's link to its master is up, and the live masters that
// serve slots are three (a restarted old master that still claims its
// slots has not yet turned into a replica).
func (c *LocalCluster) WaitSynced(ctx context.Context) error {
	var why string
	err := poll(ctx, func() (bool, error) {
		masters := 0
		for _, n := range c.live() {
			info, err := n.rdb.ClusterInfo(ctx).Result()
			if err != nil {
				why = n.addr + ": " + err.Error()
				return false, nil
			}
			if !strings.Contains(info, "cluster_state:ok") {
				why = n.addr + " reports cluster_state:fail"
				return false, nil
			}
			s, err := n.rdb.ClusterNodes(ctx).Result()
			if err != nil {
				why = n.addr + ": " + err.Error()
				return false, nil
			}
			me, _ := myself(parseNodes(s))
			switch {
			case me.flags["master"] && len(me.slots) > 0:
				masters++
			case me.flags["slave"]:
				repl, err := n.rdb.Info(ctx, "replication").Result()
				if err != nil || !strings.Contains(repl, "master_link_status:up") {
					why = n.addr + ": replica link not up"
					return false, nil
				}
			default:
				why = n.addr + " is a master without slots"
				return false, nil
			}
		}
		if masters != 3 {
			why = fmt.Sprintf("%d masters serve slots", masters)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%v: %s", err, why)
	}
	return nil
}

// Unpause lifts a Pause of addr.
func (c *LocalCluster) Unpause(addr string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Exec(ctx, addr, "CLIENT", "UNPAUSE").Err(); err != nil {
		c.t.Fatalf("unpause %s: %v", addr, err)
	}
}

// Pause stops the replica on addr from applying its master's replication
// stream for d, with CLIENT PAUSE <d> WRITE, and returns once the pause
// holds. The replica keeps answering reads and the cluster bus: if its
// master dies meanwhile, it is promoted without the writes it had not
// applied, and they are lost, as with any replica that lags. Once
// promoted, it also holds back writes sent to it until d has passed.
//
// Measured on Redis 7.0 (a write to the master, then a READONLY GET on the
// replica every 5 ms, then the master killed 50 ms after the write):
//   - CLIENT PAUSE WRITE (and ALL) on a replica postpone the commands of
//     its master link like any client's: the replica read the old value
//     for the whole pause (184 reads over 1 s). Killed meanwhile, the
//     master's stream still unapplied is dropped with its link, and the
//     replica was promoted 3.9 s after the kill (node timeout 2 s) without
//     the write.
//   - DEBUG SLEEP (in a goroutine) and SIGSTOP freeze the whole process:
//     replication waits too, but so do the cluster bus and every reader,
//     and nothing is lost. The stream the master sent before it died
//     waits in the socket and is applied on waking, and only then can the
//     replica run for election: it was promoted 6.6-6.9 s after the kill
//     with the write, having slept 6 s.
func (c *LocalCluster) Pause(addr string, d time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ms := max(d.Milliseconds(), 1)
	if err := c.Exec(ctx, addr, "CLIENT", "PAUSE", ms, "WRITE").Err(); err != nil {
		c.t.Fatalf("pause %s: %v", addr, err)
	}
}
