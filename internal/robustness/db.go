package robustness

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is the ledger connection the managers under test get. It passes every
// statement to a real pgxpool.Pool, exactly as the pool's own Exec, Query
// and QueryRow do, and adds two things: a failpoint that delays a
// statement before it is sent (a slow network or a descheduled client,
// inside a step), and a log of which calls had their ledger insert
// acquire a connection and go out, so the validator can tell an insert
// that never reached PostgreSQL from one whose answer was lost.
type DB struct {
	// Pool is the ledger of the postgresql engine; SQL that of the mysql
	// and sqlite engines (engine.go), whose generated packages take the
	// database/sql methods.
	Pool *pgxpool.Pool
	SQL  *sql.DB

	mu    sync.Mutex
	rng   *rand.Rand
	delay float64 // probability of a delay before a statement
	sent  map[string]bool
	ins   map[string]insertLog // PostgreSQL: what became of each call's inserts
	fly   atomic.Int64         // inserts on their way
}

// insertLog is what the wrapper saw of one call's ledger inserts.
type insertLog struct {
	sent    int64  // when the first went out on a connection (unix ns)
	refused bool   // the server refused one (refusedByServer)
	refusal string // its error
}

// NewDB wraps pool; seed drives its failpoint.
func NewDB(pool *pgxpool.Pool, seed uint64, delay float64) *DB {
	return &DB{Pool: pool, rng: rand.New(rand.NewPCG(seed, 7)), delay: delay, sent: map[string]bool{}, ins: map[string]insertLog{}}
}

// NewSQLDB wraps db, of the mysql or sqlite engine.
func NewSQLDB(db *sql.DB, seed uint64, delay float64) *DB {
	return &DB{SQL: db, rng: rand.New(rand.NewPCG(seed, 7)), delay: delay, sent: map[string]bool{}}
}

type callKey struct{}

// WithCall tags ctx with the id of the tester's call it serves.
func WithCall(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, callKey{}, id)
}

func callOf(ctx context.Context) string {
	id, _ := ctx.Value(callKey{}).(string)
	return id
}

// InsertSent reports whether the call's ledger insert went out on a
// connection.
func (d *DB) InsertSent(call string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sent[call]
}

func (d *DB) pause(ctx context.Context) {
	d.mu.Lock()
	var wait time.Duration
	if d.delay > 0 && d.rng.Float64() < d.delay {
		wait = time.Duration(d.rng.IntN(30_000)) * time.Microsecond
	}
	d.mu.Unlock()
	if wait == 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Exec implements the generated packages' DBTX, as pgxpool.Pool.Exec does.
func (d *DB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	d.pause(ctx)
	c, err := d.Pool.Acquire(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer c.Release()
	id := callOf(ctx)
	if id == "" || !isInsert(sql) {
		return c.Exec(ctx, sql, args...)
	}
	d.mu.Lock()
	d.sent[id] = true
	if l := d.ins[id]; l.sent == 0 {
		l.sent = time.Now().UnixNano()
		d.ins[id] = l
	}
	d.mu.Unlock()
	d.fly.Add(1)
	tag, err := c.Exec(ctx, sql, args...)
	d.fly.Add(-1)
	if refusedByServer(err) {
		d.mu.Lock()
		l := d.ins[id]
		l.refused, l.refusal = true, err.Error()
		d.ins[id] = l
		d.mu.Unlock()
	}
	return tag, err
}

// InFlight is the number of the parent's ledger inserts on their way.
func (d *DB) InFlight() int64 { return d.fly.Load() }

// Inserts reports what became of the call's ledger inserts
// (PostgreSQL).
func (d *DB) Inserts(call string) insertLog {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ins[call]
}

// isInsert tells the committed-row inserts (InsertUsage and
// InsertModification, sqlc's named queries, and those of holds: InsertHold
// writes a hold's purchase row, EndHold the release of its end) from every
// other statement.
func isInsert(sql string) bool {
	for _, q := range [...]string{"InsertUsage", "InsertModification", "InsertHold", "EndHold"} {
		if strings.HasPrefix(sql, "-- name: "+q+" ") {
			return true
		}
	}
	return false
}

// Query implements DBTX.
func (d *DB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	d.pause(ctx)
	if id := callOf(ctx); id != "" && isInsert(sql) {
		// EndHold: a statement that writes a release row, sent as a query.
		d.mu.Lock()
		d.sent[id] = true
		if l := d.ins[id]; l.sent == 0 {
			l.sent = time.Now().UnixNano()
			d.ins[id] = l
		}
		d.mu.Unlock()
	}
	return d.Pool.Query(ctx, sql, args...)
}

// QueryRow implements DBTX.
func (d *DB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	d.pause(ctx)
	return d.Pool.QueryRow(ctx, sql, args...)
}
