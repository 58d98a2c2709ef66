package robustness

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Setup is what a run gets from the test: where the servers are and where
// to put its files.
type Setup struct {
	// DBURL is the PostgreSQL URL; Schema an empty schema of the run's own.
	DBURL, Schema string
	// Engine is the ledger's engine: "" or postgresql (DBURL and Schema),
	// mysql or sqlite (DSN: a MySQL DSN of a database of the run's own, or
	// a SQLite file). The managers are then the packages of
	// examples/engines.
	Engine, DSN string
	// Namespace is the run's Redis namespace.
	Namespace string
	// Dir is a directory for the run's files (plans of child processes,
	// the redis-server's directory).
	Dir string
	// Exe is the test binary, re-executed as a child process.
	Exe string
	// Logf logs a line.
	Logf func(format string, args ...any)
}

// Event is a fault as it happened, for the validator: some invariants are
// only sound outside the window of a fault.
type Event struct {
	Kind       string
	Start, End int64 // unix ns
	Prefix     int
	Item       int
	Note       string
}

// Run is one execution of a plan.
type Run struct {
	Plan  *Plan
	Setup Setup

	admin     admin // direct, for faults and the validator
	redisAddr string
	redisPort int
	redisCmd  *exec.Cmd
	rdb       *redis.Client // direct, for faults and the validator
	pgProxy   *toxiproxy.Proxy
	rdProxy   *toxiproxy.Proxy
	pool      *pgxpool.Pool // the parent managers' pool, through the proxy (postgresql)
	sqlPool   *sql.DB       // the same of the mysql (through the proxy) and sqlite engines
	prdb      *redis.Client // the parent managers' Redis, through the proxy
	env       *Env
	hist      *History

	mu      sync.Mutex
	events  []Event
	cleanup []string // keys and journal members garbled by hand
	garbled map[[2]int]bool
	kids    map[int]*child
	flusher *exec.Cmd
	flOut   *bytes.Buffer
	flDone  chan struct{}
	start   time.Time
	stats   map[string]int
	sampled []Violation // I1 samples that failed
	ledgers []string    // ledger rows of items the checks found broken
}

type child struct {
	index int
	// finished is closed once the child's last incarnation is collected
	// (supervise).
	finished chan struct{}

	mu          sync.Mutex // guards the fields below
	incarnation int
	cmd         *exec.Cmd
	out         *bytes.Buffer
	done        chan struct{}
	killed      bool // the run killed this incarnation (FaultKillChild)
	// remaining steps per client of this child, and what to retry first.
	remaining map[int][]Step
}

func (r *Run) logf(format string, args ...any) {
	if r.Setup.Logf != nil {
		r.Setup.Logf(format, args...)
	}
}

func (r *Run) event(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.stats[e.Kind]++
	r.mu.Unlock()
}

