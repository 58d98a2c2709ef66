// Command bench measures invgen against the limits of its parts, in one
// process run against the local Redis and PostgreSQL: each scenario runs for
// a fixed time with 64 concurrent buyers on one hot SKU, and the table
// gives ops/s and the ratios the project's targets are stated in.
//
// Scenarios 5 and 6 are comparisons (cluster.go): 10,000 SKUs on the
// single Redis against the Redis Cluster of INVGEN_REDIS_CLUSTER (seeds,
// comma-separated; default scripts/cluster.sh's masters), with each
// node's Redis time and CPU per purchase and a projection, labelled as
// such, of N masters on N machines; and refusals of a sold-out item
// without and with the sold-out fast path, with Redis commands per
// refusal. Scenario 7 buys one hot SKU on the cluster, its stock in one
// bucket against four (InitBuckets), with each master's share. Ratios
// compare scenarios of the same run only.
//
//	make bench            # or: go run ./bench -d 5s
//	go run ./bench -only 5. -d 2s -rounds 1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/examples/flashsale/inventory/drop"
	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	invrt "github.com/invgen/invgen/runtime"
)

var (
	only   string
	rounds int
)

const (
	schema    = "invgen_bench"
	namespace = "invgen-bench"
	buyers    = 64
	bigStock  = 90_000_000_000_000
)

