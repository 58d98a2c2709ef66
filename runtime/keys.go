package runtime

import (
	"hash/fnv"
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
	tags []string // per shard: "<ns>:{<prefix>:<shard>}:"
}

func newKeyspace(namespace, prefix string, shards int) keyspace {
	ks := keyspace{tags: make([]string, shards)}
	for i := range ks.tags {
		ks.tags[i] = namespace + ":{" + prefix + ":" + strconv.Itoa(i) + "}:"
	}
	return ks
}

// shard is a stable hash of the item's Redis form.
func (ks keyspace) shard(item string) int {
	h := fnv.New32a()
	h.Write([]byte(item))
	return int(h.Sum32() % uint32(len(ks.tags)))
}

// itemKeys are the keys one change of one item touches.
type itemKeys struct {
	item     string // the item hash
	journal  string // the shard's journal
	stream   string // the shard's usage stream (stream ledger mode)
	opPrefix string // shared by every op record of the item
}

func (ks keyspace) forItem(item string) itemKeys {
	tag := ks.tags[ks.shard(item)]
	return itemKeys{
		item:     tag + "item:" + item,
		journal:  tag + "journal",
		stream:   tag + "stream",
		opPrefix: tag + "op:" + strconv.Itoa(len(item)) + ":" + item + ":",
	}
}

// op is the key of the op record of one change: the item's op prefix, the
// kind (which holds no ':') and the op key.
func (k itemKeys) op(kind Kind, opKey string) string {
	return k.opPrefix + string(kind) + ":" + opKey
}

func (ks keyspace) journal(shard int) string { return ks.tags[shard] + "journal" }

func (ks keyspace) stream(shard int) string { return ks.tags[shard] + "stream" }

// journalOf returns the journal of the shard an op record key belongs to:
// everything up to the end of the hash tag, then "journal".
func journalOf(opRec string) string {
	return opRec[:strings.Index(opRec, "}:")+2] + "journal"
}
