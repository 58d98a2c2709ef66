package contract

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/examples/flashsale/inventory/drop"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// streams are the Redis keys of the drop prefix's shard streams.
func streams(f *fixture[string]) []string {
	var out []string
	for i := range drop.Shards {
		out = append(out, f.ns+":{drop:"+strconv.Itoa(i)+"}:stream")
	}
	return out
}

// consumers counts the consumers of the flushers' group over every stream.
func consumers(t *testing.T, f *fixture[string]) (total, most int) {
	t.Helper()
	for _, s := range streams(f) {
		cs, err := f.rdb.XInfoConsumers(context.Background(), s, "invgen").Result()
		if err != nil {
			continue // no stream or no group yet
		}
		total += len(cs)
		most = max(most, len(cs))
	}
	return total, most
}

// buyers runs n goroutines buying one unit at a time from item until stop
// is called, and returns how many purchases succeeded.
func buyers(t *testing.T, f *fixture[string], item string, n int) (stop func() int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg   sync.WaitGroup
		seq  atomic.Int64
		sold atomic.Int64
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := f.m.Decr(ctx, item, 1, "b"+strconv.FormatInt(seq.Add(1), 10)); err == nil {
					sold.Add(1)
				}
			}
		}()
	}
	return func() int64 { cancel(); wg.Wait(); return sold.Load() }
}

// Flush under sustained traffic writes what the streams held when it was
// called and returns; it does not chase the buyers.
func TestStreamFlushReturnsUnderTraffic(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", invrt.MaxQuantity), "Init")
	// Each batch statement takes 100ms, so the flush is slower than the
	// buyers and never finds the streams empty.
	_, err := f.pool.Exec(ctx, `CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(0.1); RETURN NULL; END $$;
		CREATE TRIGGER slow_batch AFTER INSERT ON `+f.usageTable+` FOR EACH STATEMENT EXECUTE FUNCTION slow_batch()`)
	testenv.Must(t, err, "trigger")
	stop := buyers(t, f, "hot", 16)
	defer stop()
	time.Sleep(300 * time.Millisecond)
	before, err := f.flusher().FlushLag(ctx)
	testenv.Must(t, err, "FlushLag")
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	n, err := f.flusher().Flush(fctx)
	if err != nil {
		t.Fatalf("Flush under traffic = %d, %v after %v (%d entries when called)", n, err, time.Since(start), before.Entries)
	}
	if int64(n) < before.Entries {
		t.Fatalf("Flush wrote %d entries, the streams held %d when it was called", n, before.Entries)
	}
	if rows := usageRows(t, f); rows < before.Entries {
		t.Fatalf("the ledger has %d rows, the streams held %d when Flush was called", rows, before.Entries)
	}
	t.Logf("%d entries when called, Flush wrote %d in %v", before.Entries, n, time.Since(start).Round(time.Millisecond))
}

// A flusher whose ledger tables are gone reports the error and stops with
// it, rather than retrying every few milliseconds for ever.
func TestFlusherStopsOnPermanentError(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	_, err := f.m.Decr(ctx, "a", 1, "o1")
	testenv.Must(t, err, "Decr")
	_, err = f.pool.Exec(ctx, "DROP TABLE "+f.usageTable)
	testenv.Must(t, err, "drop")
	var reported atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	err = f.flusher().RunFlusher(rctx, invrt.FlusherConfig{OnError: func(error) { reported.Add(1) }})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42P01" {
		t.Fatalf("RunFlusher returned %v after %v; want the undefined_table error", err, time.Since(start))
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("RunFlusher took %v to give up", time.Since(start))
	}
	if reported.Load() == 0 {
		t.Fatal("OnError was not called")
	}
}