// begin records a fault that has started and returns its end: until then
// its window reaches forever, so that a check made meanwhile (an I1
// sample) already knows of it.
func (r *Run) begin(kind string) func(note string) {
	r.mu.Lock()
	i := len(r.events)
	r.events = append(r.events, Event{Kind: kind, Start: time.Now().UnixNano(), End: forever})
	r.stats[kind]++
	r.mu.Unlock()
	return func(note string) {
		r.mu.Lock()
		r.events[i].End, r.events[i].Note = time.Now().UnixNano(), note
		r.mu.Unlock()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRedis starts the run's redis-server. It loads the snapshot left in
// its directory by a rollback fault, if there is one; restart faults
// delete it first.
func (r *Run) startRedis() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server not found (install it with `make services`): %w", err)
	}
	dir := filepath.Join(r.Setup.Dir, "redis")
	os.MkdirAll(dir, 0o755)
	cmd := exec.Command(bin, "--port", strconv.Itoa(r.redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return err
	}
	r.redisCmd = cmd
	c := redis.NewClient(&redis.Options{Addr: r.redisAddr})
	defer c.Close()
	for i := 0; ; i++ {
		if c.Ping(context.Background()).Err() == nil {
			return nil
		}
		if i == 200 {
			return fmt.Errorf("redis-server on port %d did not start", r.redisPort)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *Run) stopRedis() {
	if r.redisCmd != nil {
		r.redisCmd.Process.Signal(syscall.SIGKILL)
		r.redisCmd.Wait()
		r.redisCmd = nil
	}
}

// Close stops everything the run started.
func (r *Run) Close() {
	r.mu.Lock()
	kids := r.kids
	r.mu.Unlock()
	for _, k := range kids {
		k.mu.Lock()
		cmd, done := k.cmd, k.done
		k.mu.Unlock()
		if cmd != nil && cmd.Process != nil {
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	}
	r.stopFlusher()
	if r.env != nil {
		for _, t := range r.env.Targets {
			t.Close(context.Background())
		}
	}
	if r.prdb != nil {
		r.prdb.Close()
	}
	if r.pool != nil {
		r.pool.Close()
	}
	if r.sqlPool != nil {
		r.sqlPool.Close()
	}
	if r.pgProxy != nil {
		r.pgProxy.Stop()
	}
	if r.rdProxy != nil {
		r.rdProxy.Stop()
	}
	if r.rdb != nil {
		r.rdb.Close()
	}
	if r.admin != nil {
		r.admin.close()
	}
	r.stopRedis()
}

func newProxy(name, upstream string) (*toxiproxy.Proxy, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	return p, p.Start()
}

// Start brings up the run's redis-server, proxies, pools and managers,
// creates the tables and initializes the items.
func (r *Run) Start(ctx context.Context) error {
	r.stats = map[string]int{}
	r.garbled = map[[2]int]bool{}
	r.kids = map[int]*child{}
	cfg := r.Plan.Config
	var err error
	if r.redisPort, err = freePort(); err != nil {
		return err
	}
	r.redisAddr = "127.0.0.1:" + strconv.Itoa(r.redisPort)
	if err := r.startRedis(); err != nil {
		return err
	}
	r.rdb = redis.NewClient(&redis.Options{Addr: r.redisAddr, PoolSize: 16})
	if r.rdProxy, err = newProxy("redis", r.redisAddr); err != nil {
		return err
	}
	var db *DB
	switch r.Setup.Engine {
	case "", "postgresql":
		if db, err = r.startPostgres(ctx); err != nil {
			return err
		}
	default:
		if db, err = r.startSQL(); err != nil {
			return err
		}
	}
	r.prdb = NewRedis(r.rdProxy.Listen, 32)
	cfg.Options.Namespace = r.Setup.Namespace
	r.Plan.Config.Options.Namespace = r.Setup.Namespace
	r.env = &Env{Proc: "p", DB: db}
	for p := range Prefixes {
		t, err := NewTarget(r.Setup.Engine, p, db, r.prdb, cfg.Options)
		if err != nil {
			return err
		}
		r.env.Targets = append(r.env.Targets, t)
	}
	for p, t := range r.env.Targets {
		if err := t.CreateTables(ctx); err != nil {
			return fmt.Errorf("create tables of %s: %w", Prefixes[p].Name, err)
		}
		for i := range cfg.Items {
			init := t.Init
			if n := cfg.Buckets[p][i]; n > 1 {
				init = func(ctx context.Context, i int, qty int64) error { return t.InitBuckets(ctx, i, qty, n) }
			}
			if err := init(ctx, i, cfg.Capacity[p][i]); err != nil {
				return fmt.Errorf("init %s/%d: %w", Prefixes[p].Name, i, err)
			}
		}
	}
	r.hist = NewHistory()
	return nil
}

// startPostgres opens the admin pool, the proxy to PostgreSQL and the
// parent managers' pool through it.
func (r *Run) startPostgres(ctx context.Context) (*DB, error) {
	pool, err := NewPool(ctx, r.Setup.DBURL, r.Setup.Schema, 16)
	if err != nil {
		return nil, err
	}
	r.admin = pgAdmin{pool}
	pcfg, err := pgxpool.ParseConfig(r.Setup.DBURL)
	if err != nil {
		return nil, err
	}
	pgAddr := net.JoinHostPort(pcfg.ConnConfig.Host, strconv.Itoa(int(pcfg.ConnConfig.Port)))
	if r.pgProxy, err = newProxy("pg", pgAddr); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(r.Setup.DBURL)
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(r.pgProxy.Listen)
	pn, _ := strconv.Atoi(port)
	pc.ConnConfig.Host, pc.ConnConfig.Port = host, uint16(pn)
	pc.ConnConfig.RuntimeParams["search_path"] = r.Setup.Schema
	pc.ConnConfig.ConnectTimeout = 2 * time.Second
	if drawLocalized(r.Plan.Config.Seed) {
		// The server's messages in German (scripts/services.sh makes the
		// locale): the runtime must read errors by SQLSTATE alone.
		pc.ConnConfig.RuntimeParams["lc_messages"] = "de_DE.UTF-8"
	}
	pc.MaxConns = r.Plan.Config.ParentConns
	if r.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return nil, err
	}
	return NewDB(r.pool, r.Plan.Config.Seed, r.Plan.Config.DelayP), nil
}

// startSQL opens the admin database, and the parent managers' database: on
// MySQL through a proxy to the server, on SQLite the file itself (it has no
// network to fault).
func (r *Run) startSQL() (*DB, error) {
	adminDB, err := OpenSQL(r.Setup.Engine, r.Setup.DSN, "", 16)
	if err != nil {
		return nil, err
	}
	r.admin = sqlAdmin{db: adminDB, engine: r.Setup.Engine}
	addr := ""
	if r.Setup.Engine == "mysql" {
		server, err := mysqlAddr(r.Setup.DSN)
		if err != nil {
			return nil, err
		}
		if r.pgProxy, err = newProxy("mysql", server); err != nil {
			return nil, err
		}
		addr = r.pgProxy.Listen
	}
	if r.sqlPool, err = OpenSQL(r.Setup.Engine, r.Setup.DSN, addr, int(r.Plan.Config.ParentConns)); err != nil {
		return nil, err
	}
	return NewSQLDB(r.sqlPool, r.Plan.Config.Seed, r.Plan.Config.DelayP), nil
}

// childPlan is what a child process reads: the run's configuration and the
// steps of its clients, the in-flight ones of its predecessor first.
type childPlan struct {
	Role      string         `json:"role"`
	Config    Config         `json:"config"`
	DBURL     string         `json:"db"`
	Schema    string         `json:"schema"`
	Engine    string         `json:"engine,omitempty"`
	DSN       string         `json:"dsn,omitempty"`
	Redis     string         `json:"redis"`
	Proc      string         `json:"proc"`
	Until     time.Time      `json:"until"`
	Clients   map[int][]Step `json:"clients"`
	BatchSize int            `json:"batch,omitempty"`
	// Failpoints is the child's INVGEN_FAILPOINTS (failpointsFor).
	Failpoints string `json:"failpoints,omitempty"`
}

// ChildEnv is the environment variable that makes the test binary a child.
const ChildEnv = "INVGEN_ROBUSTNESS_CHILD"

func (r *Run) spawn(cp childPlan) (*exec.Cmd, *bytes.Buffer, chan struct{}, error) {
	cp.Config = r.Plan.Config
	cp.DBURL, cp.Schema, cp.Redis = r.Setup.DBURL, r.Setup.Schema, r.redisAddr
	cp.Engine, cp.DSN = r.Setup.Engine, r.Setup.DSN
	b, err := json.Marshal(cp)
	if err != nil {
		return nil, nil, nil, err
	}
	path := filepath.Join(r.Setup.Dir, cp.Proc+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, nil, nil, err
	}
	cmd := exec.Command(r.Setup.Exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), ChildEnv+"="+path)
	if cp.Failpoints != "" {
		cmd.Env = append(cmd.Env, "INVGEN_FAILPOINTS="+cp.Failpoints)
	}
	out := &bytes.Buffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	return cmd, out, done, nil
}

// startChild starts the next incarnation of k; the caller holds k.mu.
func (r *Run) startChild(k *child, until time.Time) error {
	k.incarnation++
	proc := fmt.Sprintf("ch%d.%d", k.index, k.incarnation)
	cmd, out, done, err := r.spawn(childPlan{Role: "buyer", Proc: proc, Until: until, Clients: k.remaining,
		Failpoints: failpointsFor(r.Plan.Config.Seed, k.index, k.incarnation)})
	if err != nil {
		return err
	}
	k.cmd, k.out, k.done, k.killed = cmd, out, done, false
	return nil
}

// failpointSites are the failpoints of the runtime (failpoint.go): the
// points between the steps of a change of a split item over its buckets.
var failpointSites = []string{"split-mark", "split-take", "split-row", "split-load"}

// failpointsFor draws the failpoints of one incarnation of a buyer
// process: each site kills it with a chance of 0–25% (a build with the tag
// invgen_failpoints; make test has it). Drawn from the seed, the child
// and the incarnation: older plans keep theirs.
func failpointsFor(seed uint64, child, incarnation int) string {
	rng := rand.New(rand.NewPCG(seed, uint64(child)<<32|uint64(incarnation)|0xf<<60))
	var fs []string
	for _, site := range failpointSites {
		fs = append(fs, fmt.Sprintf("%s=%d", site, rng.IntN(26)))
	}
	return strings.Join(fs, ",")
}

// supervise collects each incarnation of k once it ends and starts its
// successor while the traffic runs: after the run killed it
// (FaultKillChild), or after a failpoint killed it (an event of its
// own). It closes k.finished once the last one is collected.
func (r *Run) supervise(k *child, until time.Time) {
	defer close(k.finished)
	for {
		k.mu.Lock()
		done := k.done
		k.mu.Unlock()
		<-done
		begin := time.Now().UnixNano()
		k.mu.Lock()
		r.collect(k)
		killed := k.killed
		restart := time.Now().Before(until.Add(-100 * time.Millisecond))
		if restart {
			if err := r.startChild(k, until); err != nil {
				r.logf("restart child: %v", err)
				restart = false
			}
		}
		k.mu.Unlock()
		if !killed && restart {
			r.event(Event{Kind: FaultFailpointKill, Start: begin, End: time.Now().UnixNano(), Note: fmt.Sprintf("child %d", k.index)})
		}
		if !restart {
			return
		}
	}
}

// collect reads a child's report into the history and works out what its
// successor has left to do: its steps not yet begun, the in-flight ones
// first (a retry of an op key whose outcome the client never learnt).
func (r *Run) collect(k *child) {
	<-k.done
	started := map[string]bool{}
	inflight := map[int]*Step{}
	parseCalls(k.out.Bytes(), func(c Call, done bool) {
		r.hist.Add(c, done)
		st := c.Step
		started[st.ID()] = true
		if done {
			delete(inflight, st.Client)
		} else {
			s := st
			inflight[st.Client] = &s
		}
	})
	next := map[int][]Step{}
	for c, steps := range k.remaining {
		var rest []Step
		if s := inflight[c]; s != nil {
			retry := *s
			retry.Think = 0
			rest = append(rest, retry)
		}
		for _, s := range steps {
			if !started[s.ID()] {
				rest = append(rest, s)
			}
		}
		next[c] = rest
	}
	k.remaining = next
}

// parseCalls calls each for every call line of a child's report (ChildMain),
// in order: once when the call started and once when it returned.
func parseCalls(out []byte, each func(c Call, done bool)) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) < 3 || line[0] != '{' {
			continue
		}
		var ev struct {
			Done bool `json:"done"`
			Call Call `json:"call"`
		}
		if json.Unmarshal(line, &ev) != nil {
			continue // a line cut by the kill
		}
		each(ev.Call, ev.Done)
	}
}

