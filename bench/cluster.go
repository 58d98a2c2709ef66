package main

// Comparisons: scenarios that run variants of one workload side by side in
// the same rounds (a single Redis against a Redis Cluster, a manager with
// an option against one without) and report, besides each variant's ops/s,
// their ratio and what each cost the Redis servers, node by node.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/examples/flashsale/inventory/drop"
	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
)

// The comparisons have a schema and a namespace of their own, so that the
// other scenarios' TRUNCATEs and key clears do not touch their items.
const (
	scaleSchema    = "invgen_bench_scale"
	scaleNamespace = "invgen-bench-scale"
	manySKUs       = 10_000
	// skuStock is each item's stock: a realistic one, not bigStock. Init
	// gives an item a filter of its purchases' op keys sized by its
	// capacity (runtime/scripts/load.lua): 16 bits a unit, at most
	// 128 KiB, which 10,000 items of bigStock would take each, growing it
	// by SETBIT on their first purchases.
	skuStock      = 1_000
	soldOutUnits  = 5
	soldOutPeriod = 300 * time.Millisecond
)

// defaultClusterSeeds are the masters of scripts/cluster.sh's cluster.
const defaultClusterSeeds = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"

// comparison is one scenario of variants. Each variant is a step of the
// rounds, like the other scenarios; report prints the comparison's lines
// under the table from the median round of each variant it ran.
type comparison struct {
	steps  []step
	report func(by map[string]result)
}

// comparisons lists the comparison scenarios in the order they run. A
// new one is one function returning its comparison (its variants made
// steps by b.step, and its report), added to this list.
func (b *bench) comparisons() []comparison {
	return []comparison{b.manySKUs(), b.soldOut(), b.hotSKU()}
}

// step is one scenario of the rounds.
type step struct {
	name    string
	cluster bool // runs against the Redis Cluster
	run     func() (result, error)
}

// variant describes one step of a comparison.
type variant struct {
	name    string
	cluster bool           // it runs against b.cluster
	target  func() *target // read when it runs: b.cluster is opened after the comparisons are listed
	calls   *callCounter   // counts the Redis commands of its client; default: its target's
	// prepare runs before each of its rounds (run counts them from 1) and
	// returns the op the round hammers; an op that returns nil counts.
	prepare func(ctx context.Context, run int) (func(ctx context.Context, seq int64) error, error)
	// check, if set, runs after each round.
	check func(ctx context.Context) error
	// note is the table's note of a round.
	note func(*runStats) string
}

// step makes v a step of the rounds, measured node by node.
func (b *bench) step(v variant) step {
	runs := 0
	return step{name: v.name, cluster: v.cluster, run: func() (result, error) {
		ctx := context.Background()
		runs++
		op, err := v.prepare(ctx, runs)
		if err != nil {
			return result{name: v.name}, err
		}
		t, calls := v.target(), v.calls
		if calls == nil {
			calls = t.calls
		}
		ops, st, err := b.measured(t, calls, op)
		if err == nil && v.check != nil {
			err = v.check(ctx)
		}
		if err != nil {
			return result{name: v.name}, err
		}
		return result{name: v.name, ops: ops, note: v.note(st), stats: st}, nil
	}}
}

// target is a Redis deployment a comparison runs against.
type target struct {
	name  string
	rdb   redis.UniversalClient
	calls *callCounter // counts rdb's commands
	nodes []node       // every server, masters first, for INFO
}

type node struct {
	rdb    *redis.Client
	master bool
}

func (t *target) addr(i int) string { return t.nodes[i].rdb.Options().Addr }

// singleTarget is the local Redis that every other scenario uses, through
// a client of its own that counts its commands.
func singleTarget(rdb *redis.Client) *target {
	opt := *rdb.Options()
	c := redis.NewClient(&opt)
	calls := &callCounter{}
	c.AddHook(calls)
	return &target{name: "single Redis " + opt.Addr, rdb: c, calls: calls, nodes: []node{{rdb: rdb, master: true}}}
}