func main() {
	dur := flag.Duration("d", 3*time.Second, "how long each scenario runs, per round")
	flag.IntVar(&rounds, "rounds", 3, "rounds over all scenarios; the table shows each one's median")
	items := flag.Int("items", 100_000, "items for the RefreshAll scenario")
	flag.StringVar(&only, "only", "", "run only the scenarios whose name contains this, or one of its |-separated parts (e.g. \"5.\", \"cluster\", \"2.|3.|8.|9.\"), without RefreshAll")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to `file`")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if err := run(context.Background(), *dur, *items); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// selects reports whether -only selects scenario name: it is empty, or one
// of its |-separated parts is in the name.
func selects(name string) bool {
	if only == "" {
		return true
	}
	for _, part := range strings.Split(only, "|") {
		if part != "" && strings.Contains(name, part) {
			return true
		}
	}
	return false
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type bench struct {
	pool *pgxpool.Pool
	rdb  *redis.Client
	dur  time.Duration
	cpus int

	// The comparisons' (cluster.go).
	single, cluster *target // cluster: nil unless a selected step needs it
	scalePool       *pgxpool.Pool
	closers         []func(context.Context) error
}

// result is one row of the table.
type result struct {
	name  string
	ops   float64
	note  string
	stats *runStats // the comparisons': what the run cost, node by node
}

func run(ctx context.Context, dur time.Duration, nItems int) error {
	dbURL := env("INVGEN_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable")
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE; CREATE SCHEMA "+schema); err != nil {
		return err
	}
	var pgVersion string
	admin.QueryRow(ctx, "SHOW server_version").Scan(&pgVersion)
	admin.Close(ctx)
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = buyers
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	opt, err := redis.ParseURL(env("INVGEN_REDIS_URL", "redis://127.0.0.1:6379/0"))
	if err != nil {
		return err
	}
	opt.PoolSize = 2 * buyers
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := clear(ctx, rdb); err != nil {
		return err
	}
	defer clear(context.Background(), rdb)
	b := &bench{pool: pool, rdb: rdb, dur: dur, cpus: runtime.NumCPU()}

	// Every scenario, in the order of the table; the comparisons' after the
	// others.
	steps := []step{
		{name: nBare, run: b.bareLua},
		{name: nStreamAlone, run: b.streamLuaAlone},
		{name: nStreamLimit, run: b.streamLimit},
		{name: nStreamDecr, run: b.streamDecr},
		{name: nSyncLimit, run: b.syncLimit},
		{name: nSyncDecr, run: b.syncDecr},
		{name: nDBOnly, run: b.dbOnly},
		{name: nWatch, run: b.watchMulti},
	}
	engines, err := b.openEngines(ctx)
	if err != nil {
		return err
	}
	for _, e := range engines {
		defer e.close()
	}
	steps = append(steps, b.engineSteps(engines[0], [3]string{nMySQLLimit, nMySQLSync, nMySQLStream})...)
	steps = append(steps, b.engineSteps(engines[1], [3]string{nLiteLimit, nLiteSync, nLiteStream})...)
	comparisons := b.comparisons()
	compared := map[string]bool{}
	for _, c := range comparisons {
		for _, s := range c.steps {
			steps = append(steps, s)
			compared[s.name] = true
		}
	}
	var selected []step
	scale, cluster := false, false
	for _, s := range steps {
		if selects(s.name) {
			selected = append(selected, s)
			scale = scale || compared[s.name]
			cluster = cluster || s.cluster
		}
	}
	if len(selected) == 0 {
		return fmt.Errorf("-only %q selects no scenario", only)
	}
	if scale {
		closeScale, err := b.openScale(ctx, dbURL, cluster)
		if err != nil {
			return err
		}
		defer closeScale()
	}

	info := rdb.Info(ctx, "server").Val()
	redisVersion := field(info, "redis_version")
	cpu := strings.TrimSpace(field(readFile("/proc/cpuinfo"), "model name"))
	fmt.Printf("invgen bench: %d buyers (on one hot SKU unless said); median of %d rounds of %v per scenario; %d CPUs (%s), Go %s, Redis %s, PostgreSQL %s\n",
		buyers, rounds, dur, runtime.NumCPU(), cpu, strings.TrimPrefix(runtime.Version(), "go"), redisVersion, pgVersion)
	if b.cluster != nil {
		fmt.Printf("Redis Cluster: %s, %d nodes (%s first)\n", b.cluster.name, len(b.cluster.nodes), b.cluster.addr(0))
	}

	// Scenarios run in rounds, interleaved, so that a slow stretch of the
	// machine (a checkpoint, autovacuum) does not land on one of them only.
	runs := map[string][]result{}
	add := func(r result, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		fmt.Fprintf(os.Stderr, "  %-58s %10.0f ops/s %s\n", r.name, r.ops, r.note)
		runs[r.name] = append(runs[r.name], r)
		return nil
	}
	for round := range rounds {
		fmt.Fprintf(os.Stderr, "round %d of %d\n", round+1, rounds)
		for _, s := range selected {
			if err := add(s.run()); err != nil {
				return err
			}
		}
	}
	var rows []result
	by := map[string]result{}
	for _, s := range selected {
		if rs := runs[s.name]; len(rs) > 0 {
			sort.Slice(rs, func(i, j int) bool { return rs[i].ops < rs[j].ops })
			rows = append(rows, rs[len(rs)/2])
			by[s.name] = rs[len(rs)/2]
		}
	}
	var refresh time.Duration
	if only == "" {
		var err error
		if refresh, err = b.refreshAll(ctx, nItems); err != nil {
			return err
		}
	}

	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "scenario\tops/s\tnote\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t\n", r.name, r.ops, r.note)
	}
	tw.Flush()
	// A ratio is printed when both of its scenarios ran.
	var ratios []string
	ratio := func(a, c, label, target string) {
		if ra, ok := by[a]; ok {
			if rc, ok := by[c]; ok {
				ratios = append(ratios, fmt.Sprintf("  %-40s%.2fx%s", label, ra.ops/rc.ops, target))
			}
		}
	}
	ratio(nStreamDecr, nStreamLimit, "stream Decr / stream limit", "  (>= 0.9x)")
	ratio(nSyncDecr, nSyncLimit, "sync Decr / sync limit", "  (>= 0.8x)")
	ratio(nStreamDecr, nDBOnly, "stream Decr / database-only", "  (>= 25x)")
	ratio(nStreamDecr, nWatch, "stream Decr / WATCH-MULTI-EXEC", "")
	ratio(nStreamAlone, nBare, "stream Lua alone / bare Lua", "  (what idempotency + the stream append cost)")
	ratio(nStreamLimit, nStreamAlone, "stream limit / stream Lua alone", "  (what the flusher beside it costs)")
	ratio(nSyncLimit, nBare, "sync limit / bare Lua", "  (what one INSERT per purchase costs)")
	ratio(nMySQLSync, nMySQLLimit, "MariaDB sync Decr / its sync limit", "")
	ratio(nMySQLStream, nMySQLLimit, "MariaDB stream Decr / its sync limit", "")
	ratio(nMySQLSync, nSyncDecr, "MariaDB sync Decr / PostgreSQL's", "")
	ratio(nLiteSync, nLiteLimit, "SQLite sync Decr / its sync limit", "")
	ratio(nLiteStream, nLiteLimit, "SQLite stream Decr / its sync limit", "")
	ratio(nLiteSync, nSyncDecr, "SQLite sync Decr / PostgreSQL's", "")
	if len(ratios) > 0 {
		fmt.Println()
		fmt.Println("ratios (target):")
		fmt.Println(strings.Join(ratios, "\n"))
	}
	for _, c := range comparisons {
		c.report(by)
	}
	if only == "" {
		fmt.Printf("\nRefreshAll of %d items: %v (target < 5s)\n", nItems, refresh.Round(time.Millisecond))
	}
	return nil
}

