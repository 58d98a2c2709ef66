package robustness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"
)

// Kinds of faults.
const (
	FaultOpDel         = "opdel"          // Redis forgets the settled op records of some shards (their TTL, or a partial loss)
	FaultRedisRestart  = "redis-restart"  // SIGKILL the run's redis-server, start it again empty
	FaultRedisRollback = "redis-rollback" // snapshot, traffic goes on, SIGKILL and restart from the snapshot: recent writes lost, as at a failover to a lagging replica
	FaultLockTable     = "lock-table"     // LOCK TABLE … IN ACCESS EXCLUSIVE MODE for a while
	FaultPoolHold      = "pool-hold"      // hold the parent's pool connections busy with pg_sleep
	FaultGarble        = "garble"         // a wrong-type or garbled key (garbleVariants kinds)
	FaultKillChild     = "kill-child"     // SIGKILL a buyer process; its successor retries what was in flight
	// FaultFailpointKill records a buyer process that killed itself at a
	// failpoint of the runtime (failpointsFor); its successor retries what
	// was in flight.
	FaultFailpointKill = "failpoint-kill"
	FaultFlusherKill   = "flusher-kill"   // SIGKILL the flusher process, restart it after a gap (a backlog)
	FaultToxic         = "toxic"          // toxiproxy latency, stalls or resets between the parent and a server
	FaultToxicRedis    = "toxic-redis"    // the same, between the parent and Redis (recorded kind)
	FaultOpDelAll      = "opdel-all"      // Redis forgets every settled op record at once
	FaultFlusherPaused = "flusher-paused" // marks a stretch without a flusher (for the report)
)

// Fault is one scheduled fault.
type Fault struct {
	At     time.Duration `json:"at"`
	Kind   string        `json:"k"`
	Dur    time.Duration `json:"d,omitempty"`
	Prefix int           `json:"p,omitempty"`
	Item   int           `json:"i,omitempty"`
	Arg    int           `json:"a,omitempty"`
}

func (f Fault) String() string {
	return fmt.Sprintf("@%v %s dur=%v prefix=%s item=%d arg=%d", f.At.Round(time.Millisecond), f.Kind, f.Dur.Round(time.Millisecond),
		Prefixes[f.Prefix].Name, f.Item, f.Arg)
}

