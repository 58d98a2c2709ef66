// Command flashsale runs a flash sale against a real Redis and PostgreSQL
// with the packages invgen generated from the root inventory.yaml, then
// checks that Redis and the SQL ledger agree to the unit. It exits non-zero
// on any mismatch. When no PostgreSQL answers (or with -sqlite) it sells on
// SQLite instead, in a file of its own, with the same prefixes generated
// for the sqlite engine (examples/engines/sqlite): Redis is all it needs.
//
//	make demo        # or: go run ./examples/flashsale [-sqlite]
//
// 20,000 buyers (goroutines) each buy one unit of one hot SKU with its own
// order id; some retry the same order id as a client would after a timeout,
// some cancel afterwards (Release). A few other items of each key type
// (string, int64, uuid) trade alongside. Then the same crowd buys from the
// stream-ledger prefix, with a flusher writing the ledger beside them. On
// PostgreSQL, a sale with holds runs between the two: buyers hold a unit
// while they pay, and confirm, cancel or let the hold expire.
//
// Both managers report to Prometheus metrics (invgen/metrics); the demo
// prints a few lines of them at the end, and with -metrics :9464 serves
// them at http://localhost:9464/metrics while it runs, and afterwards
// until interrupted.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/redis/go-redis/v9"

	_ "github.com/ncruces/go-sqlite3/driver" // database/sql driver "sqlite3"
	_ "github.com/ncruces/go-sqlite3/embed"  // the SQLite library

	licoupon "github.com/invgen/invgen/examples/engines/sqlite/coupon"
	lidrop "github.com/invgen/invgen/examples/engines/sqlite/drop"
	liflashsale "github.com/invgen/invgen/examples/engines/sqlite/flashsale"
	ligiftcard "github.com/invgen/invgen/examples/engines/sqlite/giftcard"
	"github.com/invgen/invgen/examples/flashsale/inventory/coupon"
	"github.com/invgen/invgen/examples/flashsale/inventory/drop"
	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/examples/flashsale/inventory/giftcard"
	"github.com/invgen/invgen/metrics"
	invrt "github.com/invgen/invgen/runtime"
)

func main() {
	buyers := flag.Int("buyers", 20_000, "concurrent buyers of the hot SKU")
	stock := flag.Int64("stock", 1_000, "units of the hot SKU")
	addr := flag.String("metrics", "", "serve the Prometheus metrics at this address (e.g. :9464), and keep serving after the sale until interrupted")
	onSQLite := flag.Bool("sqlite", false, "keep the ledger in SQLite even when PostgreSQL answers")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	reg := prometheus.NewRegistry()
	obs, err := metrics.New(reg)
	if err == nil && *addr != "" {
		srv := &http.Server{Addr: *addr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go srv.ListenAndServe()
		defer srv.Close()
		fmt.Printf("metrics at http://%s/metrics\n", *addr)
	}
	if err == nil {
		err = run(ctx, obs, *buyers, *stock, *onSQLite)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "flashsale:", err)
		os.Exit(1)
	}
	printMetrics(reg)
	if *addr != "" {
		fmt.Println("serving the metrics until interrupted")
		stop, _ := signal.NotifyContext(context.Background(), os.Interrupt)
		<-stop.Done()
	}
}

