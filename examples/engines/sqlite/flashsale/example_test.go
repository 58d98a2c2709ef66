package flashsale_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver" // database/sql driver "sqlite3"
	_ "github.com/ncruces/go-sqlite3/embed"  // the SQLite library
	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/examples/engines/sqlite/flashsale"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// The examples run against Redis at INVGEN_REDIS_URL (default
// redis://127.0.0.1:6379/0), each under a namespace of its own, and a
// SQLite ledger in a temporary file: no database server. ExampleNew shows
// how a ledger and Redis are opened; the others use open.

// ExampleNew opens a manager: a ledger, Redis, the tables, one item.
func ExampleNew() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "invgen-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// WAL, so that readers do not wait for the writer; a busy timeout, so
	// that writers wait for each other.
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "ledger.db")+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	opt, err := redis.ParseURL(redisURL())
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()

	ns := namespace()
	defer clearNamespace(rdb, ns)
	inv, err := flashsale.New(db, rdb, flashsale.WithNamespace(ns))
	if err != nil {
		log.Fatal(err)
	}
	defer inv.Close(ctx)
	if err := inv.CreateTables(ctx); err != nil { // idempotent
		log.Fatal(err)
	}
	if err := inv.Init(ctx, "sku-42", 100); err != nil {
		log.Fatal(err)
	}
	n, err := inv.Get(ctx, "sku-42")
	fmt.Println(n, err)
	// Output: 100 <nil>
}

// ExampleManager_Init puts an item on sale once: a second Init of it is
// refused, whatever its quantity.
func ExampleManager_Init() {
	ctx := context.Background()
	inv, done := open()
	defer done()

	fmt.Println(inv.Init(ctx, "sku-42", 3))
	err := inv.Init(ctx, "sku-42", 5)
	fmt.Println(errors.Is(err, invrt.ErrAlreadyExists))
	// Output:
	// <nil>
	// true
}

// ExampleManager_Decr buys units under the buyer's order id: Redis decides
// at once, the ledger records the purchase, and a purchase of more than
// is left is refused without taking anything.
func ExampleManager_Decr() {
	ctx := context.Background()
	inv, done := open()
	defer done()
	if err := inv.Init(ctx, "sku-42", 3); err != nil {
		log.Fatal(err)
	}

	r, err := inv.Decr(ctx, "sku-42", 2, "order-1001")
	fmt.Printf("took %d, %d left, %v\n", -r.Delta, r.Available, err)
	_, err = inv.Decr(ctx, "sku-42", 2, "order-1002")
	fmt.Println(errors.Is(err, invrt.ErrInsufficientStock))
	// Output:
	// took 2, 1 left, <nil>
	// true
}