// openScale prepares the comparisons: their schema, a pool of it, the
// Redis Cluster when wanted, and their namespace emptied on each target.
// It returns what undoes it.
func (b *bench) openScale(ctx context.Context, dbURL string, cluster bool) (func(), error) {
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	_, err = admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+scaleSchema+" CASCADE; CREATE SCHEMA "+scaleSchema)
	admin.Close(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	// Purchases of the stream ledger and refusals do not write SQL: a few
	// connections, beside the other scenarios' 64.
	cfg.ConnConfig.RuntimeParams["search_path"] = scaleSchema
	cfg.MaxConns = 16
	if b.scalePool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, err
	}
	b.single = singleTarget(b.rdb)
	targets := []*target{b.single}
	if cluster {
		if b.cluster, err = openCluster(ctx); err != nil {
			b.single.rdb.Close()
			b.scalePool.Close()
			return nil, err
		}
		targets = append(targets, b.cluster)
	}
	for _, t := range targets {
		if err := clearTarget(ctx, t, scaleNamespace); err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	return func() {
		ctx := context.Background()
		for _, c := range b.closers {
			c(ctx)
		}
		for _, t := range targets {
			clearTarget(ctx, t, scaleNamespace)
		}
		for _, t := range targets {
			t.rdb.Close()
		}
		b.scalePool.Close()
	}, nil
}

// Scenario names, as the table shows them.
const (
	nBare        = "1. bare check-and-DECRBY Lua"
	nStreamAlone = "1. stream-mode Lua alone (no flusher)"
	nStreamLimit = "1. stream limit: stream Lua + hand-written COPY flusher"
	nStreamDecr  = "2. stream Decr, generated manager + its flusher"
	nSyncLimit   = "3. sync limit: bare Lua + one INSERT"
	nSyncDecr    = "3. sync Decr, generated manager"
	nDBOnly      = "4. database only: UPDATE ... WHERE qty >= n"
	nWatch       = "4. Redis WATCH/MULTI/EXEC"
)

// hammer runs op from 64 goroutines for the scenario's duration and
// returns successful ops per second.
func (b *bench) hammer(op func(ctx context.Context, seq int64) error) (float64, error) {
	n, took, err := b.hammerN(op)
	return float64(n) / took.Seconds(), err
}

// hammerN is hammer, returning the successful ops and the time they took.
func (b *bench) hammerN(op func(ctx context.Context, seq int64) error) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.dur)
	defer cancel()
	var (
		seq, done atomic.Int64
		wg        sync.WaitGroup
		first     atomic.Pointer[error]
	)
	start := time.Now()
	for range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := op(ctx, seq.Add(1))
				switch {
				case err == nil:
					done.Add(1)
				case ctx.Err() != nil:
					return
				default:
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := first.Load(); err != nil {
		return 0, time.Since(start), *err
	}
	return done.Load(), time.Since(start), nil
}

var bareLua = redis.NewScript(`
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = tonumber(ARGV[1])
if v < n then return -1 end
return redis.call('DECRBY', KEYS[1], n)`)

func (b *bench) bareLua() (result, error) {
	ctx := context.Background()
	key := namespace + ":{bare}:hot"
	b.rdb.Set(ctx, key, bigStock, 0)
	ops, err := b.hammer(func(ctx context.Context, _ int64) error {
		return bareLua.Run(ctx, b.rdb, []string{key}, 1).Err()
	})
	return result{name: nBare, ops: ops, note: "no idempotency, no ledger"}, err
}

