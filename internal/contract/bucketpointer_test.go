package contract

import (
	"strings"
	"testing"
	"time"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// TestBucketsPointerOutlivesItsRecord: a purchase falls over from its
// empty own bucket 2 to bucket 0, which serves it; its own bucket points
// there for two op TTLs, while the record in bucket 0 lives one to one and
// a half. Once the record has expired and the pointer not yet, the op key
// is bought again (a new execution: Redis knows nothing of it), and the
// pointer leads this purchase to bucket 0, which has stock. A repeat of
// that purchase within its op TTL must replay it, also once the old
// pointer has expired and a restock put units in the own bucket again.
// The time is simulated: the record is deleted, as its expiry would, and
// the pointer with it if it is still the old one (it expires first).
func TestBucketsPointerOutlivesItsRecord(t *testing.T) {
	for _, stream := range []bool{false, true} {
		name := map[bool]string{false: "sync", true: "stream"}[stream]
		t.Run(name, func(t *testing.T) {
			const opTTL = 10 * time.Second
			opts := []invrt.Option{invrt.WithOpTTL(opTTL)}
			var f *fixture[string]
			if stream {
				f = streamFixture(t, opts...)
			} else {
				f = stringFixture(t, opts...)
			}
			initBuckets(t, f, "px", 6, 3) // 2 a bucket
			if _, err := f.m.Decr(ctx0, "px", 2, opKeysIn("d", 2, 3, 1)[0]); err != nil {
				t.Fatal(err)
			}
			op := opKeysIn("k", 2, 3, 1)[0]
			if r, err := f.m.Decr(ctx0, "px", 1, op); err != nil || r.Delta != -1 {
				t.Fatalf("first purchase = %+v, %v", r, err)
			}
			flushIfStream(t, f, stream)
			f.quiesce(t)

			field := "2:px:d:" + op // the record's field in a shard's settled buckets
			keys, err := testenv.Keys(ctx0, f.rdb, f.ns)
			testenv.Must(t, err, "keys")
			var pointer string
			records := 0
			for _, k := range keys {
				switch {
				case strings.HasSuffix(k, ":o:"+field):
					pointer = k
				case strings.Contains(k, "}:s:"):
					n, err := f.rdb.HDel(ctx0, k, field).Result()
					testenv.Must(t, err, "HDEL %s %s", k, field)
					records += int(n)
				}
			}
			if pointer == "" || records != 1 {
				t.Fatalf("pointer key %q, %d settled records of %s; want a pointer in the own bucket and one record", pointer, records, op)
			}
			// The pointer has a third of its life left: the record has
			// expired, the pointer expires within the next op TTL.
			const left = 2 * opTTL / 3
			testenv.Must(t, f.rdb.PExpire(ctx0, pointer, left).Err(), "PEXPIRE %s", pointer)

			again, err := f.m.Decr(ctx0, "px", 1, op)
			if err != nil {
				t.Fatalf("purchase of the op key once its record expired: %v", err)
			}
			// The old pointer expires now; the new purchase's record does
			// not (it lives an op TTL at least), nor does a pointer to it.
			if ttl := f.rdb.PTTL(ctx0, pointer).Val(); ttl > 0 && ttl <= left {
				testenv.Must(t, f.rdb.Del(ctx0, pointer).Err(), "DEL %s", pointer)
			}
			if _, err := f.m.Adjust(ctx0, "px", 3, "restock"); err != nil {
				t.Fatal(err)
			}
			repeat, err := f.m.Decr(ctx0, "px", 2, op)
			if err != nil || !repeat.Replayed || repeat.Delta != again.Delta {
				t.Fatalf("repeat within the op TTL = %+v, %v; want the replay of %+v (buckets %v)", repeat, err, again, bucketStock(t, f, "px"))
			}
			flushIfStream(t, f, stream)
			f.quiesce(t)
			f.assertConserved(t, "px")
			if n := sumSQL(t, f, "SELECT count(*) FROM "+f.usageTable+" WHERE item_id = 'px' AND op_key = $1 AND state = 'committed'", op); n != 1 {
				t.Fatalf("%d committed rows of %s, want 1", n, op)
			}
		})
	}
}
