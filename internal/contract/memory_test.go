package contract

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// usedMemory is INFO's used_memory of a Redis of the test's own.
func usedMemory(t *testing.T, f *fixture[string]) int64 {
	t.Helper()
	info, err := f.rdb.Info(context.Background(), "memory").Result()
	testenv.Must(t, err, "info")
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			testenv.Must(t, err, "used_memory")
			return n
		}
	}
	t.Fatal("no used_memory in INFO")
	return 0
}

// What Redis keeps per purchase: a committed sync purchase keeps only its
// op record for the idempotency window, and a refused one keeps nothing
// (a bot with fresh op keys costs no memory). docs/design.md quotes these
// figures; with one key per op record this test measured 254 bytes per
// committed purchase and 205 per refusal.
func TestRedisBytesPerPurchase(t *testing.T) {
	port := freePort(t)
	startRedis(t, port)
	rdb := redisThrough(t, "127.0.0.1:"+strconv.Itoa(port))
	f := stringFixtureOn(t, rdb)
	ctx := ctxT(t)
	const n = 3000
	testenv.Must(t, f.m.Init(ctx, "sku-42", n), "Init")
	buy := func(from, to int, want error) {
		t.Helper()
		for i := from; i < to; i++ {
			_, err := f.m.Decr(ctx, "sku-42", 1, fmt.Sprintf("order-%08d", i))
			if !errors.Is(err, want) {
				t.Fatalf("Decr #%d: %v, want %v", i, err, want)
			}
		}
		f.quiesce(t)
	}
	buy(0, 100, nil) // warm up: connections, scripts
	before := usedMemory(t, f)
	buy(100, n, nil)
	perPurchase := float64(usedMemory(t, f)-before) / (n - 100)
	before = usedMemory(t, f)
	buy(n, n+5000, invrt.ErrInsufficientStock)
	perRefusal := float64(usedMemory(t, f)-before) / 5000
	t.Logf("Redis bytes: %.0f per committed purchase, %.0f per refusal (op key \"order-%%08d\", item \"sku-42\")", perPurchase, perRefusal)
	if perPurchase > 127 {
		t.Errorf("%.0f bytes per committed purchase; at most half of the 254 that one key per record took", perPurchase)
	}
	if perRefusal > 1 {
		t.Errorf("%.0f bytes per refusal; a refusal must write nothing", perRefusal)
	}
}