// streamScript is the stream mode's own reserve.lua (after settled.lua,
// as the runtime runs it), run by hand.
func streamScript() (*redis.Script, error) {
	prelude, err := fs.ReadFile(invrt.Scripts, "scripts/settled.lua")
	if err != nil {
		return nil, err
	}
	src, err := fs.ReadFile(invrt.Scripts, "scripts/reserve.lua")
	return redis.NewScript(string(prelude) + string(src)), err
}

// streamKeys lays out keys as the runtime does (ns:{prefix:shard}:...).
func streamKeys(prefix string) (tag, item, stream, opPrefix string) {
	tag = namespace + ":{" + prefix + ":0}:"
	return tag, tag + "item:hot", tag + "stream", tag + "o:3:hot:d:"
}

// filterPositions are an op key's two positions in an item's filter of
// purchases, as runtime/soldout.go computes them (FNV-1a, 64 bits, split).
func filterPositions(opKey string) (string, string) {
	h := fnv.New64a()
	h.Write([]byte(opKey))
	s := h.Sum64()
	return strconv.FormatUint(s&0xffffffff, 10), strconv.FormatUint(s>>32, 10)
}

// filterBits is the size of the filter Init gives an item of bigStock
// units (runtime/scripts/load.lua: 16 bits a unit, at most 2^20).
const filterBits = 1 << 20

func (b *bench) streamLua(prefix string) (func(ctx context.Context, seq int64) error, string, error) {
	s, err := streamScript()
	if err != nil {
		return nil, "", err
	}
	tag, item, stream, opPrefix := streamKeys(prefix)
	// The item as Init leaves it in a shard without an epoch yet: its
	// filter of purchases sized, and no e (KEYS[7] absent).
	b.rdb.HSet(context.Background(), item, "a", bigStock, "c", bigStock, "m", filterBits)
	return func(ctx context.Context, seq int64) error {
		op := strconv.FormatInt(seq, 10)
		rec := opPrefix + op
		h1, h2 := filterPositions(op)
		v, err := s.Run(ctx, b.rdb, []string{item, rec, stream, tag + "s:0", tag + "s:1", tag + "s:2", tag + "epoch", tag + "bf:hot"},
			"decr", "1", "10000", "86400000", "hot", op, invrt.MaxQuantity, seq, "stream", rec[len(tag)+2:], "43200000", h1, h2, "0").Text()
		if err == nil && !strings.HasPrefix(v, "0:") {
			err = fmt.Errorf("reserve.lua answered %q", v)
		}
		return err
	}, stream, nil
}

func (b *bench) streamLuaAlone() (result, error) {
	op, _, err := b.streamLua("alone")
	if err != nil {
		return result{name: nStreamAlone}, err
	}
	ops, err := b.hammer(op)
	return result{name: nStreamAlone, ops: ops, note: "op record + stream append, never flushed"}, err
}