// Errors that may pass are retried with a growing pause, each one
// reported; once the cause is gone the flusher catches up.
func TestFlusherReportsRoundErrors(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 10), "Init")
	_, err := f.pool.Exec(ctx, `CREATE FUNCTION no_flush() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'not now'; END $$;
		CREATE TRIGGER no_flush BEFORE INSERT ON `+f.usageTable+` FOR EACH STATEMENT EXECUTE FUNCTION no_flush()`)
	testenv.Must(t, err, "trigger")
	_, err = f.m.Decr(ctx, "a", 1, "o1")
	testenv.Must(t, err, "Decr")
	var (
		mu   sync.Mutex
		errs []error
	)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- f.flusher().RunFlusher(rctx, invrt.FlusherConfig{OnError: func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}})
	}()
	time.Sleep(time.Second)
	mu.Lock()
	n := len(errs)
	var pe *pgconn.PgError
	ok := n > 0 && errors.As(errs[0], &pe) && pe.Code == "P0001"
	mu.Unlock()
	if !ok || n > 20 {
		t.Fatalf("%d errors reported in 1s (first %v); want a few, with backoff", n, errs)
	}
	_, err = f.pool.Exec(ctx, "DROP TRIGGER no_flush ON "+f.usageTable)
	testenv.Must(t, err, "drop trigger")
	deadline := time.Now().Add(5 * time.Second)
	for usageRows(t, f) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the flusher did not catch up once the cause was gone")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunFlusher returned %v", err)
	}
}

// Flush calls and flushers that stop remove their consumers from the
// group; the group does not grow with every call.
func TestFlusherConsumersAreBounded(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 1000), "Init")
	for i := range 200 {
		if i%10 == 0 {
			_, err := f.m.Decr(ctx, "a", 1, "o"+strconv.Itoa(i))
			testenv.Must(t, err, "Decr")
		}
		_, err := f.flusher().Flush(ctx)
		testenv.Must(t, err, "Flush")
	}
	for i := range 20 {
		_, err := f.m.Decr(ctx, "a", 1, "r"+strconv.Itoa(i))
		testenv.Must(t, err, "Decr")
		rctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		if err := f.flusher().RunFlusher(rctx, invrt.FlusherConfig{}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("RunFlusher returned %v", err)
		}
		cancel()
	}
	if total, most := consumers(t, f); most > 1 {
		t.Fatalf("after 200 Flush calls and 20 flushers: %d consumers in all, %d on one stream", total, most)
	}
	if rows := usageRows(t, f); rows != 40 {
		t.Fatalf("%d usage rows, want 40", rows)
	}
}

// Consumers of flushers that died (idle for ForgetAfter, nothing pending)
// are removed by a live flusher; one with entries pending is kept, so
// that its entries can still be claimed.
func TestFlusherForgetsDeadConsumers(t *testing.T) {
	f := streamFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "a", 1000), "Init")
	_, err := f.flusher().Flush(ctx) // creates the group
	testenv.Must(t, err, "Flush")
	for _, s := range streams(f) {
		testenv.Must(t, f.rdb.XGroupCreateConsumer(ctx, s, "invgen", "ghost").Err(), "create consumer")
	}
	// A dead consumer that holds an entry.
	_, err = f.m.Decr(ctx, "a", 1, "held")
	testenv.Must(t, err, "Decr")
	var holder string
	for _, s := range streams(f) {
		got, err := f.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "invgen", Consumer: "holder", Streams: []string{s, ">"}, Count: 10, Block: -1}).Result()
		if err == nil && len(got) > 0 && len(got[0].Messages) > 0 {
			holder = s
		}
	}
	if holder == "" {
		t.Fatal("no entry to hold")
	}
	time.Sleep(150 * time.Millisecond)
	rctx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
	defer cancel()
	f.flusher().RunFlusher(rctx, invrt.FlusherConfig{ForgetAfter: 100 * time.Millisecond, ClaimAfter: time.Minute})
	for _, s := range streams(f) {
		cs, err := f.rdb.XInfoConsumers(ctx, s, "invgen").Result()
		testenv.Must(t, err, "consumers")
		for _, c := range cs {
			if c.Name == "ghost" {
				t.Fatalf("%s: the dead consumer is still in the group", s)
			}
			if c.Name == "holder" && s != holder {
				t.Fatalf("%s: consumer holder, which holds nothing here, is still in the group", s)
			}
		}
		if s == holder && len(cs) != 1 {
			t.Fatalf("%s: consumers %+v; want only the one holding an entry", s, cs)
		}
	}
}
