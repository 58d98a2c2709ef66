package robustness

import (
	"context"
	"crypto/sha1"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	mycoupon "github.com/invgen/invgen/examples/engines/mysql/coupon"
	mydrop "github.com/invgen/invgen/examples/engines/mysql/drop"
	myflashsale "github.com/invgen/invgen/examples/engines/mysql/flashsale"
	mygiftcard "github.com/invgen/invgen/examples/engines/mysql/giftcard"
	licoupon "github.com/invgen/invgen/examples/engines/sqlite/coupon"
	lidrop "github.com/invgen/invgen/examples/engines/sqlite/drop"
	liflashsale "github.com/invgen/invgen/examples/engines/sqlite/flashsale"
	ligiftcard "github.com/invgen/invgen/examples/engines/sqlite/giftcard"
	"github.com/invgen/invgen/examples/flashsale/inventory/coupon"
	"github.com/invgen/invgen/examples/flashsale/inventory/drop"
	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/examples/flashsale/inventory/giftcard"
	invrt "github.com/invgen/invgen/runtime"
)

// manager is what every generated Manager offers, for key type K.
type manager[K any] interface {
	Init(ctx context.Context, id K, qty int64) error
	InitBuckets(ctx context.Context, id K, qty int64, buckets int) error
	Adjust(ctx context.Context, id K, delta int64, opKey string) (invrt.Result, error)
	Get(ctx context.Context, id K) (int64, error)
	Decr(ctx context.Context, id K, n int64, opKey string) (invrt.Result, error)
	Incr(ctx context.Context, id K, n int64, opKey string) (invrt.Result, error)
	Release(ctx context.Context, id K, opKey string) (invrt.Result, error)
	Refresh(ctx context.Context, id K) error
	RefreshAll(ctx context.Context) (int, error)
	Reconcile(ctx context.Context) (invrt.ReconcileReport, error)
	Audit(ctx context.Context) (invrt.AuditReport[K], error)
	RunJanitor(ctx context.Context, cfg invrt.JanitorConfig[K]) error
	CreateTables(ctx context.Context) error
}

// streamer is what the Manager of a stream prefix offers besides.
type streamer interface {
	RunFlusher(ctx context.Context, cfg invrt.FlusherConfig) error
	Flush(ctx context.Context) (int, error)
}

// Prefix describes one generated example package: its tables, its Redis
// layout and how its item keys look.
type Prefix struct {
	// Name is the prefix name as the spec gives it.
	Name string
	// Stream is true for the stream ledger.
	Stream bool
	// Shards is the package's shard count.
	Shards int
	// ModTable and UsageTable are the ledger tables.
	ModTable, UsageTable string
}

// Prefixes are the four example prefixes, in a fixed order that plans
// refer to by index.
var Prefixes = []Prefix{
	{Name: flashsale.Prefix, Shards: flashsale.Shards, ModTable: flashsale.ModificationTable, UsageTable: flashsale.UsageTable},
	{Name: coupon.Prefix, Shards: coupon.Shards, ModTable: coupon.ModificationTable, UsageTable: coupon.UsageTable},
	{Name: giftcard.Prefix, Shards: giftcard.Shards, ModTable: giftcard.ModificationTable, UsageTable: giftcard.UsageTable},
	{Name: drop.Prefix, Stream: true, Shards: drop.Shards, ModTable: drop.ModificationTable, UsageTable: drop.UsageTable},
}

// ItemID is the Redis (and SQL text) form of item i of prefix p.
func ItemID(p, i int) string {
	switch Prefixes[p].Name {
	case coupon.Prefix:
		return strconv.FormatInt(int64(i)*7919-50, 10)
	case giftcard.Prefix:
		return uuidKey(i).String()
	}
	return "sku-" + strconv.Itoa(i)
}

func uuidKey(i int) uuid.UUID {
	return uuid.NewHash(sha1.New(), uuid.NameSpaceOID, []byte("item-"+strconv.Itoa(i)), 5)
}

// ItemKey is the Redis key of the item hash, built here by the layout
// docs/design.md documents rather than by the code under test.
func ItemKey(ns string, p, i int) string {
	return Tag(ns, p, ItemID(p, i)) + "item:" + ItemID(p, i)
}

