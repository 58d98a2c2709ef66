package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/examples/flashsale/inventory/drop"
	"github.com/invgen/invgen/internal/testenv"
)

// invgen flush writes what stream-mode purchases left in Redis to the
// ledger, with the statement the spec's templates render, and a second run
// writes nothing more.
func TestFlushCommand(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	pool := testenv.Pool(t)
	m, err := drop.New(pool, rdb, drop.WithNamespace(ns))
	testenv.Must(t, err, "New")
	testenv.Must(t, m.CreateTables(ctx), "CreateTables")
	testenv.Must(t, m.Init(ctx, "hot", 100), "Init")
	for _, op := range []string{"o1", "o2", "o3"} {
		_, err := m.Decr(ctx, "hot", 2, op)
		testenv.Must(t, err, "Decr")
	}
	_, err = m.Release(ctx, "hot", "o2")
	testenv.Must(t, err, "Release")

	args := flushArgs(t, pool, ns)

	r := invgen(t, args...).want(t, exitOK)
	if !strings.Contains(r.stdout, "drop: wrote 4 entries") {
		t.Fatalf("stdout %q, want 4 entries written", r.stdout)
	}
	r = invgen(t, args...).want(t, exitOK)
	if !strings.Contains(r.stdout, "drop: wrote 0 entries") {
		t.Fatalf("second run: stdout %q, want nothing written", r.stdout)
	}
	var rows, sum int64
	testenv.Must(t, pool.QueryRow(context.Background(),
		"SELECT count(*), COALESCE(SUM(delta), 0) FROM "+drop.UsageTable+" WHERE state = 'committed'").Scan(&rows, &sum), "ledger")
	if rows != 4 || sum != -4 {
		t.Fatalf("ledger: %d rows summing to %d; want 4 rows, -4", rows, sum)
	}
	if got, _ := m.Get(ctx, "hot"); got != 100+sum {
		t.Fatalf("Redis %d, ledger %d", got, 100+sum)
	}
}

func TestFlushCommandNeedsAStreamPrefix(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	writeFile(t, "go.mod", "module example.com/x\n\ngo 1.26\n")
	writeFile(t, "inventory.yaml", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n")
	r := invgen(t, "flush", "-once").want(t, exitUsage)
	if !strings.Contains(r.stderr, "no prefix of inventory.yaml uses ledger: stream") {
		t.Fatalf("stderr %q", r.stderr)
	}
}

// flushArgs are the arguments of `invgen flush -once` of the root spec
// against the test's schema and namespace.
func flushArgs(t *testing.T, pool *pgxpool.Pool, ns string) []string {
	u, err := url.Parse(testenv.DatabaseURL())
	testenv.Must(t, err, "db url")
	q := u.Query()
	q.Set("search_path", testenv.Schema(pool))
	u.RawQuery = q.Encode()
	return []string{"flush", "-f", "../../inventory.yaml", "-once", "-namespace", ns, "-redis", testRedisURL(), "-db", u.String()}
}

// A flusher of another namespace than the application's would read streams
// nobody writes and report "wrote 0 entries": it is refused, naming both
// layouts, and the entries stay for the right one.
func TestFlushCommandRefusesAnotherLayout(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	pool := testenv.Pool(t)
	m, err := drop.New(pool, rdb, drop.WithNamespace(ns))
	testenv.Must(t, err, "New")
	testenv.Must(t, m.CreateTables(ctx), "CreateTables")
	testenv.Must(t, m.Init(ctx, "hot", 10), "Init")
	_, err = m.Decr(ctx, "hot", 1, "o1")
	testenv.Must(t, err, "Decr")

	other := testenv.Namespace(t, rdb)
	r := invgen(t, flushArgs(t, pool, other)...).want(t, exitFail)
	for _, want := range []string{"layout mismatch", "namespace=" + ns, "namespace=" + other} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q does not say %q", r.stderr, want)
		}
	}
	if strings.Contains(r.stdout, "wrote") {
		t.Errorf("stdout %q: a refused flusher wrote", r.stdout)
	}
	if lag, err := m.FlushLag(ctx); err != nil || lag.Entries != 1 {
		t.Fatalf("FlushLag = %+v, %v; want the entry still there", lag, err)
	}
	r = invgen(t, flushArgs(t, pool, ns)...).want(t, exitOK)
	if !strings.Contains(r.stdout, "drop: wrote 1 entries") {
		t.Fatalf("stdout %q", r.stdout)
	}

	// A layout record that was lost (or never written) is refused too.
	if _, err := pool.Exec(ctx, "DELETE FROM "+drop.LayoutTable); err != nil {
		t.Fatal(err)
	}
	r = invgen(t, flushArgs(t, pool, ns)...).want(t, exitFail)
	if !strings.Contains(r.stderr, "records no layout") {
		t.Fatalf("stderr %q", r.stderr)
	}
}

