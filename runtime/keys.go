package runtime

import (
	"strconv"
	"strings"
	"sync"
)

// keyspace builds every Redis key of one prefix. All keys of an item, its op
// records and its shard's journal share one hash tag, {prefix:shard}, so a
// script that touches them runs on one Redis Cluster slot. The namespace and
// prefix are validated identifiers; the item and op key only ever come after
// the tag, behind a kind segment and a length, so no user byte can move a
// key to another tag or make two kinds of key collide.
type keyspace struct {
	tags     []string    // per shard: "<ns>:{<prefix>:<shard>}:"
	journals []string    // per shard
	streams  []string    // per shard
	epochs   []string    // per shard: the shard's epoch (gate.go)
	buckets  [][3]string // per shard: the hashes of settled op records (settled.lua)
	slots    []int       // per shard: the Redis Cluster slot of its tag
	shardOf  map[string]int
	// spread caches the shards of an item's stock buckets (placement).
	spread *sync.Map
}

func newKeyspace(namespace, prefix string, shards int) keyspace {
	ks := keyspace{tags: make([]string, shards), journals: make([]string, shards), streams: make([]string, shards),
		epochs: make([]string, shards), buckets: make([][3]string, shards), slots: make([]int, shards),
		shardOf: make(map[string]int, shards), spread: new(sync.Map)}
	for i := range ks.tags {
		tag := prefix + ":" + strconv.Itoa(i)
		ks.slots[i] = slot(tag)
		ks.tags[i] = namespace + ":{" + tag + "}:"
		ks.shardOf[ks.tags[i]] = i
		ks.journals[i] = ks.tags[i] + "journal"
		ks.streams[i] = ks.tags[i] + "stream"
		ks.epochs[i] = ks.tags[i] + "epoch"
		for b := range ks.buckets[i] {
			ks.buckets[i][b] = ks.tags[i] + "s:" + strconv.Itoa(b)
		}
	}
	return ks
}

// shard is a stable hash (FNV-1a) of the item's Redis form.
func (ks keyspace) shard(item string) int {
	h := uint32(2166136261)
	for i := 0; i < len(item); i++ {
		h ^= uint32(item[i])
		h *= 16777619
	}
	return int(h % uint32(len(ks.tags)))
}

// clusterSlots is the number of Redis Cluster hash slots.
const clusterSlots = 16384

// slot is the Redis Cluster hash slot of a hash tag: CRC16 (XMODEM) of
// the tag, modulo the number of slots.
func slot(tag string) int {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % clusterSlots
}

// placement returns the shards of the n stock buckets of an item whose
// own shard is home (bucket 0). Bucket b goes to the free shard whose
// slot lies closest to b/n of the way round the slot ring from home's: a
// cluster gives each master one or a few runs of slots, so buckets spread
// over as many masters as the shards allow. It depends on the namespace,
// prefix and shard count alone, so every process computes the same.
func (ks keyspace) placement(home, n int) []int {
	n = min(n, len(ks.slots))
	if n <= 1 {
		return []int{home}
	}
	key := home<<16 | n
	if v, ok := ks.spread.Load(key); ok {
		return v.([]int)
	}
	out := []int{home}
	used := map[int]bool{home: true}
	for b := 1; b < n; b++ {
		target := (ks.slots[home] + b*clusterSlots/n) % clusterSlots
		best, bestDist := -1, 0
		for s, sl := range ks.slots {
			if used[s] {
				continue
			}
			d := (sl - target + clusterSlots) % clusterSlots
			d = min(d, clusterSlots-d)
			if best < 0 || d < bestDist {
				best, bestDist = s, d
			}
		}
		used[best] = true
		out = append(out, best)
	}
	ks.spread.Store(key, out)
	return out
}

