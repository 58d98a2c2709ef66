package contract

// The fault-injection suite: real processes, real servers, faults through a
// real proxy, all on loopback and bounded in time. `make test` runs each
// scenario short; `make chaos` runs them long (-chaos.long). Each scenario
// logs one line:
//
//	chaos: <scenario> attempts=… faults=… invariants=I1,I2,I3 items=… lost=0 oversold=0

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

var chaosLong = flag.Bool("chaos.long", false, "run the fault-injection scenarios long (make chaos)")

// scale picks the short or the long value.
func scale[T any](short, long T) T {
	if *chaosLong {
		return long
	}
	return short
}

const chaosLease = 300 * time.Millisecond

// startedBuffer collects a buyer process's report and closes started at
// its first line.
type startedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	started chan struct{}
}

func (b *startedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() == 0 && len(p) > 0 {
		close(b.started)
	}
	return b.buf.Write(p)
}

// tally is what clients were told, to hold against the ledger.
type tally struct {
	mu       sync.Mutex
	told     map[string]int64 // op key -> units a successful Decr took
	attempts atomic.Int64
	faults   atomic.Int64
	inDoubt  atomic.Int64 // units of purchases that returned ErrInDoubt
}

func newTally() *tally { return &tally{told: map[string]int64{}} }

func (t *tally) ok(op string, n int64) {
	t.mu.Lock()
	t.told[op] = n
	t.mu.Unlock()
}

// sold is the number of units buyers have been told they took.
func (t *tally) sold() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for _, u := range t.told {
		n += u
	}
	return n
}

// waitSold waits until buyers have been told of at least n units, or for
// limit. Faults keyed to units sold rather than to time land mid-sale on a
// fast machine too, where a fixed pause can outlast the whole sale.
func (t *tally) waitSold(n int64, limit time.Duration) {
	for end := time.Now().Add(limit); t.sold() < n && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
}

// verify checks I1–I3 for the hot SKU once traffic has stopped and every
// lease has passed: it reconciles, then compares Redis, the ledger and what
// clients were told. Units lost are units the ledger has that Redis does not
// offer; units oversold are units Redis offers beyond the ledger, a ledger
// below zero, or purchases clients were told of that the ledger lacks.
func verify(t *testing.T, f *fixture[string], m manager[string], tl *tally, scenario string, stock int64) {
	t.Helper()
	ctx := ctxT(t)
	time.Sleep(chaosLease + 100*time.Millisecond)
	if _, err := m.Reconcile(ctx); err != nil {
		t.Fatalf("%s: Reconcile: %v", scenario, err)
	}
	capacity, ledger := f.ledger(t, "hot")
	got, err := m.Get(ctx, "hot")
	if err != nil {
		t.Fatalf("%s: Get: %v", scenario, err)
	}
	var lost, oversold int64
	if got < ledger {
		lost += ledger - got
	}
	if got > ledger {
		oversold += got - ledger
	}
	if ledger < 0 {
		oversold += -ledger
	}
	if capacity != stock {
		t.Errorf("%s: capacity %d, want %d", scenario, capacity, stock)
	}
	committed := f.committedPurchases(t)
	tl.mu.Lock()
	for op, n := range tl.told {
		if committed[op] != n {
			oversold += n
			t.Errorf("%s: %s was told it bought %d, the ledger holds %d", scenario, op, n, committed[op])
		}
	}
	tl.mu.Unlock()
	if rep, err := m.Audit(ctx); err != nil || len(rep.Drift) != 0 || rep.Expired != 0 {
		t.Errorf("%s: audit after reconcile = %+v, %v; want no drift", scenario, rep, err)
	}
	t.Logf("chaos: %-15s attempts=%d faults=%d invariants=I1,I2,I3 purchases=%d lost=%d oversold=%d",
		scenario, tl.attempts.Load(), tl.faults.Load(), len(committed), lost, oversold)
	if lost != 0 || oversold != 0 {
		t.Fatalf("%s: %d units lost, %d oversold (Redis %d, ledger %d)", scenario, lost, oversold, got, ledger)
	}
}