func (r *Run) startFlusher(until time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.flusher != nil {
		return nil
	}
	cmd, out, done, err := r.spawn(childPlan{Role: "flusher", Proc: fmt.Sprintf("fl%d", r.stats["flusher-start"]), Until: until,
		BatchSize: 5 + rand.IntN(200)})
	if err != nil {
		return err
	}
	r.stats["flusher-start"]++
	r.flusher, r.flOut, r.flDone = cmd, out, done
	return nil
}

func (r *Run) stopFlusher() {
	r.mu.Lock()
	cmd, done := r.flusher, r.flDone
	r.flusher = nil
	r.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// Traffic runs the plan: parent clients, child processes, the flusher
// process and the fault schedule, for the plan's duration.
func (r *Run) Traffic(ctx context.Context) {
	cfg := r.Plan.Config
	r.start = time.Now()
	until := r.start.Add(cfg.Duration)
	tctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	var wg sync.WaitGroup
	holders := cfg.ParentClients + cfg.Children*cfg.ChildClients
	for c := range cfg.ParentClients + cfg.HolderClients {
		id := c
		if c >= cfg.ParentClients {
			id = holders + c - cfg.ParentClients
		}
		if id >= len(r.Plan.Clients) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.env.RunClient(tctx, cfg.Seed, r.Plan.Clients[id], r.hist.Add)
		}()
	}
	for i := range cfg.Children {
		k := &child{index: i, remaining: map[int][]Step{}, finished: make(chan struct{})}
		for c := range cfg.ChildClients {
			id := cfg.ParentClients + i*cfg.ChildClients + c
			k.remaining[id] = r.Plan.Clients[id]
		}
		if err := r.startChild(k, until); err != nil {
			r.logf("start child: %v", err)
			continue
		}
		r.mu.Lock()
		r.kids[i] = k
		r.mu.Unlock()
		go r.supervise(k, until)
	}
	if err := r.startFlusher(until.Add(time.Hour)); err != nil {
		r.logf("start flusher: %v", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.sampleI1(tctx)
	}()
	r.faults(tctx, until)
	wg.Wait()
	// The children stop at the deadline by themselves; give them a moment,
	// then kill what is left (its in-flight calls stay unknown).
	for _, k := range r.kids {
		select {
		case <-k.finished:
		case <-time.After(3 * time.Second):
			k.mu.Lock()
			k.cmd.Process.Signal(syscall.SIGKILL)
			k.mu.Unlock()
			<-k.finished
		}
	}
	r.stopFlusher()
}

// faults runs the fault schedule until the traffic ends.
func (r *Run) faults(ctx context.Context, until time.Time) {
	rng := rand.New(rand.NewPCG(r.Plan.Config.Seed, 0xfa17))
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, f := range r.Plan.Faults {
		sleep(ctx, time.Until(r.start.Add(f.At)))
		if ctx.Err() != nil {
			return
		}
		f := f
		begin := time.Now().UnixNano()
		switch f.Kind {
		case FaultOpDel, FaultOpDelAll:
			pct := f.Arg
			if f.Kind == FaultOpDelAll {
				pct = 100
			}
			n, err := forgetOps(ctx, r.rdb, r.Setup.Namespace, pct, rng)
			r.event(Event{Kind: f.Kind, Start: begin, End: time.Now().UnixNano(), Note: fmt.Sprintf("%d deleted %v", n, err)})
		case FaultRedisRestart:
			wg.Add(1)
			end := r.begin(f.Kind)
			go func() {
				defer wg.Done()
				r.stopRedis()
				os.Remove(filepath.Join(r.Setup.Dir, "redis", "dump.rdb"))
				sleep(context.Background(), f.Dur)
				end(fmt.Sprint(r.startRedis()))
			}()
		case FaultRedisRollback:
			wg.Add(1)
			end := r.begin(f.Kind)
			go func() {
				defer wg.Done()
				// The snapshot is what a lagging replica or the last
				// save holds; the writes of the next Dur are lost.
				err := r.rdb.Save(context.Background()).Err()
				sleep(context.Background(), f.Dur)
				r.stopRedis()
				err = errors.Join(err, r.startRedis())
				os.Remove(filepath.Join(r.Setup.Dir, "redis", "dump.rdb"))
				end(fmt.Sprint(err))
			}()
		case FaultLockTable:
			wg.Add(1)
			go func() {
				defer wg.Done()
				tbl := Prefixes[f.Prefix].UsageTable
				if f.Arg == 1 {
					tbl = Prefixes[f.Prefix].ModTable
				}
				lctx, cancel := context.WithTimeout(context.Background(), f.Dur+2*time.Second)
				defer cancel()
				err := r.admin.lockTable(lctx, tbl, f.Dur)
				r.event(Event{Kind: f.Kind, Start: begin, End: time.Now().UnixNano(), Note: tbl + " " + fmt.Sprint(err)})
			}()
		case FaultPoolHold:
			if r.sqlPool != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					hctx, cancel := context.WithTimeout(context.Background(), f.Dur+2*time.Second)
					defer cancel()
					err := holdConns(hctx, r.sqlPool, int(r.Plan.Config.ParentConns), f.Dur)
					r.event(Event{Kind: f.Kind, Start: begin, End: time.Now().UnixNano(), Note: fmt.Sprint(err)})
				}()
				continue
			}
			for range r.Plan.Config.ParentConns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					hctx, cancel := context.WithTimeout(context.Background(), f.Dur+2*time.Second)
					defer cancel()
					_, err := r.pool.Exec(hctx, "SELECT pg_sleep($1)", f.Dur.Seconds())
					r.event(Event{Kind: f.Kind, Start: begin, End: time.Now().UnixNano(), Note: fmt.Sprint(err)})
				}()
			}
		case FaultGarble:
			what, err := garble(ctx, r.rdb, r.Setup.Namespace, f.Prefix, f.Item, f.Arg)
			r.mu.Lock()
			r.garbled[[2]int{f.Prefix, f.Item}] = true
			r.cleanup = append(r.cleanup, what)
			r.mu.Unlock()
			r.event(Event{Kind: f.Kind, Start: begin, End: time.Now().UnixNano(), Prefix: f.Prefix, Item: f.Item,
				Note: fmt.Sprintf("variant %d %s %v", f.Arg, what, err)})
		case FaultKillChild:
			r.mu.Lock()
			k := r.kids[f.Arg]
			r.mu.Unlock()
			if k == nil {
				continue
			}
			// supervise collects it and starts its successor.
			k.mu.Lock()
			k.killed = true
			k.cmd.Process.Signal(syscall.SIGKILL)
			k.mu.Unlock()
			r.event(Event{Kind: f.Kind, Start: begin, End: time.Now().UnixNano(), Note: fmt.Sprintf("child %d", f.Arg)})
		case FaultFlusherKill:
			r.stopFlusher()
			r.event(Event{Kind: f.Kind, Start: begin, End: begin})
			wg.Add(1)
			go func() {
				defer wg.Done()
				sleep(ctx, f.Dur)
				if ctx.Err() == nil {
					r.startFlusher(until.Add(time.Hour))
				}
				r.event(Event{Kind: FaultFlusherPaused, Start: begin, End: time.Now().UnixNano()})
			}()
		case FaultToxic:
			wg.Add(1)
			go func() {
				defer wg.Done()
				variant := f.Arg
				if r.pgProxy == nil && variant%6 != 1 && variant%6 != 4 {
					// SQLite has no network: its toxics go to Redis.
					variant = 1 + 3*(variant%2)
				}
				err := toxic(ctx, r.pgProxy, r.rdProxy, variant, f.Dur)
				kind := f.Kind
				if variant%6 == 1 || variant%6 == 4 {
					kind = FaultToxicRedis
				}
				r.event(Event{Kind: kind, Start: begin, End: time.Now().UnixNano(), Note: fmt.Sprintf("variant %d %v", f.Arg, err)})
			}()
		default:
			r.ledgerFault(ctx, f, &wg, begin)
		}
	}
}
