package runtime

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// clearQueue batches the last step of sync changes, commit.lua, which
// clears a journal entry once its ledger row is committed. The change has
// happened when its row commits, so Decr returns then; the clears of all
// changes that complete meanwhile go to Redis in one pipeline, run by one
// goroutine that exits when the queue is empty. A process that dies with
// clears queued leaves journal entries whose rows are committed: Reconcile
// confirms them, and a Refresh that meets them settles them.
type clearQueue struct {
	mu      sync.Mutex
	queue   []clearReq
	running bool
}

type clearReq struct {
	k       itemKeys
	opRec   string
	item    string
	adjust  bool
	attempt int64
}

// add queues a clear and starts the drainer if none runs. It is called
// within a call the Core counts, so the drainer counts itself in the
// Core's wait group (Close waits for it).
func (q *clearQueue) add(c clearer, r clearReq) {
	q.mu.Lock()
	q.queue = append(q.queue, r)
	if q.running {
		q.mu.Unlock()
		return
	}
	q.running = true
	q.mu.Unlock()
	c.background().Add(1)
	go q.drain(c)
}

func (q *clearQueue) drain(c clearer) {
	defer c.background().Done()
	var batch []clearReq
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		batch, q.queue = q.queue, batch[:0]
		q.mu.Unlock()
		c.clearBatch(batch)
	}
}

// clearer is the part of Core the queue needs (Core is generic; the queue
// is not).
type clearer interface {
	clearBatch([]clearReq)
	background() *sync.WaitGroup
}

func (c *Core[K]) background() *sync.WaitGroup { return &c.wg }

// clearBatch runs commit.lua for a batch in one pipeline. Records that Redis
// lost meanwhile (a restart) get their item refreshed, as commit does.
func (c *Core[K]) clearBatch(batch []clearReq) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opt.ledgerTimeout)
	defer cancel()
	run := func() ([]*redis.Cmd, error) {
		pipe := c.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(batch))
		for i, r := range batch {
			cmds[i] = commitScript.EvalSha(ctx, pipe, []string{r.opRec, r.k.journal, r.k.item, r.k.buckets[0], r.k.buckets[1], r.k.buckets[2]},
				r.k.field(r.opRec), c.genArg, adjustFlag[r.adjust], r.attempt)
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run()
	if err != nil && strings.Contains(err.Error(), "NOSCRIPT") {
		if commitScript.Load(ctx, c.rdb).Err() == nil {
			cmds, err = run()
		}
	}
	if err != nil {
		// The entries stay journaled; Reconcile confirms them.
		c.opt.logger.Error("invgen: clearing the journal entries of committed changes failed; Reconcile confirms them",
			"prefix", c.prefix, "changes", len(batch), "err", err)
	}
	if cmds == nil {
		return
	}
	// After a Redis restart a whole batch may have lost its records: load
	// each item once, not once per change.
	lost := map[string]bool{}
	for i, cmd := range cmds {
		if prev, err := cmd.Text(); err == nil && prev == "" {
			lost[batch[i].item] = true
		}
	}
	if len(lost) == 0 {
		return
	}
	// Not on the drainer: a Refresh waits for the item's pending changes,
	// whose clears are queued behind this very batch.
	c.wg.Add(1) // on the drainer, which the group counts
	go func() {
		defer c.wg.Done()
		for item := range lost {
			c.refreshLost(item)
		}
	}()
}

// refreshLost reloads an item whose committed change lost its op record
// (Redis lost data between the change's two steps): Redis may have been
// rebuilt without the change and offer its units again, so the refresh is
// retried for a while, and a failure is logged for the operator.
func (c *Core[K]) refreshLost(item string) {
	id, err := c.codec.Decode(item)
	wait := 50 * time.Millisecond
	for try := 0; err == nil && try < 6; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), c.opt.fenceTTL+time.Second)
		err = c.refresh(ctx, id, item, false, false)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(wait)
		wait *= 2
	}
	c.opt.logger.Error("invgen: refreshing an item that Redis lost data of failed; refresh it (RefreshAll or the janitor's audit with Repair)",
		"prefix", c.prefix, "item", item, "err", err)
}