// printMetrics prints the purchases by outcome and the ledger writes of
// the sale, as the metrics endpoint shows them.
func printMetrics(reg *prometheus.Registry) {
	mfs, _ := reg.Gather()
	fmt.Println("\nsome of the metrics (invgen/metrics), as a scrape shows them:")
	for _, mf := range mfs {
		switch mf.GetName() {
		case "invgen_operations_total", "invgen_ledger_write_seconds", "invgen_journal_entries", "invgen_flush_backlog_entries":
		default:
			continue
		}
		var b strings.Builder
		expfmt.MetricFamilyToText(&b, mf)
		for _, line := range strings.Split(b.String(), "\n") {
			if strings.Contains(line, `op="decr"`) || strings.Contains(line, "_count{") || strings.HasPrefix(line, "invgen_journal") || strings.HasPrefix(line, "invgen_flush") {
				fmt.Println("  " + line)
			}
		}
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

const (
	schema    = "invgen_demo"
	namespace = "invgen-demo"
	hot       = "sku-hot"
)

// manager is what the demo uses of a generated Manager of key type K: the
// packages of either engine offer it.
type manager[K any] interface {
	CreateTables(ctx context.Context) error
	Init(ctx context.Context, id K, qty int64) error
	Get(ctx context.Context, id K) (int64, error)
	Decr(ctx context.Context, id K, n int64, opKey string) (invrt.Result, error)
	Incr(ctx context.Context, id K, n int64, opKey string) (invrt.Result, error)
	Release(ctx context.Context, id K, opKey string) (invrt.Result, error)
	JournalLen(ctx context.Context) (int64, error)
	Close(ctx context.Context) error
}

// streamManager is the Manager of the stream prefix (drop).
type streamManager interface {
	manager[string]
	RunFlusher(ctx context.Context, cfg invrt.FlusherConfig) error
	FlushLag(ctx context.Context) (invrt.FlushLag, error)
}

// managers are the demo's four prefixes.
type managers struct {
	sale    manager[string]
	coupons manager[int64]
	cards   manager[uuid.UUID]
	drop    streamManager
}

// open builds the managers of the ledger's engine.
func open(l *ledger, rdb *redis.Client, obs *metrics.Observer) (ms managers, err error) {
	opts := []invrt.Option{invrt.WithNamespace(namespace)}
	watched := append(opts, invrt.WithObserver(obs))
	var errs [4]error
	if l.pool != nil {
		ms.sale, errs[0] = flashsale.New(l.pool, rdb, watched...)
		ms.coupons, errs[1] = coupon.New(l.pool, rdb, opts...)
		ms.cards, errs[2] = giftcard.New(l.pool, rdb, opts...)
		ms.drop, errs[3] = drop.New(l.pool, rdb, watched...)
	} else {
		ms.sale, errs[0] = liflashsale.New(l.db, rdb, watched...)
		ms.coupons, errs[1] = licoupon.New(l.db, rdb, opts...)
		ms.cards, errs[2] = ligiftcard.New(l.db, rdb, opts...)
		ms.drop, errs[3] = lidrop.New(l.db, rdb, watched...)
	}
	return ms, errors.Join(errs[:]...)
}

func run(ctx context.Context, obs *metrics.Observer, buyers int, stock int64, onSQLite bool) error {
	l, rdb, err := connect(ctx, onSQLite)
	if err != nil {
		return err
	}
	defer l.close()
	defer rdb.Close()

	// The generated packages, one per prefix of inventory.yaml.
	ms, err := open(l, rdb, obs)
	if err != nil {
		return err
	}
	sale, coupons, cards := ms.sale, ms.coupons, ms.cards
	defer sale.Close(context.WithoutCancel(ctx)) // before the pools close
	if err := obs.Watch(flashsale.Prefix, sale.JournalLen, nil); err != nil {
		return err
	}
	for _, create := range []func(context.Context) error{sale.CreateTables, coupons.CreateTables, cards.CreateTables} {
		if err := create(ctx); err != nil {
			return err
		}
	}
	if err := sale.Init(ctx, hot, stock); err != nil {
		return err
	}
	cardIDs := []uuid.UUID{uuid.NewSHA1(uuid.NameSpaceURL, []byte("card-1")), uuid.NewSHA1(uuid.NameSpaceURL, []byte("card-2"))}
	for i := range 3 {
		if err := sale.Init(ctx, "sku-"+strconv.Itoa(i), 50); err != nil {
			return err
		}
		if err := coupons.Init(ctx, int64(1000+i), 200); err != nil {
			return err
		}
	}
	for _, id := range cardIDs {
		if err := cards.Init(ctx, id, 25); err != nil {
			return err
		}
	}

	fmt.Printf("invgen flash sale: %d buyers, one unit each, on %q with %d units\n", buyers, hot, stock)
	var (
		sold, rejected, retried, released, busy atomic.Int64
		failures                                atomic.Int64
		firstErr                                atomic.Pointer[error] // atomic.Value panics on a second type
		wg                                      sync.WaitGroup
		start                                   = time.Now()
	)
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, &err)
	}
	for b := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(b), 2026))
			order := "order-" + strconv.Itoa(b)
			r, err := sale.Decr(ctx, hot, 1, order)
			switch {
			case err == nil:
				sold.Add(1)
			case errors.Is(err, flashsale.ErrInsufficientStock):
				rejected.Add(1)
			case errors.Is(err, flashsale.ErrBusy):
				busy.Add(1)
			default:
				fail(err)
				return
			}
			// One buyer in ten did not hear the answer and sends the
			// order again. A purchase answers the same and buys nothing
			// more; a refusal bound nothing, so its retry may buy a unit a
			// cancellation freed.
			if rng.IntN(10) == 0 {
				r2, err2 := sale.Decr(ctx, hot, 1, order)
				retried.Add(1)
				switch {
				case err == nil && (err2 != nil || !r2.Replayed || r2.Delta != r.Delta):
					fail(fmt.Errorf("retry of %s got %+v, %v after %+v", order, r2, err2, r))
				case err == nil:
				case err2 == nil && (r2.Replayed || r2.Delta != -1):
					fail(fmt.Errorf("retry of refused %s got %+v", order, r2))
				case err2 == nil:
					sold.Add(1)
					rejected.Add(-1)
					err = nil
				case !errors.Is(err2, flashsale.ErrInsufficientStock) && !errors.Is(err2, flashsale.ErrBusy):
					fail(fmt.Errorf("retry of refused %s: %v", order, err2))
				}
			}
			// One buyer in twenty cancels: the unit goes back on sale.
			if err == nil && rng.IntN(20) == 0 {
				if _, err := sale.Release(ctx, hot, order); err != nil {
					fail(err)
					return
				}
				released.Add(1)
			}
			// Side traffic on the other items and key types.
			if b%100 == 0 {
				side(ctx, rng, sale, coupons, cards, cardIDs, order, fail)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	remaining, err := sale.Get(ctx, hot)
	if err != nil {
		return err
	}
	fmt.Printf("  sold       %6d\n  rejected   %6d  (sold out)\n  retried    %6d  (same order id: a purchase answers the same, nothing bought twice)\n"+
		"  released   %6d  (cancelled; units went back on sale)\n  busy       %6d\n  remaining  %6d\n  time       %v (%.0f purchases/s)\n",
		sold.Load(), rejected.Load(), retried.Load(), released.Load(), busy.Load(), remaining, elapsed.Round(time.Millisecond),
		float64(buyers)/elapsed.Seconds())
	if n := failures.Load(); n > 0 {
		return fmt.Errorf("%d buyers failed; first: %w", n, *firstErr.Load())
	}

	// The checks: no oversell, and Redis == ledger for every item.
	var problems []string
	if net := sold.Load() - released.Load(); net != stock-remaining || remaining < 0 {
		problems = append(problems, fmt.Sprintf("%d sold - %d released != %d stock - %d remaining", sold.Load(), released.Load(), stock, remaining))
	}
	type check struct {
		name       string
		get        func() (int64, error)
		table, mod string
		id         any
	}
	var checks []check
	for _, id := range []string{hot, "sku-0", "sku-1", "sku-2"} {
		checks = append(checks, check{"flash_sale/" + id, func() (int64, error) { return sale.Get(ctx, id) }, flashsale.UsageTable, flashsale.ModificationTable, id})
	}
	for i := range 3 {
		id := int64(1000 + i)
		checks = append(checks, check{"coupon/" + strconv.FormatInt(id, 10), func() (int64, error) { return coupons.Get(ctx, id) }, coupon.UsageTable, coupon.ModificationTable, id})
	}
	for _, id := range cardIDs {
		checks = append(checks, check{"gift_card/" + id.String()[:8], func() (int64, error) { return cards.Get(ctx, id) }, giftcard.UsageTable, giftcard.ModificationTable, id})
	}
	for _, c := range checks {
		inRedis, err := c.get()
		if err != nil {
			return err
		}
		inSQL, err := l.stock(ctx, c.mod, c.table, c.id)
		if err != nil {
			return err
		}
		mark := "ok"
		if inRedis != inSQL {
			mark = "MISMATCH"
			problems = append(problems, fmt.Sprintf("%s: Redis %d, ledger %d", c.name, inRedis, inSQL))
		}
		fmt.Printf("  %-22s Redis %5d  ledger %5d  %s\n", c.name, inRedis, inSQL, mark)
	}
	if len(problems) > 0 {
		return fmt.Errorf("the ledger and Redis disagree: %v", problems)
	}
	fmt.Println("Redis and the SQL ledger agree on every item; nothing oversold.")
	if h, ok := sale.(holdManager); ok {
		if err := holdSale(ctx, l, h, min(buyers, 2000)); err != nil {
			return err
		}
	}
	return streamSale(ctx, l, ms.drop, rdb, obs, buyers, stock)
}