// committedPurchases maps the op key of every committed purchase in the
// ledger to the units it took.
func (f *fixture[K]) committedPurchases(t *testing.T) map[string]int64 {
	t.Helper()
	q := "SELECT op_key, -delta FROM " + f.usageTable + " WHERE kind = 'decr' AND state = 'committed'"
	committed := map[string]int64{}
	scan := func(next func() bool, scan func(...any) error, err func() error) {
		for next() {
			var op string
			var n int64
			testenv.Must(t, scan(&op, &n), "scan")
			committed[op] = n
		}
		testenv.Must(t, err(), "rows")
	}
	if f.db != nil {
		rows, err := f.db.QueryContext(ctxT(t), q)
		testenv.Must(t, err, "ledger rows")
		defer rows.Close()
		scan(rows.Next, rows.Scan, rows.Err)
		return committed
	}
	rows, err := f.pool.Query(ctxT(t), q)
	testenv.Must(t, err, "ledger rows")
	defer rows.Close()
	scan(rows.Next, rows.Scan, rows.Err)
	return committed
}

// TestChaosKill: buyer processes are killed with SIGKILL at random
// moments, again and again; each successor first retries the op keys its
// predecessor had in flight. Afterwards no unit is lost or oversold, every
// purchase a buyer was told of is in the ledger once, and every retried op
// key got the first outcome or completed it.
func TestChaosKill(t *testing.T) {
	chaosKill(t, stringFixture(t), "sync", "kill -9")
}

// TestChaosStreamKill is TestChaosKill in the stream mode: the killed
// processes run flushers too, killed mid-batch. Another flusher claims
// what they read but did not acknowledge; nothing is lost or written twice.
func TestChaosStreamKill(t *testing.T) {
	chaosKill(t, streamFixture(t), "stream", "kill -9 stream")
}

func chaosKill(t *testing.T, f *fixture[string], mode, scenario string) {
	kills := scale(5, 50)
	const stock = 1_000_000
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", stock), "Init")
	tl := newTally()
	var inflight []string // "op:n" the last victim had started but not finished
	var retried, completed, voided int
	rng := rand.New(rand.NewPCG(1, 2))
	// Past the planned kills, a few more until a kill has caught an op in
	// flight and its successor retried it (a busy machine starts slowly).
	for k := 0; k < kills || retried == 0 && k < kills+10; k++ {
		out := killChild(ctx, t, f, rng, 20, 300, "INVGEN_CHILD=buyer",
			fmt.Sprintf("INVGEN_CHILD_ID=k%d", k), "INVGEN_CHILD_ATTEMPTS=1000000000",
			"INVGEN_CHILD_LEASE="+chaosLease.String(), "INVGEN_CHILD_RETRY="+strings.Join(inflight, ","),
			"INVGEN_CHILD_MODE="+mode)
		tl.faults.Add(1)
		started := map[string]int64{}
		wasInflight := map[string]bool{}
		for _, w := range inflight {
			op, _, _ := strings.Cut(w, ":")
			wasInflight[op] = true
		}
		for _, ev := range parseEvents(&out.buf) {
			if wasInflight[ev.op] && ev.kind != "start" {
				// The retry of an op key whose process was killed: it
				// returns the first outcome or completes the purchase.
				retried++
				switch ev.kind {
				case "ok":
					completed++
				case "void":
					voided++
				default:
					t.Errorf("retry of %s after a kill: %s %s", ev.op, ev.kind, ev.msg)
				}
			}
			switch ev.kind {
			case "start":
				started[ev.op] = ev.n
				tl.attempts.Add(1)
			case "ok":
				tl.ok(ev.op, ev.n)
				delete(started, ev.op)
			case "void", "short":
				delete(started, ev.op)
			case "err":
				if !strings.Contains(ev.msg, "busy") {
					t.Errorf("buyer %d: %s: %s", k, ev.op, ev.msg)
				}
				delete(started, ev.op)
			}
		}
		inflight = inflight[:0]
		for op, n := range started {
			inflight = append(inflight, op+":"+strconv.FormatInt(n, 10))
		}
	}
	if retried == 0 {
		t.Error("no op key in flight at a kill was retried")
	}
	t.Logf("retries of op keys in flight at a kill: %d (%d purchases completed or replayed, %d voided)", retried, completed, voided)
	if mode == "stream" {
		// A flusher of the survivors takes over what the dead ones read.
		fctx, stop := context.WithTimeout(ctx, 2*time.Second)
		f.flusher().RunFlusher(fctx, invrt.FlusherConfig{ClaimAfter: 100 * time.Millisecond})
		stop()
		if lag, err := f.flusher().FlushLag(ctx); err != nil || lag.Entries != 0 {
			t.Fatalf("flush lag after the drain = %+v, %v", lag, err)
		}
		if dup := sumSQL(t, f, "SELECT count(*) FROM (SELECT 1 FROM "+f.usageTable+" GROUP BY item_id, kind, op_key HAVING count(*) > 1) d"); dup != 0 {
			t.Fatalf("%d op keys written twice", dup)
		}
	}
	verify(t, f, f.m, tl, scenario, stock)
}

