package runtime

import (
	"context"
	"errors"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The sold-out fast path (WithSoldOutCache; reserve.lua explains the
// protocol): while an item is sold out, the Core refuses its purchases
// itself, except repeats of purchases that succeeded.

// soldOutMark is a sold-out item as one Redis reply described it.
type soldOutMark struct {
	until time.Time // by the monotonic clock
	bits  uint64    // the filter's size
	fill  string    // the filter (SETBIT order: bit 0 is the top bit of byte 0)
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

// mayHold reports whether the filter may hold opKey.
func (m *soldOutMark) mayHold(opKey string) bool {
	a, b := positions(opKey)
	return m.bit(a%m.bits) && m.bit(b%m.bits)
}

func (m *soldOutMark) bit(p uint64) bool {
	i := p >> 3
	return i < uint64(len(m.fill)) && m.fill[i]&(0x80>>(p&7)) != 0
}

// soldOutLocally reports whether a purchase of item k with opKey may be
// refused without asking Redis.
func (c *Core[K]) soldOutLocally(k itemKeys, opKey string) bool {
	if c.opt.soldOut <= 0 {
		return false
	}
	v, ok := c.marks.Load(k.item)
	if !ok {
		return false
	}
	m := v.(*soldOutMark)
	if !time.Now().Before(m.until) {
		c.marks.CompareAndDelete(k.item, v)
		return false
	}
	return !m.mayHold(opKey)
}

// markSoldOut records that item k is in a sold-out period for leftMS more
// ms by Redis's clock, as a reply to a call sent at sent told: the mark
// ends that long after the call was sent, so never after the period. It
// reads the item's filter, which cannot change during the period.
func (c *Core[K]) markSoldOut(ctx context.Context, k itemKeys, sent time.Time, leftMS int64) {
	until := sent.Add(time.Duration(leftMS) * time.Millisecond)
	var bits *redis.StringCmd
	var fill *redis.StringCmd
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		bits = p.HGet(ctx, k.item, "m")
		fill = p.Get(ctx, k.filter())
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return
	}
	n, err := bits.Uint64()
	if err != nil || n == 0 {
		return
	}
	if time.Now().Before(until) {
		c.marks.Store(k.item, &soldOutMark{until: until, bits: n, fill: fill.Val()})
	}
}