// Against a database that does not know the prefix (no tables), flush
// exits 1 at once with a message instead of retrying forever.
func TestFlushCommandUnknownPrefix(t *testing.T) {
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	pool := testenv.Pool(t)
	args := flushArgs(t, pool, ns)
	done := make(chan result, 1)
	go func() { done <- invgen(t, args...) }()
	select {
	case r := <-done:
		r.want(t, exitFail)
		if !strings.Contains(r.stderr, "no table "+drop.LayoutTable) || !strings.Contains(r.stderr, "unknown") {
			t.Fatalf("stderr %q", r.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("invgen flush still runs after 30s against a database without the tables")
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// flushSetup sets up a drop manager with one unflushed purchase and returns
// it with the arguments of `invgen flush` on its namespace and schema.
func flushSetup(t *testing.T) (*drop.Manager, *pgxpool.Pool, []string) {
	ctx := testenv.Context(t, time.Minute)
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	pool := testenv.Pool(t)
	m, err := drop.New(pool, rdb, drop.WithNamespace(ns))
	testenv.Must(t, err, "New")
	testenv.Must(t, m.CreateTables(ctx), "CreateTables")
	testenv.Must(t, m.Init(ctx, "hot", 100), "Init")
	_, err = m.Decr(ctx, "hot", 2, "o1")
	testenv.Must(t, err, "Decr")
	u, err := url.Parse(testenv.DatabaseURL())
	testenv.Must(t, err, "db url")
	q := u.Query()
	q.Set("search_path", testenv.Schema(pool))
	u.RawQuery = q.Encode()
	return m, pool, []string{"flush", "-f", "../../inventory.yaml", "-namespace", ns, "-redis", testRedisURL(), "-db", u.String()}
}

// runAsync runs the command in the background.
func runAsync(args []string) (stdout, stderr *lockedBuffer, code chan int) {
	stdout, stderr, code = &lockedBuffer{}, &lockedBuffer{}, make(chan int, 1)
	go func() { code <- run(args, stdout, stderr) }()
	return stdout, stderr, code
}

// invgen flush stops with a failure status when the ledger's tables are
// gone, instead of retrying silently for ever.
func TestFlushCommandStopsOnPermanentError(t *testing.T) {
	_, pool, args := flushSetup(t)
	_, err := pool.Exec(context.Background(), "DROP TABLE "+drop.UsageTable)
	testenv.Must(t, err, "drop")
	_, stderr, code := runAsync(args)
	select {
	case c := <-code:
		if c == exitOK {
			t.Fatalf("exit %d; stderr %q", c, stderr.String())
		}
		if !strings.Contains(stderr.String(), "42P01") {
			t.Fatalf("stderr %q does not name the error", stderr.String())
		}
	case <-time.After(15 * time.Second):
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		<-code
		t.Fatalf("invgen flush still running 15s after its tables were dropped; stderr %q", stderr.String())
	}
}

// invgen flush prints the errors of rounds that failed, and goes on.
func TestFlushCommandPrintsRoundErrors(t *testing.T) {
	_, pool, args := flushSetup(t)
	_, err := pool.Exec(context.Background(), `CREATE FUNCTION no_flush() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'not now'; END $$;
		CREATE TRIGGER no_flush BEFORE INSERT ON `+drop.UsageTable+` FOR EACH STATEMENT EXECUTE FUNCTION no_flush()`)
	testenv.Must(t, err, "trigger")
	_, stderr, code := runAsync(args)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "not now") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	seen := strings.Contains(stderr.String(), "not now")
	_, err = pool.Exec(context.Background(), "DROP TRIGGER no_flush ON "+drop.UsageTable)
	testenv.Must(t, err, "drop trigger")
	time.Sleep(300 * time.Millisecond)
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	c := <-code
	if !seen {
		t.Fatalf("no round error on stderr %q", stderr.String())
	}
	if c != exitOK {
		t.Fatalf("exit %d after a passing error; stderr %q", c, stderr.String())
	}
	var rows int64
	testenv.Must(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM "+drop.UsageTable).Scan(&rows), "rows")
	if rows != 1 {
		t.Fatalf("%d rows flushed, want 1", rows)
	}
}

// invgen flush -once writes the streams of every master of a Redis
// Cluster, named by its seeds in either form, and refuses a cluster node
// named as a single server.
func TestFlushCommandCluster(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	seeds := testCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: seeds})
	t.Cleanup(func() { rdb.Close() })
	ns := testenv.Namespace(t, rdb)
	pool := testenv.Pool(t)
	m, err := drop.New(pool, rdb, drop.WithNamespace(ns))
	testenv.Must(t, err, "New")
	testenv.Must(t, m.CreateTables(ctx), "CreateTables")
	// 32 items over the prefix's 16 shards, whose streams lie on every
	// master.
	const items = 32
	for i := range items {
		testenv.Must(t, m.Init(ctx, fmt.Sprintf("sku-%d", i), 10), "Init")
	}
	buy := func(round int) {
		for i := range items {
			_, err := m.Decr(ctx, fmt.Sprintf("sku-%d", i), 1, fmt.Sprintf("o%d-%d", round, i))
			testenv.Must(t, err, "Decr")
		}
	}
	buy(1)
	var (
		mu      sync.Mutex
		masters []string
	)
	testenv.Must(t, rdb.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, err := node.Keys(ctx, ns+":*:stream").Result()
		if len(keys) > 0 {
			mu.Lock()
			masters = append(masters, node.Options().Addr)
			mu.Unlock()
		}
		return err
	}), "streams per master")
	if len(masters) < 2 {
		t.Fatalf("the streams are on %v only; want them on several masters", masters)
	}

	args := flushArgs(t, pool, ns)
	withRedis := func(url string) []string {
		a := slices.Clone(args)
		a[slices.Index(a, "-redis")+1] = url
		return a
	}
	r := invgen(t, withRedis(clusterURL(seeds))...).want(t, exitOK)
	if !strings.Contains(r.stdout, fmt.Sprintf("drop: wrote %d entries", items)) {
		t.Fatalf("stdout %q, want %d entries written", r.stdout, items)
	}
	buy(2)
	goRedisForm := "redis://" + seeds[0] + "?addr=" + strings.Join(seeds[1:], "&addr=")
	r = invgen(t, withRedis(goRedisForm)...).want(t, exitOK)
	if !strings.Contains(r.stdout, fmt.Sprintf("drop: wrote %d entries", items)) {
		t.Fatalf("%s: stdout %q, want %d entries written", goRedisForm, r.stdout, items)
	}
	r = invgen(t, withRedis(clusterURL(seeds[:1]))...).want(t, exitOK)
	if !strings.Contains(r.stdout, "drop: wrote 0 entries") {
		t.Fatalf("third run: stdout %q, want nothing written", r.stdout)
	}
	var rows, sum int64
	testenv.Must(t, pool.QueryRow(ctx,
		"SELECT count(*), COALESCE(SUM(delta), 0) FROM "+drop.UsageTable+" WHERE state = 'committed'").Scan(&rows, &sum), "ledger")
	if rows != 2*items || sum != -2*items {
		t.Fatalf("ledger: %d rows summing to %d; want %d rows, -%d", rows, sum, 2*items, 2*items)
	}
	if lag, err := m.FlushLag(ctx); err != nil || lag.Entries != 0 {
		t.Fatalf("FlushLag = %+v, %v; want nothing left", lag, err)
	}

	// One node named as a single server would get MOVED for most keys.
	r = invgen(t, withRedis("redis://"+seeds[0])...).want(t, exitFail)
	if !strings.Contains(r.stderr, "is a node of a Redis Cluster") || strings.Contains(r.stdout, "wrote") {
		t.Fatalf("a cluster node as -redis: stdout %q stderr %q", r.stdout, r.stderr)
	}
	// A database number with a cluster is an error, before any connection.
	r = invgen(t, withRedis(clusterURL(seeds)+"/1")...).want(t, exitUsage)
	if !strings.Contains(r.stderr, "database 0 only") {
		t.Fatalf("a cluster URL with a database: stderr %q", r.stderr)
	}
}