// Tag is the hash tag prefix of the shard an item belongs to.
func Tag(ns string, p int, id string) string {
	return shardTag(ns, p, homeShard(p, id))
}

func shardTag(ns string, p, shard int) string {
	return ns + ":{" + Prefixes[p].Name + ":" + strconv.Itoa(shard) + "}:"
}

func homeShard(p int, id string) int {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return int(h % uint32(Prefixes[p].Shards))
}

// BucketKeys are the Redis keys of the item hashes of the n stock buckets
// of item i of prefix p, bucket 0 first, placed as docs/buckets.md documents:
// bucket 0 in the item's own shard, bucket b in the free shard whose
// cluster slot lies closest round the ring to b/n of the way from bucket
// 0's, the lower shard on a tie.
func BucketKeys(ns string, p, i, n int) []string {
	id := ItemID(p, i)
	home := homeShard(p, id)
	shards := Prefixes[p].Shards
	slotOf := func(s int) int { return int(crc16([]byte(Prefixes[p].Name+":"+strconv.Itoa(s))) % 16384) }
	taken := map[int]bool{home: true}
	keys := []string{shardTag(ns, p, home) + "item:" + id}
	for b := 1; b < n; b++ {
		want := (slotOf(home) + b*16384/n) % 16384
		best, dist := -1, 1<<30
		for s := range shards {
			d := slotOf(s) - want
			if d < 0 {
				d = -d
			}
			if d > 8192 {
				d = 16384 - d
			}
			if !taken[s] && d < dist {
				best, dist = s, d
			}
		}
		taken[best] = true
		keys = append(keys, shardTag(ns, p, best)+"item:"+id)
	}
	return keys
}

// crc16 is CRC-16/XMODEM, Redis Cluster's key hash, table-driven.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^c]
	}
	return crc
}

var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// Target is one manager with its key type erased: items are named by their
// index.
type Target interface {
	Init(ctx context.Context, i int, qty int64) error
	InitBuckets(ctx context.Context, i int, qty int64, buckets int) error
	Adjust(ctx context.Context, i int, delta int64, op string) (invrt.Result, error)
	Get(ctx context.Context, i int) (int64, error)
	Decr(ctx context.Context, i int, n int64, op string) (invrt.Result, error)
	Incr(ctx context.Context, i int, n int64, op string) (invrt.Result, error)
	Release(ctx context.Context, i int, op string) (invrt.Result, error)
	Refresh(ctx context.Context, i int) error
	RefreshAll(ctx context.Context) (int, error)
	Reconcile(ctx context.Context) (invrt.ReconcileReport, error)
	// Audit returns the compared item count, the drifting items (Redis
	// form) and the expired journal entries.
	Audit(ctx context.Context) (int, []string, int, error)
	// Janitor runs the janitor for d with short intervals, repairing the
	// sync prefixes.
	Janitor(ctx context.Context, d time.Duration) error
	RunFlusher(ctx context.Context, cfg invrt.FlusherConfig) error
	Flush(ctx context.Context) (int, error)
	CreateTables(ctx context.Context) error
	// Close calls the manager's Close when it has one.
	Close(ctx context.Context) error
	// Hold, Confirm and Cancel are the prefix's holds; a prefix without
	// them (Holds false) answers invrt.ErrNotSupported.
	Hold(ctx context.Context, i int, n int64, op string, ttl time.Duration) (invrt.Result, error)
	Confirm(ctx context.Context, i int, op string) error
	Cancel(ctx context.Context, i int, op string) (invrt.Result, error)
	Holds() bool
}

// holder is the Manager of a prefix with holds (a sync prefix on
// PostgreSQL).
type holder[K any] interface {
	Hold(ctx context.Context, id K, n int64, holdKey string, ttl time.Duration) (invrt.Result, error)
	Confirm(ctx context.Context, id K, holdKey string) error
	Cancel(ctx context.Context, id K, holdKey string) (invrt.Result, error)
}

func (a adapter[K]) Holds() bool { _, ok := a.m.(holder[K]); return ok }

func (a adapter[K]) Hold(ctx context.Context, i int, n int64, op string, ttl time.Duration) (invrt.Result, error) {
	h, ok := a.m.(holder[K])
	if !ok {
		return invrt.Result{}, invrt.ErrNotSupported
	}
	return h.Hold(ctx, a.key(i), n, op, ttl)
}