// killChild runs the test binary as a child process of f's namespace and
// schema with env, and kills it with SIGKILL least+rand(spread) ms after
// its first report line, however long it took to start on a busy
// machine. It returns the child's report.
func killChild(ctx context.Context, t *testing.T, f *fixture[string], rng *rand.Rand, least, spread int, env ...string) *startedBuffer {
	t.Helper()
	exe, err := os.Executable()
	testenv.Must(t, err, "executable")
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(append(os.Environ(), "INVGEN_CHILD_NS="+f.ns, "INVGEN_CHILD_SCHEMA="+testenv.Schema(f.pool)), env...)
	out := &startedBuffer{started: make(chan struct{})}
	cmd.Stdout = out
	testenv.Must(t, cmd.Start(), "start a child process")
	select {
	case <-out.started:
	case <-time.After(10 * time.Second):
	}
	time.Sleep(time.Duration(least+rng.IntN(spread)) * time.Millisecond)
	testenv.Must(t, cmd.Process.Signal(syscall.SIGKILL), "kill")
	cmd.Wait()
	return out
}

// proxyTo starts a toxiproxy proxy on a free loopback port in front of
// upstream.
func proxyTo(t *testing.T, name, upstream string) *toxiproxy.Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	testenv.Must(t, p.Start(), "start proxy %s", name)
	t.Cleanup(p.Stop)
	return p
}

func addToxic(t *testing.T, p *toxiproxy.Proxy, name, typ, stream string, attrs string) {
	t.Helper()
	js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attrs)
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		t.Fatalf("toxic %s: %v", name, err)
	}
}

// dbThrough is a pool into the fixture's schema through addr.
func dbThrough(t *testing.T, f *fixture[string], addr string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL())
	testenv.Must(t, err, "db url")
	host, port, err := net.SplitHostPort(addr)
	testenv.Must(t, err, "addr")
	p, _ := strconv.Atoi(port)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(p)
	cfg.ConnConfig.RuntimeParams["search_path"] = testenv.Schema(f.pool)
	cfg.ConnConfig.ConnectTimeout = time.Second
	cfg.MaxConns = 32
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	testenv.Must(t, err, "pool")
	t.Cleanup(pool.Close)
	return pool
}

