package runtime

import (
	"strconv"
	"strings"
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
}

func newKeyspace(namespace, prefix string, shards int) keyspace {
	ks := keyspace{tags: make([]string, shards), journals: make([]string, shards), streams: make([]string, shards),
		epochs: make([]string, shards), buckets: make([][3]string, shards)}
	for i := range ks.tags {
		ks.tags[i] = namespace + ":{" + prefix + ":" + strconv.Itoa(i) + "}:"
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

func (ks keyspace) forItem(item string) itemKeys {
	s := ks.shard(item)
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
	if p.kind == "" || p.opKey == "" || key[:end+2] != ks.tags[ks.shard(p.item)] {
		return p, false
	}
	return p, true
}