// ExampleManager_Decr_retry retries a purchase whose answer the client did
// not see: the op key makes it a replay of the first execution, which
// takes nothing more. A retry after ErrInDoubt or ErrBusy is the same
// call with the same op key.
func ExampleManager_Decr_retry() {
	ctx := context.Background()
	inv, done := open()
	defer done()
	if err := inv.Init(ctx, "sku-42", 3); err != nil {
		log.Fatal(err)
	}

	var r flashsale.Result
	var err error
	for try := 0; try < 3; try++ {
		r, err = inv.Decr(ctx, "sku-42", 2, "order-1001")
		if err == nil || !(errors.Is(err, invrt.ErrInDoubt) || errors.Is(err, invrt.ErrBusy)) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("took %d, %d left, replayed=%v\n", -r.Delta, r.Available, r.Replayed)

	// The client timed out and sends the order again.
	r, err = inv.Decr(ctx, "sku-42", 2, "order-1001")
	fmt.Printf("took %d, %d left, replayed=%v, %v\n", -r.Delta, r.Available, r.Replayed, err)
	// Output:
	// took 2, 1 left, replayed=false
	// took 2, 1 left, replayed=true, <nil>
}

// ExampleManager_Release gives back the units of a purchase (a cancelled
// or unpaid order), once: a second Release of it is a replay.
func ExampleManager_Release() {
	ctx := context.Background()
	inv, done := open()
	defer done()
	if err := inv.Init(ctx, "sku-42", 3); err != nil {
		log.Fatal(err)
	}
	if _, err := inv.Decr(ctx, "sku-42", 2, "order-1001"); err != nil {
		log.Fatal(err)
	}

	r, err := inv.Release(ctx, "sku-42", "order-1001")
	fmt.Printf("gave back %d, %d left, %v\n", r.Delta, r.Available, err)
	r, err = inv.Release(ctx, "sku-42", "order-1001")
	fmt.Printf("gave back %d, %d left, replayed=%v, %v\n", r.Delta, r.Available, r.Replayed, err)
	_, err = inv.Release(ctx, "sku-42", "order-9999")
	fmt.Println(errors.Is(err, invrt.ErrNotFound))
	// Output:
	// gave back 2, 3 left, <nil>
	// gave back 2, 3 left, replayed=true, <nil>
	// true
}

// ExampleManager_Refresh rebuilds an item's Redis state from the ledger:
// here after its key was lost (an operator's DEL, a partial restore).
func ExampleManager_Refresh() {
	ctx := context.Background()
	inv, done, rdb, ns := openWithRedis()
	defer done()
	if err := inv.Init(ctx, "sku-42", 5); err != nil {
		log.Fatal(err)
	}
	if _, err := inv.Decr(ctx, "sku-42", 2, "order-1001"); err != nil {
		log.Fatal(err)
	}
	clearNamespace(rdb, ns) // Redis forgets everything of the prefix

	fmt.Println(inv.Refresh(ctx, "sku-42"))
	n, err := inv.Get(ctx, "sku-42")
	fmt.Println(n, err)
	// Output:
	// <nil>
	// 3 <nil>
}

// ExampleManager_Audit compares Redis with the ledger, item by item, and
// lists the items that drift; RefreshAll (or the janitor with Repair)
// rebuilds them.
func ExampleManager_Audit() {
	ctx := context.Background()
	inv, done, rdb, ns := openWithRedis()
	defer done()
	for _, id := range []string{"sku-1", "sku-2"} {
		if err := inv.Init(ctx, id, 5); err != nil {
			log.Fatal(err)
		}
	}
	// Someone writes Redis behind invgen's back.
	if err := rdb.HSet(ctx, itemKey(ctx, rdb, ns, "sku-2"), "a", 2).Err(); err != nil {
		log.Fatal(err)
	}

	rep, err := inv.Audit(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("items:", rep.Items)
	for _, d := range rep.Drift {
		fmt.Printf("drift: %s: Redis %d, ledger %d\n", d.Item, d.Redis, d.Ledger)
	}
	if _, err := inv.RefreshAll(ctx); err != nil {
		log.Fatal(err)
	}
	rep, _ = inv.Audit(ctx)
	fmt.Println("drift after RefreshAll:", len(rep.Drift))
	// Output:
	// items: 2
	// drift: sku-2: Redis 2, ledger 5
	// drift after RefreshAll: 0
}

// open returns a manager of the example's own and a function that closes
// it and removes its ledger and Redis keys.
func open(opts ...flashsale.Option) (*flashsale.Manager, func()) {
	inv, done, _, _ := openWithRedis(opts...)
	return inv, done
}

// openWithRedis is open, with the Redis client and namespace.
func openWithRedis(opts ...flashsale.Option) (*flashsale.Manager, func(), *redis.Client, string) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "invgen-example-")
	if err != nil {
		log.Fatal(err)
	}
	db, err := testenv.OpenSQLite(filepath.Join(dir, "ledger.db"))
	if err != nil {
		log.Fatal(err)
	}
	opt, err := redis.ParseURL(redisURL())
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	ns := namespace()
	inv, err := flashsale.New(db, rdb, append([]flashsale.Option{flashsale.WithNamespace(ns)}, opts...)...)
	if err != nil {
		log.Fatal(err)
	}
	if err := inv.CreateTables(ctx); err != nil {
		log.Fatal(err)
	}
	return inv, func() {
		inv.Close(ctx)
		clearNamespace(rdb, ns)
		rdb.Close()
		db.Close()
		os.RemoveAll(dir)
	}, rdb, ns
}

func redisURL() string { return testenv.RedisURL() }

// namespace is a Redis namespace of the example's own.
func namespace() string { return "invgen-example-" + rand.Text()[:10] }

// clearNamespace deletes the keys of namespace ns, and nothing else.
func clearNamespace(rdb *redis.Client, ns string) {
	testenv.DeleteKeys(context.Background(), rdb, ns)
}

// itemKey finds the Redis key of item id's hash (field a: its available
// units) under namespace ns.
func itemKey(ctx context.Context, rdb *redis.Client, ns, id string) string {
	keys, err := rdb.Keys(ctx, ns+":*item:"+id).Result()
	if err != nil || len(keys) != 1 {
		log.Fatalf("the key of item %s: %v %v", id, keys, err)
	}
	return keys[0]
}
