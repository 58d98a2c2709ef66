package main

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	liflashsale "github.com/invgen/invgen/examples/engines/sqlite/flashsale"
	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
)

// Example is the README's quick start: a generated manager, one item, a
// purchase, its retry, a sold-out answer and a cancellation.
func Example() {
	ctx := context.Background()
	l, rdb, err := connect(ctx, false) // a fresh schema and namespace, as the demo uses
	if err != nil {
		log.Fatal(err)
	}
	defer l.close()
	defer rdb.Close()
	if l.pool == nil {
		log.Fatal("this example needs PostgreSQL")
	}
	quickstart(ctx, l.pool, rdb)
	// Output:
	// bought 2, 1 left
	// retry: replayed=true, 1 left
	// sold out: true
	// released 2, 3 left
}

// Example_sqlite is the quick start on the sqlite engine: the same calls,
// over a *sql.DB of ncruces/go-sqlite3.
func Example_sqlite() {
	ctx := context.Background()
	l, rdb, err := connect(ctx, true)
	if err != nil {
		log.Fatal(err)
	}
	defer l.close()
	defer rdb.Close()
	inv, err := liflashsale.New(l.db, rdb, liflashsale.WithNamespace("invgen-demo"))
	if err != nil {
		log.Fatal(err)
	}
	if err := inv.CreateTables(ctx); err != nil {
		log.Fatal(err)
	}
	if err := inv.Init(ctx, "sku-42", 3); err != nil {
		log.Fatal(err)
	}
	r, err := inv.Decr(ctx, "sku-42", 2, "order-1001")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("bought %d, %d left\n", -r.Delta, r.Available)
	r, _ = inv.Decr(ctx, "sku-42", 2, "order-1001")
	fmt.Printf("retry: replayed=%v, %d left\n", r.Replayed, r.Available)
	// Output:
	// ledger: SQLite, in its own file (removed at the end)
	// bought 2, 1 left
	// retry: replayed=true, 1 left
}

func quickstart(ctx context.Context, pool *pgxpool.Pool, rdb *redis.Client) {
	inv, err := flashsale.New(pool, rdb, flashsale.WithNamespace("invgen-demo"))
	if err != nil {
		log.Fatal(err)
	}
	if err := inv.CreateTables(ctx); err != nil { // idempotent
		log.Fatal(err)
	}
	if err := inv.Init(ctx, "sku-42", 3); err != nil {
		log.Fatal(err)
	}

	r, err := inv.Decr(ctx, "sku-42", 2, "order-1001") // committed in SQL when it returns
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("bought %d, %d left\n", -r.Delta, r.Available)

	r, _ = inv.Decr(ctx, "sku-42", 2, "order-1001") // a client retry: same answer, nothing more taken
	fmt.Printf("retry: replayed=%v, %d left\n", r.Replayed, r.Available)

	_, err = inv.Decr(ctx, "sku-42", 2, "order-1002")
	fmt.Println("sold out:", errors.Is(err, flashsale.ErrInsufficientStock))

	r, err = inv.Release(ctx, "sku-42", "order-1001") // the buyer cancels
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("released %d, %d left\n", r.Delta, r.Available)
}
