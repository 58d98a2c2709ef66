package runtime

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// What operators look at (invgen admin, dashboards): the journal's size
// and items with their stock in Redis and per the ledger.

// JournalLen counts the changes between their Redis step and their
// ledger commit: the journal entries of every shard (stream purchases are
// in the streams instead: FlushLag). It stays near zero; one that keeps
// growing means the ledger is failing, and Reconcile settles the entries
// once their lease has passed.
func (c *Core[K]) JournalLen(ctx context.Context) (int64, error) {
	if err := c.enter(ctx); err != nil {
		return 0, err
	}
	defer c.wg.Done()
	cmds := make([]*redis.IntCmd, len(c.ks.journals))
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, j := range c.ks.journals {
			cmds[i] = p.ZCard(ctx, j)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("invgen: journal of %s: %w", c.prefix, err)
	}
	var n int64
	for _, cmd := range cmds {
		n += cmd.Val()
	}
	return n, nil
}

// ItemStock is an item as an operator looks at it: its stock in Redis
// and per the ledger (they differ by the changes still on their way).
type ItemStock[K any] struct {
	Item     K
	Redis    int64 // what Get returns
	Ledger   int64 // the ledger's available stock
	Capacity int64
	Buckets  int // stock buckets (1: not split)
}

// Item returns one item's stock in Redis and per the ledger; an item the
// ledger does not know is ErrNotFound.
func (c *Core[K]) Item(ctx context.Context, id K) (ItemStock[K], error) {
	if _, err := c.codec.Encode(id); err != nil {
		return ItemStock[K]{}, err
	}
	t, found, err := c.ledger.Totals(ctx, id)
	switch {
	case err != nil:
		return ItemStock[K]{}, fmt.Errorf("invgen: item %v of %s: %w", id, c.prefix, err)
	case !found:
		return ItemStock[K]{}, fmt.Errorf("%w: item %v of %s", ErrNotFound, id, c.prefix)
	}
	n, err := c.Get(ctx, id)
	if err != nil {
		return ItemStock[K]{}, err
	}
	return ItemStock[K]{Item: id, Redis: n, Ledger: t.Available, Capacity: t.Capacity, Buckets: max(t.Buckets, 1)}, nil
}

// ListItems returns every item the ledger knows, in key order, with its
// stock in Redis and per the ledger. It reads each item from Redis, so
// it suits operators, not request paths.
func (c *Core[K]) ListItems(ctx context.Context) ([]ItemStock[K], error) {
	const page = 500
	var (
		out   []ItemStock[K]
		after K
		first = true
	)
	for {
		items, err := c.ledger.Items(ctx, after, first, page)
		if err != nil {
			return out, fmt.Errorf("invgen: list %s: %w", c.prefix, err)
		}
		for _, t := range items {
			n, err := c.Get(ctx, t.Item)
			if err != nil {
				return out, err
			}
			out = append(out, ItemStock[K]{Item: t.Item, Redis: n, Ledger: t.Available, Capacity: t.Capacity, Buckets: max(t.Buckets, 1)})
		}
		if len(items) < page {
			return out, nil
		}
		after, first = items[len(items)-1].Item, false
	}
}