func (a adapter[K]) Confirm(ctx context.Context, i int, op string) error {
	h, ok := a.m.(holder[K])
	if !ok {
		return invrt.ErrNotSupported
	}
	return h.Confirm(ctx, a.key(i), op)
}

func (a adapter[K]) Cancel(ctx context.Context, i int, op string) (invrt.Result, error) {
	h, ok := a.m.(holder[K])
	if !ok {
		return invrt.Result{}, invrt.ErrNotSupported
	}
	return h.Cancel(ctx, a.key(i), op)
}

type adapter[K comparable] struct {
	m   manager[K]
	key func(i int) K
	enc func(K) string
	// stream: the janitor does not repair this prefix. The library itself
	// promises to correct a stream repeat (the flusher refreshes the item
	// of a conflict); a janitor's repair would hide a broken promise.
	stream bool
}

func (a adapter[K]) Init(ctx context.Context, i int, qty int64) error {
	return a.m.Init(ctx, a.key(i), qty)
}
func (a adapter[K]) InitBuckets(ctx context.Context, i int, qty int64, buckets int) error {
	return a.m.InitBuckets(ctx, a.key(i), qty, buckets)
}
func (a adapter[K]) Adjust(ctx context.Context, i int, d int64, op string) (invrt.Result, error) {
	return a.m.Adjust(ctx, a.key(i), d, op)
}
func (a adapter[K]) Get(ctx context.Context, i int) (int64, error) { return a.m.Get(ctx, a.key(i)) }
func (a adapter[K]) Decr(ctx context.Context, i int, n int64, op string) (invrt.Result, error) {
	return a.m.Decr(ctx, a.key(i), n, op)
}
func (a adapter[K]) Incr(ctx context.Context, i int, n int64, op string) (invrt.Result, error) {
	return a.m.Incr(ctx, a.key(i), n, op)
}
func (a adapter[K]) Release(ctx context.Context, i int, op string) (invrt.Result, error) {
	return a.m.Release(ctx, a.key(i), op)
}
func (a adapter[K]) Refresh(ctx context.Context, i int) error { return a.m.Refresh(ctx, a.key(i)) }
func (a adapter[K]) RefreshAll(ctx context.Context) (int, error) {
	return a.m.RefreshAll(ctx)
}
func (a adapter[K]) Reconcile(ctx context.Context) (invrt.ReconcileReport, error) {
	return a.m.Reconcile(ctx)
}
func (a adapter[K]) Audit(ctx context.Context) (int, []string, int, error) {
	rep, err := a.m.Audit(ctx)
	var drift []string
	for _, d := range rep.Drift {
		drift = append(drift, fmt.Sprintf("%s(redis=%d missing=%v ledger=%d pending=%d stale=%v corrupt=%q)", a.enc(d.Item), d.Redis, d.Missing, d.Ledger, d.Pending, d.Stale, d.Corrupt))
	}
	return rep.Items, drift, rep.Expired, err
}
func (a adapter[K]) Janitor(ctx context.Context, d time.Duration) error {
	jctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var errs []error
	_ = a.m.RunJanitor(jctx, invrt.JanitorConfig[K]{ReconcileEvery: 7 * time.Millisecond, AuditEvery: 11 * time.Millisecond, Repair: !a.stream,
		ExpireHoldsEvery: 13 * time.Millisecond,
		OnReport: func(r invrt.JanitorReport[K]) {
			if r.Err != nil {
				errs = append(errs, r.Err)
			}
		}})
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}
func (a adapter[K]) RunFlusher(ctx context.Context, cfg invrt.FlusherConfig) error {
	s, err := a.streamer()
	if err != nil {
		return err
	}
	return s.RunFlusher(ctx, cfg)
}
func (a adapter[K]) Flush(ctx context.Context) (int, error) {
	s, err := a.streamer()
	if err != nil {
		return 0, err
	}
	return s.Flush(ctx)
}