// openCluster connects to the Redis Cluster of INVGEN_REDIS_CLUSTER (seed
// addresses, comma-separated), with the client options the runtime's
// failover tests use, and checks that every node reports cluster_state:ok.
func openCluster(ctx context.Context) (*target, error) {
	var seeds []string
	for _, s := range strings.Split(env("INVGEN_REDIS_CLUSTER", defaultClusterSeeds), ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:        seeds,
		DialTimeout:  500 * time.Millisecond,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		PoolSize:     2 * buyers, // per node
	})
	var (
		mu      sync.Mutex
		masters = map[string]bool{}
		nodes   []node
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		masters[c.Options().Addr] = true
		return nil
	})
	if err == nil {
		err = cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return fmt.Errorf("%s: %w", c.Options().Addr, err)
			}
			if s := field(info, "cluster_state"); s != "ok" {
				return fmt.Errorf("%s reports cluster_state:%s", c.Options().Addr, s)
			}
			mu.Lock()
			defer mu.Unlock()
			nodes = append(nodes, node{rdb: c, master: masters[c.Options().Addr]})
			return nil
		})
	}
	if err != nil {
		cc.Close()
		return nil, fmt.Errorf("the Redis Cluster at %s (INVGEN_REDIS_CLUSTER) is not ok: %w; start it with `bash scripts/cluster.sh start` (make bench does), or leave its scenarios out with -only",
			strings.Join(seeds, ","), err)
	}
	sort.Slice(nodes, func(i, j int) bool {
		if nodes[i].master != nodes[j].master {
			return nodes[i].master
		}
		return nodes[i].rdb.Options().Addr < nodes[j].rdb.Options().Addr
	})
	calls := &callCounter{}
	cc.AddHook(calls)
	return &target{name: fmt.Sprintf("%d-master Redis Cluster", len(masters)), rdb: cc, calls: calls, nodes: nodes}, nil
}

// --- measuring ------------------------------------------------------------

// runStats is what one run of a variant cost: per node of its target, the
// Redis time and CPU it used; this process's CPU; the Redis commands the
// variant's client sent.
type runStats struct {
	t         *target
	ops       int64
	nodes     []nodeDelta
	clientCPU time.Duration
	calls     int64 // commands the variant's client sent
	scripts   int64 // of which EVALSHA and EVAL
}

type nodeDelta struct {
	scripts    int64         // EVALSHA and EVAL calls
	scriptUsec int64         // their time, by INFO commandstats
	cpu        time.Duration // the main thread's CPU, by INFO cpu
}

// foreign is the share of the script calls the target's masters ran
// during the run that did not come from the variant's client: other
// clients of a shared server, whose work the per-node figures then
// include. (Commands are not compared: those a script runs count in
// commandstats too.)
func (s *runStats) foreign() float64 {
	var all int64
	for i, d := range s.nodes {
		if s.t.nodes[i].master {
			all += d.scripts
		}
	}
	if all <= 0 || s.scripts >= all {
		return 0
	}
	return float64(all-s.scripts) / float64(all)
}