// holdManager is the Manager of a sync prefix: it has holds, on every engine.
type holdManager interface {
	manager[string]
	Hold(ctx context.Context, id string, n int64, holdKey string, ttl time.Duration) (invrt.Result, error)
	Confirm(ctx context.Context, id, holdKey string) error
	Cancel(ctx context.Context, id, holdKey string) (invrt.Result, error)
	Held(ctx context.Context, id string) (int64, error)
	RunJanitor(ctx context.Context, cfg invrt.JanitorConfig[string]) error
}

// holdSale: buyers hold a unit while they pay. Half pay and confirm, some
// cancel, the rest walk away and let their hold expire, and a few pay too
// late; the janitor gives expired holds back. Sampled meanwhile, the units
// available and on hold never exceed the stock; at the end every hold is
// resolved and Redis agrees with the ledger.
func holdSale(ctx context.Context, l *ledger, inv holdManager, buyers int) error {
	const item, stock, ttl = "sku-held", 300, 1500 * time.Millisecond
	if err := inv.Init(ctx, item, stock); err != nil {
		return err
	}
	jctx, stopJanitor := context.WithCancel(ctx)
	janitor := make(chan error, 1)
	go func() {
		janitor <- inv.RunJanitor(jctx, invrt.JanitorConfig[string]{ExpireHoldsEvery: 200 * time.Millisecond})
	}()
	defer func() { stopJanitor(); <-janitor }()

	fmt.Printf("\nholds while buyers pay (prefix flash_sale): %d buyers, one unit each, on %q with %d units, held for %v\n", buyers, item, stock, ttl)
	var (
		held, short, confirmed, cancelled, walked, late, again atomic.Int64
		firstErr                                               atomic.Pointer[error]
		wg                                                     sync.WaitGroup
	)
	fail := func(err error) { firstErr.CompareAndSwap(nil, &err) }
	sampled := make(chan error, 1)
	sampling, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	go func() { sampled <- sampleHolds(sampling, l, inv, item, stock) }()
	for b := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(b), 7))
			key := "cart-" + strconv.Itoa(b)
			if _, err := inv.Hold(ctx, item, 1, key, ttl); err != nil {
				if !errors.Is(err, flashsale.ErrInsufficientStock) {
					fail(err)
					return
				}
				short.Add(1)
				// One refused buyer in five comes back once the first holds
				// have expired, and buys a unit given back, if one is left.
				if rng.IntN(5) == 0 {
					time.Sleep(ttl + 500*time.Millisecond)
					key += "-again"
					if _, err := inv.Hold(ctx, item, 1, key, ttl); err == nil {
						if err := inv.Confirm(ctx, item, key); err != nil {
							fail(fmt.Errorf("confirm %s: %w", key, err))
							return
						}
						again.Add(1)
						confirmed.Add(1)
					} else if !errors.Is(err, flashsale.ErrInsufficientStock) {
						fail(err)
					}
				}
				return
			}
			held.Add(1)
			switch p := rng.IntN(20); {
			case p < 8: // pays within the hold
				time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
				if err := inv.Confirm(ctx, item, key); err != nil {
					fail(fmt.Errorf("confirm %s: %w", key, err))
					return
				}
				confirmed.Add(1)
			case p < 10: // changes their mind
				if _, err := inv.Cancel(ctx, item, key); err != nil {
					fail(fmt.Errorf("cancel %s: %w", key, err))
					return
				}
				cancelled.Add(1)
			case p < 19: // walks away
				walked.Add(1)
			default: // pays too late: refused, the unit was given back
				time.Sleep(ttl + 300*time.Millisecond)
				if err := inv.Confirm(ctx, item, key); !errors.Is(err, flashsale.ErrHoldExpired) {
					fail(fmt.Errorf("late confirm of %s: %v, want ErrHoldExpired", key, err))
					return
				}
				late.Add(1)
			}
		}()
	}
	wg.Wait()
	// Every hold is resolved once its deadline and a janitor round pass.
	start := time.Now()
	var onHold int64
	for {
		n, err := inv.Held(ctx, item)
		if err != nil {
			return err
		}
		if onHold = n; n == 0 || time.Since(start) > 10*time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopSampling()
	if err := <-sampled; err != nil {
		return err
	}
	if err := firstErr.Load(); err != nil {
		return *err
	}
	remaining, err := inv.Get(ctx, item)
	if err != nil {
		return err
	}
	inSQL, err := l.stock(ctx, flashsale.ModificationTable, flashsale.UsageTable, item)
	if err != nil {
		return err
	}
	fmt.Printf("  held       %6d  (%d refused: all units on hold or sold)\n  confirmed  %6d\n  cancelled  %6d\n  expired    %6d  (walked away: given back by the janitor)\n  too late   %6d  (Confirm after the hold expired: refused)\n  again      %6d  (refused buyers who came back and bought a unit given back)\n  on hold    %6d  at the end\n",
		held.Load(), short.Load(), confirmed.Load(), cancelled.Load(), walked.Load()+late.Load(), late.Load(), again.Load(), onHold)
	fmt.Printf("  flash_sale/%-11s Redis %5d  ledger %5d\n", item, remaining, inSQL)
	if onHold != 0 || remaining != inSQL || remaining != stock-confirmed.Load() {
		return fmt.Errorf("holds: %d still on hold, Redis %d, ledger %d, %d of %d confirmed", onHold, remaining, inSQL, confirmed.Load(), stock)
	}
	fmt.Println("every hold resolved once; Redis and the ledger agree; nothing oversold.")
	return nil
}