// streamLimit: the stream Lua plus the simplest flusher one could write:
// XREAD a batch, COPY it into a table, XDEL it.
func (b *bench) streamLimit() (result, error) {
	ctx := context.Background()
	if _, err := b.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_usage (item_id text, delta bigint, kind text, op_key text, attempt bigint);
		TRUNCATE bench_usage`); err != nil {
		return result{name: nStreamLimit}, err
	}
	op, stream, err := b.streamLua("limit")
	if err != nil {
		return result{name: nStreamLimit}, err
	}
	stop := make(chan struct{})
	flushed := make(chan error, 1)
	go func() {
		last := "0"
		for {
			select {
			case <-stop:
				flushed <- nil
				return
			default:
			}
			res, err := b.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{stream, last}, Count: 1000, Block: -1}).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				flushed <- err
				return
			}
			if len(res) == 0 || len(res[0].Messages) == 0 {
				time.Sleep(2 * time.Millisecond)
				continue
			}
			msgs := res[0].Messages
			rows := make([][]any, len(msgs))
			ids := make([]string, len(msgs))
			for i, m := range msgs {
				d, _ := strconv.ParseInt(m.Values["d"].(string), 10, 64)
				a, _ := strconv.ParseInt(m.Values["n"].(string), 10, 64)
				rows[i] = []any{m.Values["i"], d, m.Values["k"], m.Values["o"], a}
				ids[i] = m.ID
			}
			if _, err := b.pool.CopyFrom(ctx, pgx.Identifier{"bench_usage"}, []string{"item_id", "delta", "kind", "op_key", "attempt"}, pgx.CopyFromRows(rows)); err != nil {
				flushed <- err
				return
			}
			b.rdb.XDel(ctx, stream, ids...)
			last = ids[len(ids)-1]
		}
	}()
	ops, err := b.hammer(op)
	close(stop)
	if ferr := <-flushed; err == nil {
		err = ferr
	}
	return result{name: nStreamLimit, ops: ops, note: "no library code around either"}, err
}

// streamDecr: Decr of the generated stream-mode manager with its flusher
// running; flush lag sampled every 10ms, then the catch-up timed.
func (b *bench) streamDecr() (result, error) {
	ctx := context.Background()
	m, err := drop.New(b.pool, b.rdb, drop.WithNamespace(namespace))
	if err != nil {
		return result{name: nStreamDecr}, err
	}
	if err := m.CreateTables(ctx); err != nil {
		return result{name: nStreamDecr}, err
	}
	if err := b.fresh(ctx, drop.ModificationTable, drop.UsageTable); err != nil {
		return result{name: nStreamDecr}, err
	}
	if err := m.Init(ctx, "hot", bigStock); err != nil {
		return result{name: nStreamDecr}, err
	}
	fctx, stopFlusher := context.WithCancel(ctx)
	defer stopFlusher()
	flusherDone := make(chan error, 1)
	go func() { flusherDone <- m.RunFlusher(fctx, invrt.FlusherConfig{}) }()
	var (
		ages    []time.Duration
		entries []int64
		mu      sync.Mutex
	)
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-sampling:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if lag, err := m.FlushLag(ctx); err == nil {
				mu.Lock()
				ages, entries = append(ages, lag.Oldest), append(entries, lag.Entries)
				mu.Unlock()
			}
		}
	}()
	ops, err := b.hammer(func(ctx context.Context, seq int64) error {
		_, err := m.Decr(ctx, "hot", 1, strconv.FormatInt(seq, 10))
		return err
	})
	close(sampling)
	<-sampled
	burstEnd := time.Now()
	var catchUp time.Duration
	for {
		lag, lerr := m.FlushLag(ctx)
		if lerr != nil {
			return result{name: nStreamDecr}, lerr
		}
		if lag.Entries == 0 {
			catchUp = time.Since(burstEnd)
			break
		}
		time.Sleep(time.Millisecond)
	}
	stopFlusher()
	<-flusherDone
	note := fmt.Sprintf("flush age p50 %v p99 %v; backlog p50 %d p99 %d entries; caught up %v after the burst",
		pct(ages, 50), pct(ages, 99), pctI(entries, 50), pctI(entries, 99), catchUp.Round(time.Millisecond))
	return result{name: nStreamDecr, ops: ops, note: note}, err
}

func pct(v []time.Duration, p int) time.Duration {
	if len(v) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100].Round(time.Millisecond)
}

func pctI(v []int64, p int) int64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]int64(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

func (b *bench) syncLimit() (result, error) {
	ctx := context.Background()
	if _, err := b.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_sync_usage (id bigserial PRIMARY KEY, item_id text NOT NULL, delta bigint NOT NULL,
		op_key text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), UNIQUE (item_id, op_key));
		TRUNCATE bench_sync_usage`); err != nil {
		return result{name: nSyncLimit}, err
	}
	key := namespace + ":{synclimit}:hot"
	b.rdb.Set(ctx, key, bigStock, 0)
	ops, err := b.hammer(func(ctx context.Context, seq int64) error {
		if err := bareLua.Run(ctx, b.rdb, []string{key}, 1).Err(); err != nil {
			return err
		}
		_, err := b.pool.Exec(ctx, "INSERT INTO bench_sync_usage (item_id, delta, op_key) VALUES ($1, $2, $3)", "hot", -1, strconv.FormatInt(seq, 10))
		return err
	})
	return result{name: nSyncLimit, ops: ops, note: "hand-written, no idempotency in Redis"}, err
}