// nodeSnap reads a node's counters.
func nodeSnap(ctx context.Context, c *redis.Client) (nodeDelta, error) {
	var d nodeDelta
	stats, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return d, err
	}
	for _, line := range strings.Split(stats, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		var calls, usec int64 // per command
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				calls, _ = strconv.ParseInt(v, 10, 64)
			case "usec":
				usec, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if name == "evalsha" || name == "eval" {
			d.scripts += calls
			d.scriptUsec += usec
		}
	}
	cpu, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		return d, err
	}
	sec := 0.0
	for _, f := range []string{"used_cpu_user_main_thread", "used_cpu_sys_main_thread"} {
		v, err := strconv.ParseFloat(field(cpu, f), 64)
		if err != nil { // before Redis 6.2: the whole process
			v, _ = strconv.ParseFloat(field(cpu, strings.TrimSuffix(f, "_main_thread")), 64)
		}
		sec += v
	}
	d.cpu = time.Duration(sec * float64(time.Second))
	return d, nil
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measured runs op like hammer, counting an op that returns nil, and
// reads what the run cost around it.
func (b *bench) measured(t *target, calls *callCounter, op func(ctx context.Context, seq int64) error) (float64, *runStats, error) {
	ctx := context.Background()
	before := make([]nodeDelta, len(t.nodes))
	for i, n := range t.nodes {
		s, err := nodeSnap(ctx, n.rdb)
		if err != nil {
			return 0, nil, fmt.Errorf("INFO of %s: %w", t.addr(i), err)
		}
		before[i] = s
	}
	calls0, scripts0 := calls.n.Load(), calls.scripts.Load()
	cpu0 := processCPU()
	n, took, err := b.hammerN(op)
	st := &runStats{t: t, ops: n, clientCPU: processCPU() - cpu0, calls: calls.n.Load() - calls0, scripts: calls.scripts.Load() - scripts0}
	for i, nd := range t.nodes {
		s, serr := nodeSnap(ctx, nd.rdb)
		if serr != nil {
			return 0, nil, fmt.Errorf("INFO of %s: %w", t.addr(i), serr)
		}
		st.nodes = append(st.nodes, nodeDelta{
			scripts:    s.scripts - before[i].scripts,
			scriptUsec: s.scriptUsec - before[i].scriptUsec,
			cpu:        s.cpu - before[i].cpu,
		})
	}
	return float64(n) / took.Seconds(), st, err
}

// callCounter is a go-redis hook that counts the commands a client sends,
// one per command of a pipeline, but not the handshake of each new
// connection (HELLO, CLIENT SETINFO); and the script calls among them.
type callCounter struct{ n, scripts atomic.Int64 }

func (c *callCounter) count(cmd redis.Cmder) {
	switch cmd.Name() {
	case "hello", "client":
	case "evalsha", "eval", "evalsha_ro", "eval_ro":
		c.scripts.Add(1)
		c.n.Add(1)
	default:
		c.n.Add(1)
	}
}

func (c *callCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *callCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}