// drawFaults draws the fault schedule: op records forgotten often, client
// deadlines come with the steps, the rest spread over the run.
func drawFaults(rng *rand.Rand, cfg Config) []Fault {
	var out []Fault
	at := func() time.Duration { return time.Duration(rng.Int64N(int64(cfg.Duration * 9 / 10))) }
	add := func(n int, f func() Fault) {
		for range n {
			out = append(out, f())
		}
	}
	add(8+rng.IntN(8), func() Fault { return Fault{At: at(), Kind: FaultOpDel, Arg: 30 + rng.IntN(70)} })
	add(rng.IntN(2), func() Fault { return Fault{At: at(), Kind: FaultOpDelAll} })
	add(rng.IntN(2), func() Fault {
		return Fault{At: at(), Kind: FaultRedisRestart, Dur: time.Duration(50+rng.IntN(250)) * time.Millisecond}
	})
	add(2+rng.IntN(4), func() Fault {
		return Fault{At: at(), Kind: FaultLockTable, Prefix: rng.IntN(len(Prefixes)), Arg: rng.IntN(2),
			Dur: time.Duration(20+rng.IntN(300)) * time.Millisecond}
	})
	add(4+rng.IntN(8), func() Fault {
		return Fault{At: at(), Kind: FaultPoolHold, Dur: time.Duration(20+rng.IntN(400)) * time.Millisecond}
	})
	add(rng.IntN(3), func() Fault {
		return Fault{At: at(), Kind: FaultGarble, Prefix: rng.IntN(len(Prefixes)), Item: rng.IntN(cfg.Items), Arg: rng.IntN(3)}
	})
	add(1+rng.IntN(3), func() Fault { return Fault{At: at(), Kind: FaultKillChild, Arg: rng.IntN(cfg.Children)} })
	add(2+rng.IntN(3), func() Fault {
		return Fault{At: at(), Kind: FaultFlusherKill, Dur: time.Duration(300+rng.IntN(2200)) * time.Millisecond}
	})
	add(2+rng.IntN(4), func() Fault {
		return Fault{At: at(), Kind: FaultToxic, Arg: rng.IntN(6), Dur: time.Duration(50+rng.IntN(300)) * time.Millisecond}
	})
	// Drawn from a stream of their own, so that the plans of the seeds
	// that existed before this fault stay the same.
	rb := rand.New(rand.NewPCG(cfg.Seed, 0x10ba))
	for range rb.IntN(3) {
		out = append(out, Fault{At: time.Duration(rb.Int64N(int64(cfg.Duration * 8 / 10))), Kind: FaultRedisRollback,
			Dur: time.Duration(100+rb.IntN(900)) * time.Millisecond})
	}
	// The garblings added after the first three, in a stream of their
	// own too: a missing field, a fence beyond its bound or not a number,
	// a pending count that is not a number, a journaled op record of the
	// wrong type.
	rg := rand.New(rand.NewPCG(cfg.Seed, 0x6a7b))
	for range 1 + rg.IntN(3) {
		out = append(out, Fault{At: time.Duration(rg.Int64N(int64(cfg.Duration * 9 / 10))), Kind: FaultGarble,
			Prefix: rg.IntN(len(Prefixes)), Item: rg.IntN(cfg.Items), Arg: 3 + rg.IntN(garbleVariants-3)})
	}
	out = append(out, drawLedgerFaults(cfg)...)
	// In time order.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].At < out[j-1].At; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// forgetScript makes Redis forget the settled op records of one shard
// (KEYS[1..3], its buckets), as their TTL or a partial loss of data does,
// and marks the shard's items (KEYS[4...]) as reloaded, as the recovery
// from a partial loss (RefreshAll, docs/operating.md) does: Redis no
// longer claims to remember every op key of them.
var forgetScript = redis.NewScript(`
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
for i = 4, #KEYS do
  if redis.call('TYPE', KEYS[i])['ok'] == 'hash' then redis.call('HDEL', KEYS[i], 'h') end
end
return 1`)

// forgetOps makes Redis forget the settled op records of about pct% of
// the namespace's shards.
func forgetOps(ctx context.Context, rdb *redis.Client, ns string, pct int, rng *rand.Rand) (int, error) {
	tags := map[string]bool{}
	iter := rdb.Scan(ctx, 0, ns+":*}:s:*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		tags[k[:strings.Index(k, "}:")+2]] = true
	}
	if err := iter.Err(); err != nil {
		return 0, err
	}
	n := 0
	for tag := range tags {
		if rng.IntN(100) >= pct {
			continue
		}
		keys := []string{tag + "s:0", tag + "s:1", tag + "s:2"}
		items, err := rdb.Keys(ctx, tag+"item:*").Result()
		if err != nil {
			return n, err
		}
		if err := forgetScript.Run(ctx, rdb, append(keys, items...)).Err(); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// garbleVariants is how many ways garble knows to break a key.
const garbleVariants = 10

// fenceBound is the longest fence a refresh takes (the runtime's
// WithFenceTTL limit, 10 minutes): a fence further ahead is garbage.
const fenceBound = 10 * time.Minute

// garble breaks one key of item i of prefix p (of its own bucket, for a
// split item): variant 0 sets the item hash to a string, 1 sets its stock
// field to "x", 2 adds a journal member shaped like an op record of the
// item whose record holds garbage, 3 deletes the capacity field c, 4 the
// stock field a, 5 sets c to "x", 6 sets a fence a year ahead (beyond
// fenceBound), 7 a fence that is not a number, 8 sets the pending count q
// to "x", 9 adds a journal member whose op record is a list. It returns
// what to clean up by hand if the library cannot.
func garble(ctx context.Context, rdb *redis.Client, ns string, p, i, variant int) (string, error) {
	k := ItemKey(ns, p, i)
	switch variant {
	case 0:
		return k, rdb.Set(ctx, k, "garbage", 0).Err()
	case 1:
		return k, rdb.HSet(ctx, k, "a", "x").Err()
	case 3:
		return k, rdb.HDel(ctx, k, "c").Err()
	case 4:
		return k, rdb.HDel(ctx, k, "a").Err()
	case 5:
		return k, rdb.HSet(ctx, k, "c", "x").Err()
	case 6:
		far := time.Now().Add(365 * 24 * time.Hour).UnixMilli()
		return k, rdb.HSet(ctx, k, "f", far, "t", "garbled").Err()
	case 7:
		return k, rdb.HSet(ctx, k, "f", "soon", "t", "garbled").Err()
	case 8:
		return k, rdb.HSet(ctx, k, "q", "x").Err()
	}
	id := ItemID(p, i)
	tag := Tag(ns, p, id)
	pipe := rdb.TxPipeline()
	member := garbledMember(ns, p, i, variant)
	if variant == 9 {
		pipe.RPush(ctx, member, "garbage")
	} else {
		pipe.Set(ctx, member, "p:x:garbled", 0)
	}
	pipe.ZAdd(ctx, tag+"journal", redis.Z{Score: 0, Member: member})
	_, err := pipe.Exec(ctx)
	return member, err
}

// garbledMember is the journal member that garble variants 2 and 9 add.
func garbledMember(ns string, p, i, variant int) string {
	id := ItemID(p, i)
	return fmt.Sprintf("%so:%d:%s:d:garbled%d", Tag(ns, p, id), len(id), id, variant)
}

// toxic adds a toxic to one of the proxies for d.
func toxic(ctx context.Context, pg, rd *toxiproxy.Proxy, variant int, d time.Duration) error {
	type tx struct {
		p             *toxiproxy.Proxy
		typ, stream   string
		attrs         string
		stopWholeLink bool
	}
	all := []tx{
		{pg, "latency", "downstream", `{"latency":30,"jitter":20}`, false},
		{rd, "latency", "downstream", `{"latency":15,"jitter":10}`, false},
		{pg, "reset_peer", "downstream", `{"timeout":0}`, false},
		{pg, "reset_peer", "upstream", `{"timeout":0}`, false},
		{rd, "reset_peer", "downstream", `{"timeout":0}`, false},
		{pg, "timeout", "upstream", `{"timeout":0}`, false},
	}
	x := all[variant%len(all)]
	js := fmt.Sprintf(`{"name":"f","type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, x.typ, x.stream, x.attrs)
	if _, err := x.p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		return err
	}
	sleep(ctx, d)
	return x.p.Toxics.RemoveToxic(context.Background(), "f")
}
