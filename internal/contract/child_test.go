package contract

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/examples/flashsale/inventory/drop"
	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// A buyer process (the test binary run with INVGEN_CHILD=buyer) buys the
// hot SKU with 16 goroutines and reports every event on its own line at
// once, so that a SIGKILL loses no report:
//
//	start <op> <n>        before the Decr
//	ok <op> <n> <0|1>     the purchase succeeded (1: a replay)
//	short <op>            sold out
//	void <op>             the op key was voided
//	err <op> <message>    any other error
//
// Environment: INVGEN_CHILD_NS, INVGEN_CHILD_SCHEMA, INVGEN_CHILD_ID (op
// key prefix), INVGEN_CHILD_ATTEMPTS, INVGEN_CHILD_LEASE (optional), and
// INVGEN_CHILD_RETRY: "op:n,op:n" op keys a killed predecessor had in
// flight, retried first. With INVGEN_CHILD_MODE=stream it buys through the
// stream-mode prefix and runs a flusher too.

// event is one line of a buyer's report.
type event struct {
	kind, op, msg string
	n             int64
	replayed      bool
}

func parseEvents(r io.Reader) []event {
	var out []event
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		if len(f) < 2 {
			continue // a line cut by a kill
		}
		ev := event{kind: f[0], op: f[1]}
		if len(f) == 3 {
			ev.msg = f[2]
			if ev.kind == "ok" || ev.kind == "start" {
				nf := strings.Fields(f[2])
				n, err := strconv.ParseInt(nf[0], 10, 64)
				if err != nil || ev.kind == "ok" && len(nf) != 2 {
					continue // cut by a kill
				}
				ev.n = n
				ev.replayed = len(nf) == 2 && nf[1] == "1"
			}
		} else if ev.kind == "ok" || ev.kind == "start" {
			continue
		}
		out = append(out, ev)
	}
	return out
}

// childServers connects a child process to the parent's PostgreSQL schema
// and Redis (or the Redis of INVGEN_CHILD_REDIS), and returns the options
// of its managers and a function that closes both.
func childServers(ctx context.Context) (*pgxpool.Pool, redis.UniversalClient, []invrt.Option, func(), error) {
	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL())
	if err != nil {
		return nil, nil, nil, nil, err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = os.Getenv("INVGEN_CHILD_SCHEMA")
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	var rdb redis.UniversalClient
	if u := os.Getenv("INVGEN_CHILD_REDIS"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			pool.Close()
			return nil, nil, nil, nil, err
		}
		rdb = redis.NewClient(opt)
	} else if rdb, err = testenv.NewRedis(0); err != nil {
		pool.Close()
		return nil, nil, nil, nil, err
	}
	opts := []invrt.Option{invrt.WithNamespace(os.Getenv("INVGEN_CHILD_NS")), invrt.WithBusyWait(5 * time.Second)}
	if d, err := time.ParseDuration(os.Getenv("INVGEN_CHILD_LEASE")); err == nil {
		opts = append(opts, invrt.WithLease(d))
	}
	return pool, rdb, opts, func() { rdb.Close(); pool.Close() }, nil
}

func childBuyer() int {
	ctx := context.Background()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	pool, rdb, opts, closeAll, err := childServers(ctx)
	if err != nil {
		return fail(err)
	}
	defer closeAll()
	var m manager[string]
	if os.Getenv("INVGEN_CHILD_MODE") == "stream" {
		// A stream-mode buyer also runs a flusher, which the kill interrupts
		// mid-batch as often as not.
		dm, err := drop.New(pool, rdb, opts...)
		if err != nil {
			return fail(err)
		}
		go dm.RunFlusher(ctx, invrt.FlusherConfig{ClaimAfter: 200 * time.Millisecond, BatchSize: 200})
		m = dm
	} else {
		fm, err := flashsale.New(pool, rdb, opts...)
		if err != nil {
			return fail(err)
		}
		m = fm
	}
	attempts, err := strconv.Atoi(os.Getenv("INVGEN_CHILD_ATTEMPTS"))
	if err != nil {
		return fail(fmt.Errorf("INVGEN_CHILD_ATTEMPTS: %w", err))
	}
	var work []string // "op:n" to retry first
	if r := os.Getenv("INVGEN_CHILD_RETRY"); r != "" {
		work = strings.Split(r, ",")
	}
	id := os.Getenv("INVGEN_CHILD_ID")
	var (
		next, retry atomic.Int64
		mu          sync.Mutex
		wg          sync.WaitGroup
	)
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Printf(format+"\n", args...)
		mu.Unlock()
	}
	buy := func(op string, n int64) {
		say("start %s %d", op, n)
		r, err := m.Decr(ctx, "hot", n, op)
		switch {
		case err == nil:
			rep := 0
			if r.Replayed {
				rep = 1
			}
			say("ok %s %d %d", op, -r.Delta, rep)
		case errors.Is(err, invrt.ErrInsufficientStock):
			say("short %s", op)
		case errors.Is(err, invrt.ErrVoided):
			say("void %s", op)
		default:
			say("err %s %s", op, strings.ReplaceAll(err.Error(), "\n", " "))
		}
	}
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := retry.Add(1) - 1
				if i >= int64(len(work)) {
					break
				}
				op, ns, _ := strings.Cut(work[i], ":")
				n, _ := strconv.ParseInt(ns, 10, 64)
				buy(op, n)
			}
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for {
				i := next.Add(1)
				if i > int64(attempts) {
					return
				}
				buy("p"+id+"-"+strconv.FormatInt(i, 10), int64(1+rng.IntN(3)))
			}
		}()
	}
	wg.Wait()
	return 0
}