func (c *callCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

// perOp is µs of d per op.
func perOp(d time.Duration, ops int64) float64 {
	if ops == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(ops)
}

// scriptsPerOp is the script calls an op made, as its client counted
// them.
func (s *runStats) scriptsPerOp() float64 {
	if s.ops == 0 {
		return 0
	}
	return float64(s.scripts) / float64(s.ops)
}

// printNodes prints, node by node, what an op cost its server: the share
// of the script calls it ran, µs per script call (commandstats: command
// execution only), and main-thread CPU µs per op it served (INFO cpu:
// everything, network I/O too). A replica serves no op; its CPU is per op
// of the whole target.
func printNodes(w *tabwriter.Writer, label string, s *runStats) {
	var scripts int64
	for _, d := range s.nodes {
		scripts += d.scripts
	}
	for i, d := range s.nodes {
		if !s.t.nodes[i].master {
			fmt.Fprintf(w, "  %s\t%s replica\t\t\t%.1f µs per op of the cluster (replication)\n", label, s.t.addr(i), perOp(d.cpu, s.ops))
			continue
		}
		share, served := 0.0, int64(0)
		if scripts > 0 {
			share = float64(d.scripts) / float64(scripts)
			served = int64(share * float64(s.ops))
		}
		usecPerCall := 0.0
		if d.scripts > 0 {
			usecPerCall = float64(d.scriptUsec) / float64(d.scripts)
		}
		fmt.Fprintf(w, "  %s\t%s master\t%.0f%% of calls\t%.1f µs/script call\t%.1f µs CPU per op served\n",
			label, s.t.addr(i), 100*share, usecPerCall, perOp(d.cpu, served))
	}
	if f := s.foreign(); f > 0.01 {
		fmt.Fprintf(w, "  %s\t(%.0f%% of the masters' script calls came from other clients: these figures include their work)\n", label, 100*f)
	}
}

// --- 5. many SKUs: one master against three --------------------------------

// Scenario names, as the table shows them.
const (
	nSKUsSingle  = "5. 10,000 SKUs: stream Decr, single Redis"
	nSKUsCluster = "5. 10,000 SKUs: stream Decr, Redis Cluster"
)

// manySKUs: purchases spread uniformly over 10,000 items of the stream
// prefix (drop), whose purchases touch Redis only, on the single Redis and
// on the cluster. The flusher is off: it would add PostgreSQL's work on
// the same CPUs and measure less of Redis; the streams are dropped at the
// end.
func (b *bench) manySKUs() comparison {
	on := func(name, item string, cluster bool, t func() *target) step {
		var m *drop.Manager
		return b.step(variant{name: name, cluster: cluster, target: t,
			prepare: func(ctx context.Context, run int) (func(ctx context.Context, seq int64) error, error) {
				if m == nil {
					var err error
					if m, err = b.initSKUs(ctx, t(), item); err != nil {
						return nil, err
					}
				}
				return purchases(m, run, func() string { return item + strconv.Itoa(rand.IntN(manySKUs)) }), nil
			},
			note: scriptsNote,
		})
	}
	return comparison{
		steps: []step{
			on(nSKUsSingle, "s-", false, func() *target { return b.single }),
			on(nSKUsCluster, "c-", true, func() *target { return b.cluster }),
		},
		report: b.reportSKUs,
	}
}

// purchases is the op of a round of purchases of one unit each, of the
// item that pick names, with op keys new in every round.
func purchases(m *drop.Manager, run int, pick func() string) func(ctx context.Context, seq int64) error {
	prefix := "r" + strconv.Itoa(run) + "-"
	return func(ctx context.Context, seq int64) error {
		_, err := m.Decr(ctx, pick(), 1, prefix+strconv.FormatInt(seq, 10))
		return err
	}
}

func scriptsNote(st *runStats) string {
	return fmt.Sprintf("%.2f script calls per purchase; no flusher", st.scriptsPerOp())
}

// initSKUs creates the drop manager of the comparisons on t and its
// 10,000 items, named prefix0..prefix9999 (the two targets share the
// ledger), 64 at a time.
func (b *bench) initSKUs(ctx context.Context, t *target, prefix string) (*drop.Manager, error) {
	m, err := drop.New(b.scalePool, t.rdb, drop.WithNamespace(scaleNamespace))
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, m.Close)
	if err := m.CreateTables(ctx); err != nil {
		return nil, err
	}
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		first atomic.Pointer[error]
	)
	start := time.Now()
	for range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < manySKUs; i = next.Add(1) - 1 {
				if err := m.Init(ctx, prefix+strconv.FormatInt(i, 10), skuStock); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := first.Load(); err != nil {
		return nil, fmt.Errorf("init of the items: %w", *err)
	}
	fmt.Fprintf(os.Stderr, "  (%d items created on the %s in %v)\n", manySKUs, t.name, time.Since(start).Round(time.Millisecond))
	return m, nil
}

func (b *bench) reportSKUs(by map[string]result) {
	single, cluster := by[nSKUsSingle], by[nSKUsCluster]
	if single.stats == nil && cluster.stats == nil {
		return
	}
	fmt.Println()
	fmt.Printf("5. %d SKUs of %d units, uniform random purchases, %d buyers, stream ledger without its flusher:\n", manySKUs, skuStock, buyers)
	if single.stats != nil && cluster.stats != nil {
		fmt.Printf("  %s / single Redis   %.2fx  (one client process; the cluster's %d nodes and the client share this machine's %d CPUs)\n",
			b.cluster.name, cluster.ops/single.ops, len(b.cluster.nodes), b.cpus)
	}
	fmt.Println("  per node, in each one's median round (commandstats time is command execution only; CPU is the server's main thread, network I/O included):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	for _, r := range []result{single, cluster} {
		if r.stats != nil {
			label := "single"
			if r.stats.t != b.single {
				label = "cluster"
			}
			printNodes(tw, label, r.stats)
		}
	}
	tw.Flush()
	if b.cluster != nil {
		b.printShards()
	}
	b.printProjection(single.stats, cluster.stats)
}

