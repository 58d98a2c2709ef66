package runtime

import (
	"context"
	"errors"
	"hash/fnv"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The sold-out fast path (WithSoldOutCache; reserve.lua explains the
// protocol): while an item is sold out, the Core refuses its purchases
// itself, except repeats of purchases that succeeded.

// soldOutMark is a sold-out item as one Redis reply described it. Once
// it ends, one purchase asks Redis again (the renewal) while the others
// of the process wait for its answer, a round trip at most.
type soldOutMark struct {
	until    time.Time // by the monotonic clock
	filters  []filter  // the item's, or one per bucket of a split item
	renewing atomic.Bool
	renewed  chan struct{} // closed when the renewal has its answer
}

// filter is a copy of an item's filter of op keys.
type filter struct {
	bits uint64 // the filter's size
	fill string // the filter (SETBIT order: bit 0 is the top bit of byte 0)
}

// filterPositions are an op key's two positions in an item's filter,
// before modulo its size, as reserve.lua takes them.
func filterPositions(opKey string) (string, string) {
	a, b := positions(opKey)
	return strconv.FormatUint(a, 10), strconv.FormatUint(b, 10)
}

func positions(opKey string) (uint64, uint64) {
	h := fnv.New64a()
	h.Write([]byte(opKey))
	s := h.Sum64()
	return s & 0xffffffff, s >> 32
}

// mayHold reports whether one of the filters may hold opKey.
func (m *soldOutMark) mayHold(opKey string) bool {
	a, b := positions(opKey)
	for _, f := range m.filters {
		if f.bit(a%f.bits) && f.bit(b%f.bits) {
			return true
		}
	}
	return false
}

func (f filter) bit(p uint64) bool {
	i := p >> 3
	return i < uint64(len(f.fill)) && f.fill[i]&(0x80>>(p&7)) != 0
}

// soldOutLocally reports whether a purchase of item k with opKey may be
// refused without asking Redis. renewal, when not nil, is the ended mark
// this purchase renews: the caller asks Redis and then calls endRenewal.
func (c *Core[K]) soldOutLocally(ctx context.Context, k itemKeys, opKey string) (refuse bool, renewal *soldOutMark) {
	if c.opt.soldOut <= 0 {
		return false, nil
	}
	for waited := false; ; waited = true {
		v, ok := c.marks.Load(k.item)
		if !ok {
			return false, nil
		}
		m := v.(*soldOutMark)
		switch {
		case time.Now().Before(m.until):
			return !m.mayHold(opKey), nil
		case waited:
			return false, nil
		case m.renewing.CompareAndSwap(false, true):
			return false, m
		}
		select {
		case <-m.renewed:
		case <-ctx.Done():
			return false, nil
		}
	}
}

// endRenewal ends the renewal of mark m: a new mark is stored by then if
// Redis said the item is still sold out.
func (c *Core[K]) endRenewal(k itemKeys, m *soldOutMark) {
	c.marks.CompareAndDelete(k.item, m)
	close(m.renewed)
}

// markSoldOut records that item home is in a sold-out period for leftMS
// more ms by Redis's clock, as a reply to a call sent at sent told: the
// mark ends that long after the call was sent, so never after the period.
// It reads the filters of buckets (the item itself, or each of its
// buckets, each in its own period), which cannot change during the
// period.
func (c *Core[K]) markSoldOut(ctx context.Context, home itemKeys, buckets []itemKeys, sent time.Time, leftMS int64) {
	until := sent.Add(time.Duration(leftMS) * time.Millisecond)
	bits := make([]*redis.StringCmd, len(buckets))
	fills := make([]*redis.StringCmd, len(buckets))
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range buckets {
			bits[i] = p.HGet(ctx, k.item, "m")
			fills[i] = p.Get(ctx, k.filter())
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return
	}
	m := &soldOutMark{until: until, renewed: make(chan struct{})}
	for i := range buckets {
		n, err := bits[i].Uint64()
		if err != nil || n == 0 {
			return
		}
		m.filters = append(m.filters, filter{bits: n, fill: fills[i].Val()})
	}
	if time.Now().Before(until) {
		c.marks.Store(home.item, m)
	}
}