func (b *bench) syncDecr() (result, error) {
	ctx := context.Background()
	m, err := flashsale.New(b.pool, b.rdb, flashsale.WithNamespace(namespace))
	if err != nil {
		return result{name: nSyncDecr}, err
	}
	if err := m.CreateTables(ctx); err != nil {
		return result{name: nSyncDecr}, err
	}
	if err := b.fresh(ctx, flashsale.ModificationTable, flashsale.UsageTable); err != nil {
		return result{name: nSyncDecr}, err
	}
	if err := m.Init(ctx, "hot", bigStock); err != nil {
		return result{name: nSyncDecr}, err
	}
	ops, err := b.hammer(func(ctx context.Context, seq int64) error {
		_, err := m.Decr(ctx, "hot", 1, strconv.FormatInt(seq, 10))
		return err
	})
	return result{name: nSyncDecr, ops: ops, note: "returns after the usage row is committed"}, err
}

func (b *bench) dbOnly() (result, error) {
	ctx := context.Background()
	if _, err := b.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_stock (id text PRIMARY KEY, qty bigint NOT NULL);
		TRUNCATE bench_stock; INSERT INTO bench_stock VALUES ('hot', 90000000000000)`); err != nil {
		return result{name: nDBOnly}, err
	}
	ops, err := b.hammer(func(ctx context.Context, _ int64) error {
		tag, err := b.pool.Exec(ctx, "UPDATE bench_stock SET qty = qty - $2 WHERE id = $1 AND qty >= $2", "hot", 1)
		if err == nil && tag.RowsAffected() != 1 {
			err = errors.New("sold out")
		}
		return err
	})
	return result{name: nDBOnly, ops: ops, note: "one row, 64 connections"}, err
}

func (b *bench) watchMulti() (result, error) {
	ctx := context.Background()
	key := namespace + ":{watch}:hot"
	b.rdb.Set(ctx, key, bigStock, 0)
	ops, err := b.hammer(func(ctx context.Context, _ int64) error {
		for {
			err := b.rdb.Watch(ctx, func(tx *redis.Tx) error {
				v, err := tx.Get(ctx, key).Int64()
				if err != nil {
					return err
				}
				if v < 1 {
					return errors.New("sold out")
				}
				_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.DecrBy(ctx, key, 1)
					return nil
				})
				return err
			}, key)
			if !errors.Is(err, redis.TxFailedErr) {
				return err
			}
		}
	})
	return result{name: nWatch, ops: ops, note: "GET, check, DECRBY; retried on conflict"}, err
}

// refreshAll times RefreshAll over nItems items initialized in the ledger
// (in bulk, by SQL) and absent from Redis, as after a Redis loss.
func (b *bench) refreshAll(ctx context.Context, nItems int) (time.Duration, error) {
	m, err := flashsale.New(b.pool, b.rdb, flashsale.WithNamespace(namespace+"-refresh"))
	if err != nil {
		return 0, err
	}
	// The tables are emptied for a namespace of its own: its layout too,
	// which CreateTables then records.
	if _, err := b.pool.Exec(ctx, "TRUNCATE "+flashsale.ModificationTable+", "+flashsale.UsageTable+", "+flashsale.LayoutTable); err != nil {
		return 0, err
	}
	if err := m.CreateTables(ctx); err != nil {
		return 0, err
	}
	if _, err := b.pool.Exec(ctx, "INSERT INTO "+flashsale.ModificationTable+
		" (item_id, delta, kind, op_key) SELECT 'item-' || g, 10, 'init', 'init' FROM generate_series(1, $1) g", nItems); err != nil {
		return 0, err
	}
	b.pool.Exec(ctx, "ANALYZE "+flashsale.ModificationTable)
	defer clearNS(context.Background(), b.rdb, namespace+"-refresh")
	start := time.Now()
	n, err := m.RefreshAll(ctx)
	took := time.Since(start)
	if err == nil && n != nItems {
		err = fmt.Errorf("RefreshAll loaded %d of %d items", n, nItems)
	}
	return took, err
}

// fresh empties a prefix's tables and the bench's Redis keys before a round.
func (b *bench) fresh(ctx context.Context, tables ...string) error {
	if _, err := b.pool.Exec(ctx, "TRUNCATE "+strings.Join(tables, ", ")); err != nil {
		return err
	}
	return clear(ctx, b.rdb)
}

func clear(ctx context.Context, rdb *redis.Client) error { return clearNS(ctx, rdb, namespace) }

func clearNS(ctx context.Context, rdb *redis.Client, ns string) error {
	iter := rdb.Scan(ctx, 0, ns+":*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Unlink(ctx, iter.Val())
	}
	return iter.Err()
}

func field(text, name string) string {
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