// printProjection prints what N masters on N machines would give on
// paper, from each run's cost per purchase on its masters: by
// commandstats (wall time inside the script, which on this machine also
// counts the time a server waited for a CPU) and by INFO cpu (the main
// thread's CPU, network I/O included), capped by what one client process
// like this one can send.
func (b *bench) printProjection(runs ...*runStats) {
	type basis struct {
		label           string
		perCall, perCPU float64 // µs per purchase
		clientCap       float64
	}
	var bases []basis
	for _, st := range runs {
		if st == nil || st.ops == 0 {
			continue
		}
		var scripts, usec int64
		var cpu time.Duration
		for i, d := range st.nodes {
			if st.t.nodes[i].master {
				scripts += d.scripts
				usec += d.scriptUsec
				cpu += d.cpu
			}
		}
		if scripts == 0 {
			continue
		}
		bases = append(bases, basis{
			label:     st.t.name + " run",
			perCall:   float64(usec) / float64(scripts) * st.scriptsPerOp(),
			perCPU:    perOp(cpu, st.ops),
			clientCap: float64(b.cpus) * 1e6 / perOp(st.clientCPU, st.ops),
		})
	}
	if len(bases) == 0 {
		return
	}
	fmt.Println("  projection, on paper (NOT measured): N masters, each alone on a machine and saturated at one core, purchases spread evenly,")
	fmt.Println("  capped by one client process like this one (its CPU µs per purchase, on this machine's CPUs):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "    basis\tµs/purchase by commandstats\tby INFO cpu\tclient cap\tN=1\tN=3\tN=10\t")
	for _, x := range bases {
		fmt.Fprintf(tw, "    %s\t%.1f\t%.1f\t%.0f/s\t", x.label, x.perCall, x.perCPU, x.clientCap)
		for _, n := range []float64{1, 3, 10} {
			a, c := min(n*1e6/x.perCall, x.clientCap), min(n*1e6/x.perCPU, x.clientCap)
			fmt.Fprintf(tw, "%.0f-%.0f/s\t", min(a, c), max(a, c))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Println("  (N=k: k × 1e6 / µs per purchase, by commandstats and by CPU, the lower first, each capped by the client;")
	fmt.Println("  an uneven spread of the shards over the masters, as above, gives less)")
}

// printShards prints how the drop prefix's shards fall on the cluster's
// masters: every key of an item is under its shard's hash tag, so the
// busiest master's share of the shards bounds what the cluster can give.
func (b *bench) printShards() {
	cc, ok := b.cluster.rdb.(*redis.ClusterClient)
	if !ok {
		return
	}
	per := map[string]int{}
	for s := range drop.Shards {
		n, err := cc.MasterForKey(context.Background(), fmt.Sprintf("{%s:%d}", drop.Prefix, s))
		if err != nil {
			return
		}
		per[n.Options().Addr]++
	}
	var parts []string
	busiest := 0
	for i, n := range b.cluster.nodes {
		if n.master {
			parts = append(parts, fmt.Sprintf("%s %d", b.cluster.addr(i), per[b.cluster.addr(i)]))
			busiest = max(busiest, per[b.cluster.addr(i)])
		}
	}
	fmt.Printf("  the prefix's %d shards per master: %s; the busiest master serves %d/%d of the items, so these masters give at most %.2fx one master\n",
		drop.Shards, strings.Join(parts, ", "), busiest, drop.Shards, float64(drop.Shards)/float64(busiest))
}

// --- 6. refusals after a sell-out, with and without the fast path -----------

const (
	nSoldOutPlain = "6. sold out: refused Decr, no fast path"
	nSoldOutFast  = "6. sold out: refused Decr, WithSoldOutCache(300ms)"
)

// soldOut: an item of the sync prefix (flash_sale) with a few units, sold
// out, then 64 buyers trying to buy it with new op keys, on the single
// Redis; refusals per second and Redis commands per refusal (counted by a
// hook on the variant's client), without and with the sold-out fast path.
func (b *bench) soldOut() comparison {
	on := func(name, tag string, opts ...flashsale.Option) step {
		var (
			m     *flashsale.Manager
			calls = &callCounter{}
			item  string
		)
		return b.step(variant{name: name, target: func() *target { return b.single }, calls: calls,
			prepare: func(ctx context.Context, run int) (func(ctx context.Context, seq int64) error, error) {
				if m == nil {
					opt := *b.single.nodes[0].rdb.Options()
					rdb := redis.NewClient(&opt)
					rdb.AddHook(calls)
					b.closers = append(b.closers, func(context.Context) error { return rdb.Close() })
					var err error
					if m, err = flashsale.New(b.scalePool, rdb, append(opts, flashsale.WithNamespace(scaleNamespace))...); err != nil {
						return nil, err
					}
					b.closers = append(b.closers, m.Close)
					if err := m.CreateTables(ctx); err != nil {
						return nil, err
					}
				}
				// A new item every round, sold out before the round.
				item = fmt.Sprintf("gone-%s-%d", tag, run)
				if err := m.Init(ctx, item, soldOutUnits); err != nil {
					return nil, err
				}
				for i := range soldOutUnits + 1 {
					_, err := m.Decr(ctx, item, 1, "sell-"+strconv.Itoa(i))
					if i < soldOutUnits && err != nil || i == soldOutUnits && !errors.Is(err, flashsale.ErrInsufficientStock) {
						return nil, fmt.Errorf("selling out %s: purchase %d: %v", item, i+1, err)
					}
				}
				return func(ctx context.Context, seq int64) error {
					_, err := m.Decr(ctx, item, 1, "r"+strconv.FormatInt(seq, 10))
					switch {
					case errors.Is(err, flashsale.ErrInsufficientStock):
						return nil
					case err == nil:
						return fmt.Errorf("a purchase of sold-out %s succeeded", item)
					}
					return err
				}, nil
			},
			check: func(ctx context.Context) error {
				if left, err := m.Get(ctx, item); err != nil || left != 0 {
					return fmt.Errorf("%s: %d left after the round (%v), want 0", item, left, err)
				}
				return nil
			},
			note: func(st *runStats) string {
				return fmt.Sprintf("%.4f Redis commands per refusal", float64(st.calls)/float64(st.ops))
			},
		})
	}
	return comparison{
		steps: []step{
			on(nSoldOutPlain, "plain"),
			on(nSoldOutFast, "fast", flashsale.WithSoldOutCache(soldOutPeriod)),
		},
		report: b.reportSoldOut,
	}
}

func (b *bench) reportSoldOut(by map[string]result) {
	plain, fast := by[nSoldOutPlain], by[nSoldOutFast]
	if plain.stats == nil && fast.stats == nil {
		return
	}
	fmt.Println()
	fmt.Printf("6. refused purchases of a sold-out item (%d units, sold), %d buyers with new op keys, single Redis:\n", soldOutUnits, buyers)
	if plain.stats != nil && fast.stats != nil {
		fmt.Printf("  WithSoldOutCache(%v) / no fast path   %.1fx refusals/s\n", soldOutPeriod, fast.ops/plain.ops)
	}
	for _, r := range []result{plain, fast} {
		if st := r.stats; st != nil {
			fmt.Printf("  %-52s %10.4f Redis commands, %6.2f µs Redis CPU, %6.2f µs client CPU per refusal\n",
				r.name, float64(st.calls)/float64(st.ops), perOp(st.nodes[0].cpu, st.ops), perOp(st.clientCPU, st.ops))
		}
	}
}

// clearTarget deletes the keys of namespace ns from every master of t.
func clearTarget(ctx context.Context, t *target, ns string) error {
	for _, n := range t.nodes {
		if n.master {
			if err := clearNS(ctx, n.rdb, ns); err != nil {
				return err
			}
		}
	}
	return nil
}

// --- 7. one hot SKU: one bucket against four, on the cluster ----------------

const (
	nHotOne  = "7. hot SKU: stream Decr, 1 bucket, Redis Cluster"
	nHotFour = "7. hot SKU: stream Decr, 4 buckets, Redis Cluster"
	hotSKUs  = 4 // the split item's buckets
)

// hotSKU: 64 buyers on one item of the stream prefix (drop) on the
// cluster, stored in one bucket (one master serves it all) against four
// (InitBuckets: its purchases spread over the masters). The flusher is off,
// as in scenario 5.
func (b *bench) hotSKU() comparison {
	on := func(name, item string, buckets int) step {
		var m *drop.Manager
		return b.step(variant{name: name, cluster: true, target: func() *target { return b.cluster },
			prepare: func(ctx context.Context, run int) (func(ctx context.Context, seq int64) error, error) {
				if m == nil {
					var err error
					if m, err = drop.New(b.scalePool, b.cluster.rdb, drop.WithNamespace(scaleNamespace)); err != nil {
						return nil, err
					}
					b.closers = append(b.closers, m.Close)
					if err := m.CreateTables(ctx); err != nil {
						return nil, err
					}
					if err := m.InitBuckets(ctx, item, bigStock, buckets); err != nil {
						return nil, err
					}
				}
				return purchases(m, run, func() string { return item }), nil
			},
			note: scriptsNote,
		})
	}
	return comparison{
		steps: []step{
			on(nHotOne, "hot-1", 1),
			on(nHotFour, "hot-4", hotSKUs),
		},
		report: b.reportHot,
	}
}

func (b *bench) reportHot(by map[string]result) {
	one, four := by[nHotOne], by[nHotFour]
	if one.stats == nil || four.stats == nil {
		return
	}
	fmt.Println()
	fmt.Printf("7. one hot SKU, %d buyers, stream ledger without its flusher, on %s:\n", buyers, b.cluster.name)
	fmt.Printf("  %d buckets / 1 bucket   %.2fx purchases/s  (one client process; the cluster's %d nodes and the client share this machine's %d CPUs)\n",
		hotSKUs, four.ops/one.ops, len(b.cluster.nodes), b.cpus)
	b.printBuckets("hot-4", hotSKUs)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	printNodes(tw, "1 bucket", one.stats)
	printNodes(tw, fmt.Sprintf("%d buckets", hotSKUs), four.stats)
	tw.Flush()
	// On paper: a master alone on a machine serves 10^6 / (µs per
	// purchase) purchases a second; one bucket puts every purchase on one
	// master, four put on the busiest master its share of the buckets.
	var cost float64
	var most int64
	for i, n := range one.stats.nodes {
		if one.stats.t.nodes[i].master && n.scripts > most {
			most, cost = n.scripts, float64(n.scriptUsec)/float64(n.scripts)
		}
	}
	if cost > 0 {
		busiest := b.busiestShare("hot-4", hotSKUs)
		fmt.Printf("  on paper, each master alone on a machine: 1 bucket %.0f purchases/s (its master at %.1f µs of script per purchase); %d buckets %.0f/s (the busiest master takes %.0f%% of them)\n",
			1e6/cost, cost, hotSKUs, 1e6/cost/busiest, 100*busiest)
	}
}

// bucketMasters returns the address of the master of each Redis hash of
// item (one per bucket), found by scanning the masters.
func (b *bench) bucketMasters(item string) []string {
	var out []string
	for i, n := range b.cluster.nodes {
		if !n.master {
			continue
		}
		keys, _, err := n.rdb.Scan(context.Background(), 0, scaleNamespace+":*}:item:"+item, 1_000_000).Result()
		if err != nil {
			return nil
		}
		for range keys {
			out = append(out, b.cluster.addr(i))
		}
	}
	return out
}

// busiestShare is the share of the buckets that the busiest master serves.
func (b *bench) busiestShare(item string, n int) float64 {
	per := map[string]int{}
	busiest := 0
	for _, a := range b.bucketMasters(item) {
		per[a]++
		busiest = max(busiest, per[a])
	}
	if busiest == 0 {
		return 1
	}
	return float64(busiest) / float64(n)
}

func (b *bench) printBuckets(item string, n int) {
	if m := b.bucketMasters(item); m != nil {
		fmt.Printf("  the %d buckets' masters: %s\n", n, strings.Join(m, ", "))
	}
}
