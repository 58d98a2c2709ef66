package drop_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/examples/engines/sqlite/drop"
	"github.com/invgen/invgen/internal/testenv"
)

// ExampleManager_RunFlusher runs the flusher of a stream prefix: a purchase
// is decided and recorded in Redis in one step, and the flusher writes its
// ledger row in a batch moments later. Run one or more per prefix for as
// long as the sale runs; on cancel it drains what is left. The example runs
// against Redis at INVGEN_REDIS_URL (default redis://127.0.0.1:6379/0) and
// a SQLite ledger in a temporary file.
func ExampleManager_RunFlusher() {
	ctx := context.Background()
	inv, done := open()
	defer done()
	if err := inv.Init(ctx, "sku-42", 10); err != nil {
		log.Fatal(err)
	}

	fctx, stop := context.WithCancel(ctx)
	flushed := make(chan error, 1)
	go func() {
		flushed <- inv.RunFlusher(fctx, drop.FlusherConfig{})
	}()

	for i := range 3 {
		if _, err := inv.Decr(ctx, "sku-42", 1, fmt.Sprintf("order-%d", i)); err != nil {
			log.Fatal(err)
		}
	}
	// Wait until the ledger has every row (FlushLag is what a Redis loss
	// would lose right now).
	for {
		lag, err := inv.FlushLag(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if lag.Entries == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop() // it drains the streams, then returns ctx's error
	fmt.Println("flusher stopped:", errors.Is(<-flushed, context.Canceled))

	rep, err := inv.Audit(ctx)
	fmt.Println("items:", rep.Items, "drift:", len(rep.Drift), err)
	n, err := inv.Get(ctx, "sku-42")
	fmt.Println("available:", n, err)
	// Output:
	// flusher stopped: true
	// items: 1 drift: 0 <nil>
	// available: 7 <nil>
}

// open returns a manager of the example's own and a function that closes
// it and removes its ledger and Redis keys.
func open() (*drop.Manager, func()) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "invgen-example-")
	if err != nil {
		log.Fatal(err)
	}
	db, err := testenv.OpenSQLite(filepath.Join(dir, "ledger.db"))
	if err != nil {
		log.Fatal(err)
	}
	opt, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	ns := "invgen-example-" + rand.Text()[:10]
	inv, err := drop.New(db, rdb, drop.WithNamespace(ns))
	if err != nil {
		log.Fatal(err)
	}
	if err := inv.CreateTables(ctx); err != nil {
		log.Fatal(err)
	}
	return inv, func() {
		inv.Close(ctx)
		testenv.DeleteKeys(ctx, rdb, ns)
		rdb.Close()
		db.Close()
		os.RemoveAll(dir)
	}
}
