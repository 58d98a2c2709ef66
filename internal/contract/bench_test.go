package contract

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// The benchmarks run b.RunParallel with 64 goroutines per core slot
// (SetParallelism) on one hot SKU, so they measure what a flash sale does.
// Compare them in one run with benchstat:
//
//	go test -run '^$' -bench . -benchmem -count 6 ./internal/contract > bench.out
//	go tool benchstat bench.out

const benchParallelism = 32 // ×GOMAXPROCS goroutines: 64 on 2 cores

// BenchmarkDecr is a successful sync-mode purchase through a generated
// manager: one Lua call, one INSERT, one Lua call.
func BenchmarkDecr(b *testing.B) { benchDecr(b, stringFixture(b)) }

// benchDecr buys one unit at a time from a hot SKU with plenty of stock.
func benchDecr(b *testing.B, f *fixture[string]) {
	ctx := context.Background()
	testenv.Must(b, f.m.Init(ctx, "hot", invrt.MaxQuantity), "Init")
	var seq atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.m.Decr(ctx, "hot", 1, "o"+strconv.FormatInt(seq.Add(1), 10)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkDecrSoldOut is the sold-out path: a rejected purchase touches
// Redis only.
func BenchmarkDecrSoldOut(b *testing.B) {
	f := stringFixture(b)
	ctx := context.Background()
	testenv.Must(b, f.m.Init(ctx, "hot", 0), "Init")
	var seq atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f.m.Decr(ctx, "hot", 1, "o"+strconv.FormatInt(seq.Add(1), 10))
		}
	})
}

// bareDecr is the baseline: the simplest correct check-and-decrement, with
// no idempotency, journal or ledger.
var bareDecr = redis.NewScript(`
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = tonumber(ARGV[1])
if v < n then return -1 end
return redis.call('DECRBY', KEYS[1], n)`)

// BenchmarkBaselineBareLua is the bare check-and-DECRBY script through
// go-redis: what Redis allows for one hot key.
func BenchmarkBaselineBareLua(b *testing.B) {
	rdb := testenv.Redis(b)
	ns := testenv.Namespace(b, rdb)
	ctx := context.Background()
	key := ns + ":{bench}:hot"
	rdb.Set(ctx, key, invrt.MaxQuantity, 0)
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := bareDecr.Run(ctx, rdb, []string{key}, 1).Err(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBaselineLuaPlusInsert is the sync limit: the bare script plus
// one hand-written INSERT per purchase.
func BenchmarkBaselineLuaPlusInsert(b *testing.B) {
	rdb := testenv.Redis(b)
	ns := testenv.Namespace(b, rdb)
	pool := testenv.Pool(b)
	ctx := context.Background()
	_, err := pool.Exec(ctx, "CREATE TABLE usage (id bigserial PRIMARY KEY, item_id text NOT NULL, delta bigint NOT NULL, op_key text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), UNIQUE (item_id, op_key))")
	testenv.Must(b, err, "create")
	key := ns + ":{bench}:hot"
	rdb.Set(ctx, key, invrt.MaxQuantity, 0)
	var seq atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := bareDecr.Run(ctx, rdb, []string{key}, 1).Err(); err != nil {
				b.Error(err)
				return
			}
			if _, err := pool.Exec(ctx, "INSERT INTO usage (item_id, delta, op_key) VALUES ($1, $2, $3)", "hot", -1, "o"+strconv.FormatInt(seq.Add(1), 10)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkStreamDecr is a stream-mode purchase through a generated
// manager, with no flusher running: one Lua call.
func BenchmarkStreamDecr(b *testing.B) { benchDecr(b, streamFixture(b)) }