// itemKeys are the keys one change of one item touches. Only the item key
// is built up front; op record keys are built on demand.
type itemKeys struct {
	item    string // the item hash
	journal string // the shard's journal
	stream  string // the shard's usage stream (stream ledger mode)
	epoch   string // the shard's epoch (gate.go)
	tag     string // the shard's hash tag
	id      string // the item's Redis form
	buckets *[3]string
}

// forItem returns the keys of an item in its own shard: all of it, or
// bucket 0 of an item whose stock is split (see bucketKeys).
func (ks keyspace) forItem(item string) itemKeys { return ks.at(item, ks.shard(item)) }

// at returns the keys of an item's stock in shard s.
func (ks keyspace) at(item string, s int) itemKeys {
	return itemKeys{
		item:    ks.tags[s] + "item:" + item,
		journal: ks.journals[s],
		stream:  ks.streams[s],
		epoch:   ks.epochs[s],
		tag:     ks.tags[s],
		id:      item,
		buckets: &ks.buckets[s],
	}
}

// field is the name of an op record in the shard's buckets of settled
// records: its key without the tag and "o:".
func (k itemKeys) field(opRec string) string { return opRec[len(k.tag)+2:] }

// getKeys are the KEYS of reserve.lua's get: the item hash and the
// shard's epoch (KEYS[1] and KEYS[7]; the others are not read).
func (k itemKeys) getKeys() []string {
	return []string{k.item, k.item, k.item, k.item, k.item, k.item, k.epoch}
}

// filter is the key of the item's filter of op keys (reserve.lua).
func (k itemKeys) filter() string { return k.tag + "bf:" + k.id }

// opPrefix is shared by every op record key of the item: the tag, "o:",
// the item's length and the item.
func (k itemKeys) opPrefix() string {
	return k.tag + "o:" + strconv.Itoa(len(k.id)) + ":" + k.id + ":"
}

// ops returns the members of a shard journal that are op records of this
// item: its changes still between their Redis and ledger steps.
func (k itemKeys) ops(journal []string) []string {
	var mine []string
	prefix := k.opPrefix()
	for _, m := range journal {
		if strings.HasPrefix(m, prefix) {
			mine = append(mine, m)
		}
	}
	return mine
}

// op is the key of the pending op record of one change: the item's op
// prefix, the kind's letter and the op key.
func (k itemKeys) op(kind Kind, opKey string) string {
	return k.opPrefix() + kindLetter[kind] + ":" + opKey
}

func (ks keyspace) journal(shard int) string { return ks.journals[shard] }

func (ks keyspace) stream(shard int) string { return ks.streams[shard] }

// kindLetter names a kind in op record keys, one letter to keep them short.
var kindLetter = map[Kind]string{KindDecr: "d", KindIncr: "i", KindRelease: "r", KindAdjust: "a"}

// opKeyParts is what an op record key names.
type opKeyParts struct {
	item  string
	kind  Kind
	opKey string
	shard int // the shard whose tag the key has: the item's, or one of its buckets'
}

// parseOpRecordKey splits an op record key of this keyspace into its item,
// kind and op key. It reports false for anything else (a garbled journal
// member).
func (ks keyspace) parseOpRecordKey(key string) (opKeyParts, bool) {
	var p opKeyParts
	end := strings.Index(key, "}:o:")
	if end < 0 {
		return p, false
	}
	rest := key[end+4:]
	ls, rest, ok := strings.Cut(rest, ":")
	n, err := strconv.Atoi(ls)
	if !ok || err != nil || n <= 0 || n > len(rest) {
		return p, false
	}
	p.item, rest = rest[:n], rest[n:]
	if len(rest) < 3 || rest[0] != ':' || rest[2] != ':' {
		return p, false
	}
	for kind, letter := range kindLetter {
		if letter[0] == rest[1] {
			p.kind = kind
		}
	}
	p.opKey = rest[3:]
	s, ok := ks.shardOf[key[:end+2]]
	if p.kind == "" || p.opKey == "" || !ok {
		return p, false
	}
	p.shard = s
	return p, true
}