func redisThrough(t *testing.T, addr string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(testenv.RedisURL())
	testenv.Must(t, err, "redis url")
	opt.Addr = addr
	opt.PoolSize = 64
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, time.Second, time.Second
	opt.MaxRetries = -1 // a retried EVALSHA is a second attempt; invgen decides
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// redisFront puts toxiproxy in front of the fixture's Redis, and returns
// the proxies and a client that goes through them. On a Redis Cluster each
// node gets a proxy of its own, and the client dials every node, the ones
// it learns of from redirections too, through its proxy.
func redisFront(t *testing.T, f *fixture[string]) ([]*toxiproxy.Proxy, redis.UniversalClient) {
	t.Helper()
	cc, ok := f.rdb.(*redis.ClusterClient)
	if !ok {
		p := proxyTo(t, "redis", redisAddr(t))
		return []*toxiproxy.Proxy{p}, redisThrough(t, p.Listen)
	}
	nodes, err := cc.ClusterNodes(context.Background()).Result()
	testenv.Must(t, err, "CLUSTER NODES")
	var proxies []*toxiproxy.Proxy
	via := map[string]string{} // node address -> its proxy's
	for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		addr, _, _ := strings.Cut(fields[1], "@")
		p := proxyTo(t, "redis-"+addr, addr)
		proxies = append(proxies, p)
		via[addr] = p.Listen
	}
	var d net.Dialer
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: testenv.ClusterSeeds(),
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			p, ok := via[addr]
			if !ok {
				return nil, fmt.Errorf("no proxy in front of %s", addr)
			}
			return d.DialContext(ctx, network, p)
		},
		PoolSize:    64,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		MaxRetries: -1, // a retried EVALSHA is a second attempt; invgen decides
	})
	t.Cleanup(func() { rdb.Close() })
	return proxies, rdb
}

