package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invgen/invgen/generator"
	invrt "github.com/invgen/invgen/runtime"
)

const flushDoc = `Flush runs the stream ledger's flusher for every prefix of the spec with
ledger: stream, outside the application: it writes the Redis usage streams to
the SQL ledger in batches until interrupted (SIGINT, SIGTERM), then drains
them and exits. With -once it writes what the streams hold and exits.
Several flushers may run at once; one that dies loses nothing. It first checks
that the ledger database records each prefix's layout as the spec (and
-namespace) describe it, and exits 1 when it does not, or when the database
has no tables of the prefix. Failed rounds are printed to stderr and retried;
a permanent failure (the ledger's tables, schema or privileges missing) stops
every flusher and exits non-zero. -redis names one Redis server or a Redis
Cluster (by its seeds); a cluster's nodes must all report cluster_state:ok.`

// runFlush is `invgen flush`.
func runFlush(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("invgen flush", flag.ContinueOnError)
	fset.SetOutput(stderr)
	file := fset.String("f", "inventory.yaml", "the spec `FILE`")
	redisURL := fset.String("redis", envOr("INVGEN_REDIS_URL", "redis://127.0.0.1:6379/0"), redisURLHelp)
	dbURL := fset.String("db", "", dbFlagDoc)
	namespace := fset.String("namespace", "", "Redis `namespace` replacing the spec's")
	once := fset.Bool("once", false, "write what the streams hold now and exit")
	fset.Usage = func() {
		fmt.Fprintf(stderr, "Usage: invgen flush [-f FILE] [-redis URL] [-db DB] [-namespace NS] [-once]\n\n%s\n\nFlags:\n", flushDoc)
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fset.NArg() > 0 {
		fmt.Fprintf(stderr, "invgen flush: unexpected argument %q\n", fset.Arg(0))
		return exitUsage
	}
	if _, err := parseRedisURL(*redisURL); err != nil {
		fmt.Fprintf(stderr, "invgen flush: -redis: %v\n", err)
		return exitUsage
	}
	m, code := loadModel(*file, stderr)
	if code != exitOK {
		return code
	}
	ns := m.Namespace
	if *namespace != "" {
		ns = *namespace
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pool, err := openDB(ctx, m.Engine, *dbURL)
	if err != nil {
		fmt.Fprintf(stderr, "invgen flush: %v\n", err)
		if errors.Is(err, errBadDB) {
			return exitUsage
		}
		return exitFail
	}
	defer pool.close()
	rdb, err := openRedis(ctx, *redisURL)
	if err != nil {
		fmt.Fprintf(stderr, "invgen flush: %v\n", err)
		return exitFail
	}
	defer rdb.Close()

	var (
		flushers []*invrt.Flusher
		names    []string
		mu       sync.Mutex // serializes writes to stderr
	)
	for _, p := range m.Prefixes {
		if p.Ledger != "stream" {
			continue
		}
		l, err := newSQLLedger(pool, m, p)
		if err != nil {
			fmt.Fprintf(stderr, "invgen flush: %v\n", err)
			return exitFail
		}
		if code := checkLayout(ctx, l, p, ns, stderr); code != exitOK {
			return code
		}
		name := p.Name
		f, err := invrt.NewFlusher(rdb, ns, p.Name, p.Shards, l, invrt.FlusherConfig{
			OnConflict: func(_ context.Context, items []string) {
				mu.Lock()
				defer mu.Unlock()
				fmt.Fprintf(stderr, "invgen flush: %s: Redis repeated changes of %v after forgetting their op keys; the ledger kept the first. Refresh these items (Manager.Refresh, or the janitor with Repair).\n", name, items)
			},
			OnError: func(err error) {
				mu.Lock()
				defer mu.Unlock()
				fmt.Fprintf(stderr, "invgen flush: %s: %v\n", name, err)
			},
		})
		if err != nil {
			fmt.Fprintf(stderr, "invgen flush: %s: %v\n", p.Name, err)
			return exitFail
		}
		flushers = append(flushers, f)
		names = append(names, p.Name)
	}
	if len(flushers) == 0 {
		fmt.Fprintf(stderr, "invgen flush: no prefix of %s uses ledger: stream\n", *file)
		return exitUsage
	}

	if *once {
		for i, f := range flushers {
			n, err := f.Flush(ctx)
			fmt.Fprintf(stdout, "%s: wrote %d entries\n", names[i], n)
			if err != nil {
				fmt.Fprintf(stderr, "invgen flush: %s: %v\n", names[i], err)
				return exitFail
			}
		}
		return exitOK
	}
	fmt.Fprintf(stdout, "invgen flush: flushing %v until interrupted\n", names)
	// A flusher that stops on a permanent failure stops the others too
	// (they drain), and the command fails.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg     sync.WaitGroup
		status = exitOK
	)
	for i, f := range flushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.Run(rctx); err != nil && !errors.Is(err, context.Canceled) {
				mu.Lock()
				fmt.Fprintf(stderr, "invgen flush: %s: %v\n", names[i], err)
				status = exitFail
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(stdout, "invgen flush: drained at %s\n", time.Now().Format(time.RFC3339))
	return status
}

// checkLayout refuses to flush a prefix whose ledger database records
// another layout, none, or no tables at all: a flusher of the wrong
// namespace or shards would read streams nobody writes and report nothing.
func checkLayout(ctx context.Context, l sqlLedger, p *generator.Prefix, ns string, stderr io.Writer) int {
	rec, found, err := l.LoadLayout(ctx)
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == "42P01": // undefined_table
		fmt.Fprintf(stderr, "invgen flush: %s: the ledger database has no table %s: the prefix is unknown there (the application's CreateTables creates its tables; is -db the right database?)\n",
			p.Name, p.LayoutTable)
		return exitFail
	case err != nil:
		fmt.Fprintf(stderr, "invgen flush: %s: read its layout: %v\n", p.Name, err)
		return exitFail
	}
	want := invrt.Layout{Namespace: ns, Shards: p.Shards, Ledger: p.Ledger, KeyType: p.Key, MaxKeyLen: p.MaxKeyLen}
	var r *invrt.LayoutRecord
	if found {
		r = &rec
	}
	if err := invrt.VerifyLayout(p.Name, want, r); err != nil {
		fmt.Fprintf(stderr, "invgen flush: %v\n", err)
		return exitFail
	}
	return exitOK
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