// streamer is the manager as a stream prefix's: a sync prefix's Manager
// has no streams to flush.
func (a adapter[K]) streamer() (streamer, error) {
	if s, ok := a.m.(streamer); ok {
		return s, nil
	}
	return nil, fmt.Errorf("%w: %T has no streams to flush", invrt.ErrInvalidArgument, a.m)
}
func (a adapter[K]) CreateTables(ctx context.Context) error { return a.m.CreateTables(ctx) }
func (a adapter[K]) Close(ctx context.Context) error {
	if c, ok := any(a.m).(interface{ Close(context.Context) error }); ok {
		return c.Close(ctx)
	}
	return nil
}

// Options are the manager options of a run.
type Options struct {
	Namespace   string
	Lease       time.Duration
	OpTTL       time.Duration
	FenceTTL    time.Duration
	BusyWait    time.Duration
	LedgerLimit time.Duration
}

func (o Options) list() []invrt.Option {
	return []invrt.Option{invrt.WithNamespace(o.Namespace), invrt.WithLease(o.Lease), invrt.WithOpTTL(o.OpTTL),
		invrt.WithFenceTTL(o.FenceTTL), invrt.WithBusyWait(o.BusyWait),
		invrt.WithLedgerTimeout(o.LedgerLimit)}
}

// NewTarget builds the manager of prefix p of engine ("" for postgresql)
// over db and rdb.
func NewTarget(engine string, p int, db *DB, rdb redis.UniversalClient, o Options) (Target, error) {
	opts := o.list()
	str := func(m manager[string], err error) (Target, error) {
		return adapter[string]{m: m, key: func(i int) string { return ItemID(p, i) }, enc: func(s string) string { return s }}, err
	}
	i64 := func(m manager[int64], err error) (Target, error) {
		return adapter[int64]{m: m, key: func(i int) int64 { return int64(i)*7919 - 50 }, enc: func(v int64) string { return strconv.FormatInt(v, 10) }}, err
	}
	uid := func(m manager[uuid.UUID], err error) (Target, error) {
		return adapter[uuid.UUID]{m: m, key: uuidKey, enc: uuid.UUID.String}, err
	}
	stream := func(m manager[string], err error) (Target, error) {
		return adapter[string]{m: m, key: func(i int) string { return ItemID(p, i) }, enc: func(s string) string { return s }, stream: true}, err
	}
	switch engine + "/" + Prefixes[p].Name {
	case "/" + flashsale.Prefix, "postgresql/" + flashsale.Prefix:
		return str(flashsale.New(db, rdb, opts...))
	case "/" + coupon.Prefix, "postgresql/" + coupon.Prefix:
		return i64(coupon.New(db, rdb, opts...))
	case "/" + giftcard.Prefix, "postgresql/" + giftcard.Prefix:
		return uid(giftcard.New(db, rdb, opts...))
	case "/" + drop.Prefix, "postgresql/" + drop.Prefix:
		return stream(drop.New(db, rdb, opts...))
	case "mysql/" + flashsale.Prefix:
		return str(myflashsale.New(db, rdb, opts...))
	case "mysql/" + coupon.Prefix:
		return i64(mycoupon.New(db, rdb, opts...))
	case "mysql/" + giftcard.Prefix:
		return uid(mygiftcard.New(db, rdb, opts...))
	case "mysql/" + drop.Prefix:
		return stream(mydrop.New(db, rdb, opts...))
	case "sqlite/" + flashsale.Prefix:
		return str(liflashsale.New(db, rdb, opts...))
	case "sqlite/" + coupon.Prefix:
		return i64(licoupon.New(db, rdb, opts...))
	case "sqlite/" + giftcard.Prefix:
		return uid(ligiftcard.New(db, rdb, opts...))
	case "sqlite/" + drop.Prefix:
		return stream(lidrop.New(db, rdb, opts...))
	}
	return nil, fmt.Errorf("no prefix %d of engine %q", p, engine)
}

// NewPool is a pool of at most maxConns connections into schema.
func NewPool(ctx context.Context, url, schema string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	cfg.MaxConns = maxConns
	return pgxpool.NewWithConfig(ctx, cfg)
}

// NewRedis is a client of the run's own redis-server. It never retries a
// command by itself: a retried script is a second attempt, and the
// tester's clients decide about retries.
func NewRedis(addr string, poolSize int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, PoolSize: poolSize, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
}

// quiet drops go-redis's own log lines (reconnects while the tester's
// redis-server is down are expected).
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quiet{}) }