// traffic runs buyers against m until stop is closed. Each Decr has its own
// deadline; errors are expected under faults, false successes are not.
func traffic(ctx context.Context, m manager[string], tl *tally, buyers int, stop <-chan struct{}, onErr func(error)) *sync.WaitGroup {
	var wg sync.WaitGroup
	var seq atomic.Int64
	for w := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for {
				select {
				case <-stop:
					return
				default:
				}
				op := "o" + strconv.FormatInt(seq.Add(1), 10)
				n := int64(1 + rng.IntN(3))
				tl.attempts.Add(1)
				octx, cancel := context.WithTimeout(ctx, 2*time.Second)
				r, err := m.Decr(octx, "hot", n, op)
				cancel()
				switch {
				case err == nil:
					tl.ok(op, -r.Delta)
				case errors.Is(err, invrt.ErrInsufficientStock):
				default:
					if errors.Is(err, invrt.ErrInDoubt) {
						tl.inDoubt.Add(n)
					}
					onErr(err)
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	return &wg
}

// TestChaosNetwork: toxiproxy between the manager and both servers injects
// latency, stalls (timeouts), connection resets in both directions and
// whole cut-offs while buyers buy. Every fault produces errors, never a
// false success, and after recovery the books are exact.
func TestChaosNetwork(t *testing.T) {
	rounds := scale(8, 80)
	const stock = 1_000_000
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", stock), "Init")
	pgProxy := proxyTo(t, "postgres", pgAddr(t))
	redisProxies, rdb := redisFront(t, f)
	m := mustNew(t, dbThrough(t, f, pgProxy.Listen), rdb, f.ns)

	tl := newTally()
	var errs atomic.Int64
	stop := make(chan struct{})
	wg := traffic(ctx, m, tl, 16, stop, func(error) { errs.Add(1) })
	redisToxic := func(typ, stream, attrs string) {
		for _, p := range redisProxies {
			addToxic(t, p, "f", typ, stream, attrs)
		}
	}
	faults := []func(i int){
		func(i int) { addToxic(t, pgProxy, "f", "latency", "downstream", `{"latency":40,"jitter":20}`) },
		func(i int) { redisToxic("latency", "downstream", `{"latency":20,"jitter":10}`) },
		func(i int) { addToxic(t, pgProxy, "f", "timeout", "upstream", `{"timeout":0}`) },
		func(i int) { redisToxic("timeout", "downstream", `{"timeout":0}`) },
		func(i int) { addToxic(t, pgProxy, "f", "reset_peer", "downstream", `{"timeout":0}`) },
		func(i int) { addToxic(t, pgProxy, "f", "reset_peer", "upstream", `{"timeout":0}`) },
		func(i int) { redisToxic("reset_peer", "downstream", `{"timeout":0}`) },
		func(i int) { pgProxy.Stop() },
		func(i int) {
			for _, p := range redisProxies {
				p.Stop()
			}
		},
	}
	heal := func() {
		for _, p := range append([]*toxiproxy.Proxy{pgProxy}, redisProxies...) {
			if p.Toxics.GetToxic("f") != nil {
				p.Toxics.RemoveToxic(ctx, "f")
			}
			if !p.Enabled {
				testenv.Must(t, p.Start(), "restart proxy")
			}
		}
	}
	for i := range rounds {
		time.Sleep(150 * time.Millisecond)
		faults[i%len(faults)](i)
		tl.faults.Add(1)
		time.Sleep(time.Duration(150+50*(i%4)) * time.Millisecond)
		heal()
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if errs.Load() == 0 {
		t.Fatal("no buyer saw an error: the faults did not reach the manager")
	}
	verify(t, f, f.m, tl, "network faults", stock)
}

// TestChaosPostgresDown: the ledger's database is cut off for a stretch
// while buyers buy. Purchases fail rather than succeed falsely, and once it
// is back nothing is leaked or counted twice.
func TestChaosPostgresDown(t *testing.T) {
	const stock = 1_000_000
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", stock), "Init")
	pgProxy := proxyTo(t, "postgres", pgAddr(t))
	m := mustNew(t, dbThrough(t, f, pgProxy.Listen), f.rdb, f.ns)
	tl := newTally()
	var errs atomic.Int64
	stop := make(chan struct{})
	wg := traffic(ctx, m, tl, 16, stop, func(error) { errs.Add(1) })
	for range scale(2, 10) {
		time.Sleep(300 * time.Millisecond)
		pgProxy.Stop()
		tl.faults.Add(1)
		time.Sleep(time.Duration(scale(700, 1500)) * time.Millisecond)
		testenv.Must(t, pgProxy.Start(), "restart proxy")
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if errs.Load() == 0 {
		t.Fatal("no buyer saw an error while PostgreSQL was away")
	}
	// Before any reconcile: a failed purchase holds units only when it said
	// so (ErrInDoubt: the connection died after the insert was sent).
	_, ledger := f.ledger(t, "hot")
	if got, err := m.Get(ctx, "hot"); err != nil || ledger-got > tl.inDoubt.Load() {
		t.Fatalf("after the outage Redis has %d (%v), the ledger %d: %d units held, but only %d were reported in doubt",
			got, err, ledger, ledger-got, tl.inDoubt.Load())
	}
	verify(t, f, m, tl, "postgres down", stock)
}

// TestChaosRedisRestart: the test's own redis-server is killed during
// traffic and a new, empty one takes its port. Operations fail while it is
// away; then RefreshAll rebuilds the exact stock from the ledger, and the
// hot SKU sells out exactly, never beyond (I5).
func TestChaosRedisRestart(t *testing.T) {
	stock := int64(scale(3000, 20000))
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	srv := startRedis(t, port)
	rdb := redisThrough(t, addr)
	f := stringFixtureOn(t, rdb)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", stock), "Init")
	m := f.reopen(invrt.WithLease(chaosLease))
	tl := newTally()
	var errs atomic.Int64
	stop := make(chan struct{})
	wg := traffic(ctx, m, tl, 16, stop, func(error) { errs.Add(1) })
	kills := scale(2, 6)
	for i := range kills {
		// Kill i lands once (i+1)/(kills+2) of the stock is sold, so
		// every kill finds buyers buying and units left to sell.
		tl.waitSold(int64(i+1)*stock/int64(kills+2), 10*time.Second)
		if left, err := m.Get(ctx, "hot"); err == nil && left == 0 {
			t.Fatalf("kill %d: the SKU sold out before Redis was killed", i)
		}
		srv.Process.Signal(syscall.SIGKILL)
		srv.Wait()
		tl.faults.Add(1)
		time.Sleep(200 * time.Millisecond)
		srv = startRedis(t, port)
		if _, err := m.RefreshAll(ctx); err != nil {
			t.Logf("RefreshAll right after the restart: %v", err)
		}
	}
	// Let the buyers sell out the rest.
	deadline := time.Now().Add(scale(20*time.Second, 60*time.Second))
	for time.Now().Before(deadline) {
		if v, err := m.Get(ctx, "hot"); err == nil && v == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if errs.Load() == 0 {
		t.Fatal("no buyer saw an error while Redis was away")
	}
	verify(t, f, m, tl, "redis restart", stock)
	if v, _ := m.Get(ctx, "hot"); v != 0 {
		t.Fatalf("hot SKU did not sell out: %d left", v)
	}
}

// TestChaosRefreshLoop: Refresh and RefreshAll run back to back during
// full purchase traffic on the hot SKU (I6).
func TestChaosRefreshLoop(t *testing.T) {
	const stock = 1_000_000
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", stock), "Init")
	for i := range 50 {
		testenv.Must(t, f.m.Init(ctx, "cold-"+strconv.Itoa(i), 5), "Init cold")
	}
	tl := newTally()
	stop := make(chan struct{})
	// The first error a buyer saw that is not ErrBusy. Errors of different
	// types once went into an atomic.Value, whose second Store panicked
	// and ended the test binary with the real error unseen.
	var bad atomic.Pointer[error]
	wg := traffic(ctx, f.m, tl, 32, stop, func(err error) {
		if !errors.Is(err, invrt.ErrBusy) {
			bad.CompareAndSwap(nil, &err)
		}
	})
	end := time.Now().Add(scale(2*time.Second, 30*time.Second))
	for i := 0; time.Now().Before(end); i++ {
		var err error
		if i%4 == 3 {
			_, err = f.m.RefreshAll(ctx)
		} else {
			err = f.m.Refresh(ctx, "hot")
		}
		if err != nil && !errors.Is(err, invrt.ErrBusy) {
			t.Fatalf("refresh: %v", err)
		}
		tl.faults.Add(1)
		// Units confirmed sold before the read can only be fewer than
		// those gone from stock at the read.
		sold := tl.sold()
		if v, err := f.m.Get(ctx, "hot"); err == nil && (v < 0 || stock-v < sold) {
			t.Fatalf("stock %d with %d units confirmed sold of %d", v, sold, stock)
		}
	}
	close(stop)
	wg.Wait()
	if err := bad.Load(); err != nil {
		t.Fatal(*err)
	}
	verify(t, f, f.m, tl, "refresh loop", stock)
}

func mustNew(t *testing.T, pool *pgxpool.Pool, rdb redis.UniversalClient, ns string) manager[string] {
	t.Helper()
	m, err := flashsale.New(pool, rdb, flashsale.WithNamespace(ns), flashsale.WithLease(chaosLease), flashsale.WithLedgerTimeout(time.Second))
	testenv.Must(t, err, "New")
	return m
}

func pgAddr(t *testing.T) string {
	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL())
	testenv.Must(t, err, "db url")
	return net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port)))
}

func redisAddr(t *testing.T) string {
	opt, err := redis.ParseURL(testenv.RedisURL())
	testenv.Must(t, err, "redis url")
	return opt.Addr
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err, "listen")
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRedis starts a redis-server of the test's own on port, keeping
// nothing on disk, and stops it when the test ends.
func startRedis(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	testenv.Must(t, err, "redis-server (install it with `make services`)")
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	testenv.Must(t, cmd.Start(), "start redis-server")
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	defer rdb.Close()
	for i := 0; ; i++ {
		if rdb.Ping(context.Background()).Err() == nil {
			return cmd
		}
		if i == 100 {
			t.Fatalf("redis-server on port %d did not start", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
