package runtime

import (
	"context"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Units held without a journal entry.
//
// A sync change holds its units (a purchase) or counts them (an increase)
// in the item hash from its Redis step until its ledger row is settled,
// and its op record sits in the shard's journal meanwhile, so that a
// refresh waits for it and Reconcile settles it. When Redis loses the
// journal entry but not the item (an operator's DEL of the journal, a
// partial restore), the hash still holds the units and no one knows whose
// they are: a refresh that loaded the ledger's stock then would give them
// back, and the change's late row (its owner still writing, or a retry
// completing it) would sell them a second time.
//
// So a load that finds held units with no journal entry of the item
// refuses (load.lua's -2), and the refresh looks for the pending op
// records of the item (a SCAN of the keys under the item's op record
// prefix, on the node of its shard: slow on a large keyspace, and only
// done in this case) and puts them back in the journal (rejournal.lua);
// then it waits for them or settles them like any pending change. Units
// of purchases whose op records are lost too are held by the load until
// a lease and a ledger timeout have passed (the bound of a live owner's
// write, as for Reconcile), and given back by the next refresh after that.

// holdMS is how long a load keeps holding the units of purchases in
// flight whose journal entries and op records Redis lost, in ms.
func (c *Core[K]) holdMS() string {
	return strconv.FormatInt((c.opt.lease + c.opt.ledgerTimeout).Milliseconds(), 10)
}

// rejournal puts the pending op records of item k back in its shard's
// journal and returns how many it found.
func (c *Core[K]) rejournal(ctx context.Context, k itemKeys) (int, error) {
	node := redis.Cmdable(c.rdb)
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		n, err := cc.MasterForKey(ctx, k.item)
		if err != nil {
			return 0, err
		}
		node = n
	}
	match := escapeGlob(k.opPrefix()) + "*"
	found := 0
	var cursor uint64
	for {
		keys, next, err := node.Scan(ctx, cursor, match, 1000).Result()
		if err != nil {
			return found, err
		}
		for _, key := range keys {
			ok, err := rejournalScript.Run(ctx, c.rdb, []string{key, k.journal}).Int()
			if err != nil && !isCommandError(err) {
				return found, err
			}
			found += ok
		}
		if next == 0 {
			return found, nil
		}
		cursor = next
	}
}

// escapeGlob quotes the characters SCAN's MATCH pattern treats specially.
func escapeGlob(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}
