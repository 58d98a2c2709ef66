package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invgen/invgen/generator"
	invrt "github.com/invgen/invgen/runtime"
)

// sqlLedger is a prefix's ledger for the commands that run a manager
// without its generated package (invgen admin). It runs the statements of
// the prefix's query.sql, which the generated package runs through sqlc,
// over a pool in the simple protocol: keys travel as text whatever the
// key type, and PostgreSQL converts them.
type sqlLedger struct {
	pool   *pgxpool.Pool
	q      map[string]string
	schema string
	zero   itemKey // the smallest key of the key type, for the first page
}

var (
	_ invrt.Ledger[itemKey] = sqlLedger{}
	_ invrt.LayoutStore     = sqlLedger{}
)

// openPool opens the ledger database for the commands, in the simple
// protocol that sqlLedger expects.
func openPool(ctx context.Context, dbURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("-db: %w", err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return pgxpool.NewWithConfig(ctx, cfg)
}

func newSQLLedger(pool *pgxpool.Pool, m *generator.Model, p *generator.Prefix) (sqlLedger, error) {
	q, err := generator.Queries(m, p)
	if err != nil {
		return sqlLedger{}, err
	}
	schema, err := generator.SchemaSQL(m, p)
	if err != nil {
		return sqlLedger{}, err
	}
	var zero itemKey
	switch p.Key {
	case "int64":
		zero = itemKey(strconv.FormatInt(-1<<63, 10))
	case "uuid":
		zero = itemKey(uuid.Nil.String())
	}
	return sqlLedger{pool: pool, q: q, schema: schema, zero: zero}, nil
}

// table is the name of the statement for kind's table: Modification or
// Usage.
func table(kind invrt.Kind) string {
	if kind.Modification() {
		return "Modification"
	}
	return "Usage"
}

func (l sqlLedger) CreateTables(ctx context.Context) error {
	_, err := l.pool.Exec(ctx, l.schema)
	return err
}

func (l sqlLedger) TablesInitialized(ctx context.Context) (ok bool, err error) {
	err = l.pool.QueryRow(ctx, l.q["TablesInitialized"]).Scan(&ok)
	return ok, err
}

func (l sqlLedger) Acquire(context.Context) (invrt.Ledger[itemKey], func(), error) {
	return l, func() {}, nil
}

func (l sqlLedger) Insert(ctx context.Context, e invrt.Entry[itemKey]) error {
	_, err := l.pool.Exec(ctx, l.q["Insert"+table(e.Kind)], string(e.Item), e.Delta, string(e.Kind), e.OpKey, e.Attempt)
	return err
}

func (l sqlLedger) Void(ctx context.Context, e invrt.Entry[itemKey]) (r invrt.Row, err error) {
	var state string
	err = l.pool.QueryRow(ctx, l.q["Void"+table(e.Kind)], string(e.Item), e.Delta, string(e.Kind), e.OpKey, e.Attempt).Scan(&state, &r.Delta, &r.Attempt)
	r.State = invrt.State(state)
	return r, err
}

func (l sqlLedger) Lookup(ctx context.Context, item itemKey, kind invrt.Kind, opKey string) (r invrt.Row, found bool, err error) {
	var state string
	err = l.pool.QueryRow(ctx, l.q["Lookup"+table(kind)], string(item), string(kind), opKey).Scan(&state, &r.Delta, &r.Attempt)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	r.State = invrt.State(state)
	return r, err == nil, err
}

func (l sqlLedger) Totals(ctx context.Context, item itemKey) (t invrt.Totals[itemKey], found bool, err error) {
	var used, buckets int64
	err = l.pool.QueryRow(ctx, l.q["ItemTotals"], string(item)).Scan(&found, &t.Capacity, &used, &buckets)
	t.Item, t.Available, t.Buckets = item, t.Capacity+used, int(buckets)
	return t, found, err
}

func (l sqlLedger) Items(ctx context.Context, after itemKey, first bool, limit int) ([]invrt.Totals[itemKey], error) {
	if first {
		after = l.zero
	}
	rows, err := l.pool.Query(ctx, l.q["ItemTotalsPage"], first, string(after), limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (t invrt.Totals[itemKey], err error) {
		var used, buckets int64
		var item string
		err = row.Scan(&item, &t.Capacity, &used, &buckets)
		t.Item = itemKey(item)
		t.Available, t.Buckets = t.Capacity+used, int(buckets)
		return t, err
	})
}

func (l sqlLedger) Flush(ctx context.Context, b *invrt.Batch) ([]string, error) {
	rows, err := l.pool.Query(ctx, l.q["FlushUsage"], b.Items, b.Deltas, b.Kinds, b.OpKeys, b.Attempts)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (l sqlLedger) layout(row pgx.Row) (rec invrt.LayoutRecord, err error) {
	var shards, maxLen int32
	err = row.Scan(&rec.Namespace, &shards, &rec.Ledger, &rec.KeyType, &maxLen, &rec.Retired, &rec.Version)
	rec.Shards, rec.MaxKeyLen = int(shards), int(maxLen)
	return rec, err
}

func (l sqlLedger) RecordLayout(ctx context.Context, lay invrt.Layout) (invrt.LayoutRecord, error) {
	return l.layout(l.pool.QueryRow(ctx, l.q["RecordLayout"], lay.Namespace, lay.Shards, lay.Ledger, lay.KeyType, lay.MaxKeyLen))
}

func (l sqlLedger) LoadLayout(ctx context.Context) (invrt.LayoutRecord, bool, error) {
	rec, err := l.layout(l.pool.QueryRow(ctx, l.q["LoadLayout"]))
	if errors.Is(err, pgx.ErrNoRows) {
		return rec, false, nil
	}
	return rec, err == nil, err
}

func (l sqlLedger) RetireLayout(ctx context.Context, version int64) (bool, error) {
	tag, err := l.pool.Exec(ctx, l.q["RetireLayout"], version)
	return tag.RowsAffected() == 1, err
}

func (l sqlLedger) ReplaceLayout(ctx context.Context, version int64, lay invrt.Layout) (bool, error) {
	tag, err := l.pool.Exec(ctx, l.q["ReplaceLayout"], lay.Namespace, lay.Shards, lay.Ledger, lay.KeyType, lay.MaxKeyLen, version)
	return tag.RowsAffected() == 1, err
}

// itemKey is an item key of any key type, as text: the runtime takes the
// prefix's key type from the spec (Config.KeyType), not from the Go type.
type itemKey string

// textCodec checks an item key given as text by the prefix's key type and
// gives its Redis form, as the generated package's codec does.
type textCodec struct {
	keyType string
	str     invrt.StringCodec
}

func (c textCodec) Encode(key itemKey) (string, error) {
	k := string(key)
	switch c.keyType {
	case "int64":
		v, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			return "", fmt.Errorf("%w: item key %q is not an int64", invrt.ErrInvalidArgument, k)
		}
		return invrt.Int64Codec{}.Encode(v)
	case "uuid":
		v, err := uuid.Parse(k)
		if err != nil {
			return "", fmt.Errorf("%w: item key %q is not a UUID", invrt.ErrInvalidArgument, k)
		}
		return invrt.UUIDCodec{}.Encode(v)
	}
	return c.str.Encode(k)
}

func (c textCodec) Decode(s string) (itemKey, error) { return itemKey(s), nil }