// sampleHolds checks, until ctx ends, the ledger in single snapshots: the
// units available, on hold and sold add up to the stock at every sampled
// instant, none below zero, and Redis never offers more than the ledger
// had available just before it was read.
func sampleHolds(ctx context.Context, l *ledger, inv holdManager, item string, stock int64) error {
	q := `SELECT
		(SELECT COALESCE(SUM(delta), 0) FROM ` + flashsale.ModificationTable + ` WHERE item_id = $1 AND state = 'committed') +
		(SELECT COALESCE(SUM(delta), 0) FROM ` + flashsale.UsageTable + ` WHERE item_id = $1 AND state = 'committed'),
		(SELECT COALESCE(SUM(units), 0) FROM flash_sale_inventory_hold WHERE item_id = $1 AND state = 'open'),
		(SELECT COALESCE(SUM(units), 0) FROM flash_sale_inventory_hold WHERE item_id = $1 AND state = 'confirmed')`
	for ctx.Err() == nil {
		var avail, onHold, sold int64
		if err := l.queryRow(ctx, q, item).Scan(&avail, &onHold, &sold); err != nil {
			break
		}
		if avail < 0 || onHold < 0 || avail+onHold+sold != stock {
			return fmt.Errorf("holds: the ledger has %d available, %d on hold and %d sold: not the stock of %d", avail, onHold, sold, stock)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// streamSale runs the same crowd against the drop prefix, on the stream
// ledger: purchases answer at Redis speed and a flusher writes the ledger
// beside them. Once it has drained, Redis and the ledger must agree.
func streamSale(ctx context.Context, l *ledger, inv streamManager, rdb *redis.Client, obs *metrics.Observer, buyers int, stock int64) error {
	defer inv.Close(context.WithoutCancel(ctx))
	if err := obs.Watch(drop.Prefix, inv.JournalLen, inv.FlushLag); err != nil {
		return err
	}
	if err := inv.CreateTables(ctx); err != nil {
		return err
	}
	if err := inv.Init(ctx, hot, stock); err != nil {
		return err
	}
	// The flusher gets a Redis pool of its own, so the crowd waiting for
	// connections does not hold it up.
	flusherRedis := redis.NewClient(rdb.Options())
	defer flusherRedis.Close()
	fctx, stopFlusher := context.WithCancel(ctx)
	defer stopFlusher()
	flushed := make(chan error, 1)
	go func() { flushed <- inv.RunFlusher(fctx, invrt.FlusherConfig{Redis: flusherRedis}) }()

	fmt.Printf("\nthe same crowd on the stream ledger (prefix drop): %d buyers on %q with %d units\n", buyers, hot, stock)
	var (
		sold, rejected atomic.Int64
		firstErr       atomic.Pointer[error]
		wg             sync.WaitGroup
		start          = time.Now()
	)
	for b := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := inv.Decr(ctx, hot, 1, "order-"+strconv.Itoa(b))
			switch {
			case err == nil:
				sold.Add(1)
			case errors.Is(err, drop.ErrInsufficientStock):
				rejected.Add(1)
			default:
				firstErr.CompareAndSwap(nil, &err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	lag, err := inv.FlushLag(ctx)
	if err != nil {
		return err
	}
	stopFlusher()
	if err := <-flushed; !errors.Is(err, context.Canceled) {
		return fmt.Errorf("flusher: %w", err)
	}
	if err := firstErr.Load(); err != nil {
		return *err
	}
	remaining, err := inv.Get(ctx, hot)
	if err != nil {
		return err
	}
	inSQL, err := l.stock(ctx, drop.ModificationTable, drop.UsageTable, hot)
	if err != nil {
		return err
	}
	fmt.Printf("  sold       %6d\n  rejected   %6d\n  remaining  %6d\n  time       %v (%.0f purchases/s)\n  flush lag when the crowd left: %d entries, oldest %v; drained on shutdown\n",
		sold.Load(), rejected.Load(), remaining, elapsed.Round(time.Millisecond), float64(buyers)/elapsed.Seconds(),
		lag.Entries, lag.Oldest.Round(time.Millisecond))
	fmt.Printf("  drop/%-17s Redis %5d  ledger %5d\n", hot, remaining, inSQL)
	if remaining != inSQL || sold.Load() != stock-remaining {
		return fmt.Errorf("stream sale: Redis %d, ledger %d, sold %d of %d", remaining, inSQL, sold.Load(), stock)
	}
	fmt.Println("Redis and the SQL ledger agree once the flusher has drained; nothing oversold.")
	return nil
}

// side trades on the cold items of every key type.
func side(ctx context.Context, rng *rand.Rand, sale manager[string], coupons manager[int64], cards manager[uuid.UUID], cardIDs []uuid.UUID, order string, fail func(error)) {
	ok := func(err error) {
		if err != nil && !errors.Is(err, flashsale.ErrInsufficientStock) && !errors.Is(err, flashsale.ErrOverLimit) {
			fail(err)
		}
	}
	_, err := sale.Decr(ctx, "sku-"+strconv.Itoa(rng.IntN(3)), 1+rng.Int64N(3), order)
	ok(err)
	cid := int64(1000 + rng.IntN(3))
	_, err = coupons.Decr(ctx, cid, 2, order)
	ok(err)
	if err == nil && rng.IntN(2) == 0 {
		_, err = coupons.Incr(ctx, cid, 1, order+"-return")
		ok(err)
	}
	_, err = cards.Decr(ctx, cardIDs[rng.IntN(2)], 1, order)
	ok(err)
}

// ledger is the demo's ledger database: a PostgreSQL pool in a fresh demo
// schema, or a SQLite file of its own.
type ledger struct {
	pool *pgxpool.Pool
	db   *sql.DB
	file string
}

func (l *ledger) close() {
	if l.pool != nil {
		l.pool.Close()
		return
	}
	l.db.Close()
	os.RemoveAll(filepath.Dir(l.file))
}

// stock is what the ledger says of item id, by plain SQL: the sum of its
// committed modifications and usage.
func (l *ledger) stock(ctx context.Context, mod, usage string, id any) (n int64, err error) {
	q := `SELECT
		(SELECT COALESCE(SUM(delta), 0) FROM ` + mod + ` WHERE item_id = $1 AND state = 'committed') +
		(SELECT COALESCE(SUM(delta), 0) FROM ` + usage + ` WHERE item_id = $1 AND state = 'committed')`
	err = l.queryRow(ctx, q, id).Scan(&n)
	return n, err
}

// queryRow runs q, whose one parameter is $1, on the ledger.
func (l *ledger) queryRow(ctx context.Context, q string, arg any) interface{ Scan(...any) error } {
	if l.pool != nil {
		return l.pool.QueryRow(ctx, q, arg)
	}
	return l.db.QueryRowContext(ctx, strings.ReplaceAll(q, "$1", "?1"), arg)
}

// connect opens the ledger (PostgreSQL, or SQLite when onSQLite is set or
// no PostgreSQL answers) and a Redis client, and clears what an earlier
// run of the demo left.
func connect(ctx context.Context, onSQLite bool) (*ledger, *redis.Client, error) {
	dbURL := env("INVGEN_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable")
	redisURL := env("INVGEN_REDIS_URL", "redis://127.0.0.1:6379/0")

	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, nil, err
	}
	opt.PoolSize = 256
	rdb := redis.NewClient(opt)
	if err := clearNamespace(ctx, rdb); err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("cannot reach Redis at %s: %w (run `make services`)", redisURL, err)
	}
	var l *ledger
	if !onSQLite {
		l, err = connectPostgres(ctx, dbURL)
		if err != nil {
			fmt.Printf("PostgreSQL at %s does not answer (%v): the ledger is SQLite\n", dbURL, err)
		}
	}
	if l == nil {
		l, err = connectSQLite()
		if err != nil {
			rdb.Close()
			return nil, nil, err
		}
		fmt.Println("ledger: SQLite, in its own file (removed at the end)")
	}
	return l, rdb, nil
}

// connectPostgres opens a pool in a fresh demo schema.
func connectPostgres(ctx context.Context, dbURL string) (*ledger, error) {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	admin, err := pgxpool.New(pctx, dbURL)
	if err != nil {
		return nil, err
	}
	_, err = admin.Exec(pctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE; CREATE SCHEMA "+schema)
	admin.Close()
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 32
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &ledger{pool: pool}, nil
}

// connectSQLite opens a SQLite file in a directory of its own, as
// docs/engines.md advises: WAL, so that reads do not wait for the writer, a busy
// timeout, and one connection, so that writers queue in the pool instead
// of spinning on the file lock.
func connectSQLite() (*ledger, error) {
	dir, err := os.MkdirTemp("", "invgen-demo-")
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "ledger.db")
	db, err := sql.Open("sqlite3", "file:"+file+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)")
	if err == nil {
		db.SetMaxOpenConns(1)
		err = db.Ping()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("SQLite: %w", err)
	}
	return &ledger{db: db, file: file}, nil
}

// clearNamespace deletes the demo's own keys, and nothing else.
func clearNamespace(ctx context.Context, rdb *redis.Client) error {
	iter := rdb.Scan(ctx, 0, namespace+":*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := rdb.Unlink(ctx, iter.Val()).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}
