package contract

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/uuid"

	invrt "github.com/invgen/invgen/runtime"
)

// call is one refused call: what it does, and the error it must get.
type call[K comparable] struct {
	name string
	do   func(ctx context.Context, m manager[K]) error
	want error
}

// badArgs lists calls with a wrong argument against item ok (which exists
// with stock) and unknown (which does not).
func badArgs[K comparable](ok, unknown K) []call[K] {
	inv := invrt.ErrInvalidArgument
	decr := func(n int64, op string) func(context.Context, manager[K]) error {
		return func(ctx context.Context, m manager[K]) error { _, err := m.Decr(ctx, ok, n, op); return err }
	}
	incr := func(n int64) func(context.Context, manager[K]) error {
		return func(ctx context.Context, m manager[K]) error { _, err := m.Incr(ctx, ok, n, "op"); return err }
	}
	adjust := func(d int64) func(context.Context, manager[K]) error {
		return func(ctx context.Context, m manager[K]) error { _, err := m.Adjust(ctx, ok, d, "op"); return err }
	}
	return []call[K]{
		{"decr n=0", decr(0, "op"), inv},
		{"decr n<0", decr(-1, "op"), inv},
		{"decr n over MaxQuantity", decr(invrt.MaxQuantity+1, "op"), inv},
		{"decr n=MaxInt64", decr(math.MaxInt64, "op"), inv},
		{"incr n=0", incr(0), inv},
		{"incr n<0", incr(-5), inv},
		{"incr n=MaxInt64 (would overflow)", incr(math.MaxInt64), inv},
		{"adjust 0", adjust(0), inv},
		{"adjust MinInt64", adjust(math.MinInt64), inv},
		{"adjust over MaxQuantity", adjust(invrt.MaxQuantity + 1), inv},
		{"init negative", func(ctx context.Context, m manager[K]) error { return m.Init(ctx, unknown, -1) }, inv},
		{"init over MaxQuantity", func(ctx context.Context, m manager[K]) error { return m.Init(ctx, unknown, invrt.MaxQuantity+1) }, inv},
		{"empty op key", decr(1, ""), inv},
		{"over-long op key", decr(1, strings.Repeat("o", invrt.MaxOpKeyLen+1)), inv},
		{"op key not UTF-8", decr(1, "op\xff"), inv},
		{"op key with control character", decr(1, "op\x00"), inv},
		{"release empty op key", func(ctx context.Context, m manager[K]) error { _, err := m.Release(ctx, ok, ""); return err }, inv},
		{"get unknown item", func(ctx context.Context, m manager[K]) error { _, err := m.Get(ctx, unknown); return err }, invrt.ErrNotFound},
		{"decr unknown item", func(ctx context.Context, m manager[K]) error { _, err := m.Decr(ctx, unknown, 1, "op"); return err }, invrt.ErrNotFound},
		{"incr unknown item", func(ctx context.Context, m manager[K]) error { _, err := m.Incr(ctx, unknown, 1, "op"); return err }, invrt.ErrNotFound},
		{"release unknown item", func(ctx context.Context, m manager[K]) error { _, err := m.Release(ctx, unknown, "op"); return err }, invrt.ErrNotFound},
		{"adjust unknown item", func(ctx context.Context, m manager[K]) error { _, err := m.Adjust(ctx, unknown, 5, "op"); return err }, invrt.ErrNotFound},
		{"refresh unknown item", func(ctx context.Context, m manager[K]) error { return m.Refresh(ctx, unknown) }, invrt.ErrNotFound},
	}
}

// keyCalls are calls with a bad item key.
func keyCalls[K comparable](bad K) []call[K] {
	inv := invrt.ErrInvalidArgument
	return []call[K]{
		{"init", func(ctx context.Context, m manager[K]) error { return m.Init(ctx, bad, 1) }, inv},
		{"get", func(ctx context.Context, m manager[K]) error { _, err := m.Get(ctx, bad); return err }, inv},
		{"decr", func(ctx context.Context, m manager[K]) error { _, err := m.Decr(ctx, bad, 1, "op"); return err }, inv},
		{"incr", func(ctx context.Context, m manager[K]) error { _, err := m.Incr(ctx, bad, 1, "op"); return err }, inv},
		{"release", func(ctx context.Context, m manager[K]) error { _, err := m.Release(ctx, bad, "op"); return err }, inv},
		{"adjust", func(ctx context.Context, m manager[K]) error { _, err := m.Adjust(ctx, bad, 1, "op"); return err }, inv},
		{"refresh", func(ctx context.Context, m manager[K]) error { return m.Refresh(ctx, bad) }, inv},
	}
}

func TestBadArguments(t *testing.T) {
	eachKey(t, testBadArguments[string], testBadArguments[int64], testBadArguments[uuid.UUID])
}

func testBadArguments[K comparable](t *testing.T, f *fixture[K]) {
	ctx := ctxT(t)
	ok := f.key(1)
	if err := f.m.Init(ctx, ok, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Decr(ctx, ok, 1, "before"); err != nil {
		t.Fatal(err)
	}
	assertRefused(t, f, badArgs(ok, f.key(2)))
}

func TestBadItemKeys(t *testing.T) {
	t.Run("string", func(t *testing.T) {
		f := stringFixture(t)
		for name, bad := range map[string]string{
			"empty":             "",
			"over max_key_len":  strings.Repeat("k", 65),
			"not UTF-8":         "sku\xfe",
			"control character": "sku\n1",
			"NUL":               "sku\x001",
		} {
			t.Run(name, func(t *testing.T) { assertRefused(t, f, keyCalls(bad)) })
		}
	})
	t.Run("uuid", func(t *testing.T) {
		f := uuidFixture(t)
		assertRefused(t, f, keyCalls(uuid.Nil))
	})
}

// assertRefused runs each call and checks that it gets its error and that
// neither Redis nor the ledger changed.
func assertRefused[K comparable](t *testing.T, f *fixture[K], calls []call[K]) {
	t.Helper()
	ctx := ctxT(t)
	f.quiesce(t)
	for _, c := range calls {
		before := f.snapshot(t)
		err := c.do(ctx, f.m)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		} else if !strings.HasPrefix(err.Error(), "invgen: ") {
			t.Errorf("%s: error %q does not say where it comes from", c.name, err)
		}
		if after := f.snapshot(t); after != before {
			t.Errorf("%s wrote something:\nbefore:\n%s\nafter:\n%s", c.name, before, after)
		}
	}
}
