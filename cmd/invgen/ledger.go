package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/invgen/invgen/generator"
	invrt "github.com/invgen/invgen/runtime"
)

// sqlLedger is a prefix's ledger for the commands that run a manager
// without its generated package (invgen admin, flush, adopt). It runs the
// statements of the prefix's query.sql (and direct.sql), which the
// generated package runs through sqlc, on the spec's engine: keys travel
// as text whatever the key type, and the database converts them.
type sqlLedger struct {
	db     ledgerDB
	q      map[string]string
	schema string
	zero   itemKey // the smallest key of the key type, for the first page
	items  string  // the query that counts the items
}

var (
	_ invrt.Ledger[itemKey] = sqlLedger{}
	_ invrt.LayoutStore     = sqlLedger{}
)

func newSQLLedger(db ledgerDB, m *generator.Model, p *generator.Prefix) (sqlLedger, error) {
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
	items := "SELECT COUNT(DISTINCT item_id) FROM " + p.ModTable + " WHERE state = 'committed'"
	return sqlLedger{db: db, q: q, schema: schema, zero: zero, items: items}, nil
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
	if l.db.engine() == "postgresql" {
		_, err := l.db.exec(ctx, l.schema)
		return err
	}
	for _, stmt := range invrt.SQLStatements(l.schema) {
		if _, err := l.db.exec(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

func (l sqlLedger) TablesInitialized(ctx context.Context) (bool, error) {
	var ok any
	err := l.db.queryRow(ctx, l.q["TablesInitialized"]).Scan(&ok)
	return truthy(ok), err
}

func (l sqlLedger) Acquire(context.Context) (invrt.Ledger[itemKey], func(), error) {
	return l, func() {}, nil
}

func (l sqlLedger) Insert(ctx context.Context, e invrt.Entry[itemKey]) error {
	_, err := l.db.exec(ctx, l.q["Insert"+table(e.Kind)], string(e.Item), e.Delta, string(e.Kind), e.OpKey, e.Attempt)
	return err
}

func (l sqlLedger) Void(ctx context.Context, e invrt.Entry[itemKey]) (r invrt.Row, err error) {
	args := []any{string(e.Item), e.Delta, string(e.Kind), e.OpKey, e.Attempt}
	if l.db.engine() == "mysql" {
		// No RETURNING: write, then read the row that exists.
		if _, err := l.db.exec(ctx, l.q["Void"+table(e.Kind)], args...); err != nil {
			return r, err
		}
		r, found, err := l.Lookup(ctx, e.Item, e.Kind, e.OpKey)
		if err == nil && !found {
			err = errors.New("invgen: the row of a void write is missing")
		}
		return r, err
	}
	var state string
	err = l.db.queryRow(ctx, l.q["Void"+table(e.Kind)], args...).Scan(&state, &r.Delta, &r.Attempt)
	r.State = invrt.State(state)
	return r, err
}

func (l sqlLedger) Lookup(ctx context.Context, item itemKey, kind invrt.Kind, opKey string) (r invrt.Row, found bool, err error) {
	var state string
	err = l.db.queryRow(ctx, l.q["Lookup"+table(kind)], string(item), string(kind), opKey).Scan(&state, &r.Delta, &r.Attempt)
	if isNoRows(err) {
		return r, false, nil
	}
	r.State = invrt.State(state)
	return r, err == nil, err
}

func (l sqlLedger) Totals(ctx context.Context, item itemKey) (t invrt.Totals[itemKey], found bool, err error) {
	var used, buckets int64
	var ok any
	err = l.db.queryRow(ctx, l.q["ItemTotals"], string(item)).Scan(&ok, &t.Capacity, &used, &buckets)
	t.Item, t.Available, t.Buckets = item, t.Capacity+used, int(buckets)
	return t, truthy(ok), err
}

func (l sqlLedger) Items(ctx context.Context, after itemKey, first bool, limit int) ([]invrt.Totals[itemKey], error) {
	if first {
		after = l.zero
	}
	rows, err := l.db.query(ctx, l.q["ItemTotalsPage"], first, string(after), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []invrt.Totals[itemKey]
	for rows.Next() {
		var t invrt.Totals[itemKey]
		var used, buckets int64
		var item string
		if err := rows.Scan(&item, &t.Capacity, &used, &buckets); err != nil {
			return nil, err
		}
		t.Item = itemKey(item)
		t.Available, t.Buckets = t.Capacity+used, int(buckets)
		out = append(out, t)
	}
	err = rows.Err()
	rows.Close() // before the count: SQLite may have one connection
	if err != nil {
		return nil, err
	}
	if ip := itemProgressOf(ctx); ip != nil {
		ip.page(first, func() (n int64, err error) {
			err = l.db.queryRow(ctx, l.items).Scan(&n)
			return n, err
		}, len(out))
	}
	return out, nil
}

func (l sqlLedger) Flush(ctx context.Context, b *invrt.Batch) ([]string, error) {
	var (
		rows rows
		err  error
	)
	if l.db.engine() == "postgresql" {
		rows, err = l.db.query(ctx, l.q["FlushUsage"], b.Items, b.Deltas, b.Kinds, b.OpKeys, b.Attempts)
	} else {
		// The batch as JSON: the insert, then the entries another attempt holds.
		var batch string
		if batch, err = b.JSON(); err != nil {
			return nil, err
		}
		if _, err = l.db.exec(ctx, l.q["FlushInsert"], batch); err != nil {
			return nil, err
		}
		rows, err = l.db.query(ctx, l.q["FlushConflicts"], batch)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []string
	for rows.Next() {
		var item string
		if err := rows.Scan(&item); err != nil {
			return nil, err
		}
		items = append(items, item)
	}
	return items, rows.Err()
}

func (l sqlLedger) layout(row scanner) (rec invrt.LayoutRecord, err error) {
	var shards, maxLen int64
	var retired any
	err = row.Scan(&rec.Namespace, &shards, &rec.Ledger, &rec.KeyType, &maxLen, &retired, &rec.Version)
	rec.Shards, rec.MaxKeyLen, rec.Retired = int(shards), int(maxLen), truthy(retired)
	return rec, err
}

func (l sqlLedger) RecordLayout(ctx context.Context, lay invrt.Layout) (invrt.LayoutRecord, error) {
	args := []any{lay.Namespace, lay.Shards, lay.Ledger, lay.KeyType, lay.MaxKeyLen}
	if l.db.engine() == "mysql" {
		if _, err := l.db.exec(ctx, l.q["RecordLayout"], args...); err != nil {
			return invrt.LayoutRecord{}, err
		}
		return l.layout(l.db.queryRow(ctx, l.q["LoadLayout"]))
	}
	return l.layout(l.db.queryRow(ctx, l.q["RecordLayout"], args...))
}

func (l sqlLedger) LoadLayout(ctx context.Context) (invrt.LayoutRecord, bool, error) {
	rec, err := l.layout(l.db.queryRow(ctx, l.q["LoadLayout"]))
	if isNoRows(err) {
		return rec, false, nil
	}
	if err != nil && l.db.engine() != "postgresql" {
		// As the generated packages do: no tables, no record.
		if ok, terr := l.TablesInitialized(ctx); terr == nil && !ok {
			return invrt.LayoutRecord{}, false, nil
		}
	}
	return rec, err == nil, err
}

func (l sqlLedger) RetireLayout(ctx context.Context, version int64) (bool, error) {
	n, err := l.db.exec(ctx, l.q["RetireLayout"], version)
	return n == 1, err
}

func (l sqlLedger) ReplaceLayout(ctx context.Context, version int64, lay invrt.Layout) (bool, error) {
	n, err := l.db.exec(ctx, l.q["ReplaceLayout"], lay.Namespace, lay.Shards, lay.Ledger, lay.KeyType, lay.MaxKeyLen, version)
	return n == 1, err
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

// holdLedger is the sqlLedger of a prefix with holds (generator.Prefix.Holds):
// the CLI's Reconcile and refreshes settle a pending Cancel as the
// generated package does, ending the hold rather than voiding its release.
type holdLedger struct{ sqlLedger }

var _ invrt.HoldStore[itemKey] = holdLedger{}

// ledgerFor returns l as the Core's ledger of p: with holds when p has them.
func ledgerFor(l sqlLedger, p *generator.Prefix) invrt.Ledger[itemKey] {
	if p.Holds() {
		return holdLedger{l}
	}
	return l
}

func (l holdLedger) Acquire(context.Context) (invrt.Ledger[itemKey], func(), error) {
	return l, func() {}, nil
}

func (l holdLedger) InsertHold(ctx context.Context, e invrt.Entry[itemKey], ttl time.Duration) error {
	d, ok := l.db.(sqlDB)
	if !ok {
		// PostgreSQL: the hold and its purchase row in one statement.
		_, err := l.db.exec(ctx, l.q["InsertHold"], string(e.Item), e.Delta, e.OpKey, e.Attempt, ttl.Milliseconds())
		return err
	}
	// The engines of database/sql: in one transaction, as the generated
	// packages write them.
	return d.inTx(ctx, func(tx sqlTx) error {
		if _, err := tx.exec(ctx, l.q["InsertUsage"], string(e.Item), e.Delta, string(e.Kind), e.OpKey, e.Attempt); err != nil {
			return err
		}
		_, err := tx.exec(ctx, l.q["InsertHold"], string(e.Item), e.OpKey, -e.Delta, ttl.Milliseconds())
		return err
	})
}

func (l holdLedger) EndHold(ctx context.Context, e invrt.Entry[itemKey]) (bool, error) {
	if d, ok := l.db.(sqlDB); ok {
		// The hold first (its row's lock), then its release row.
		ended := false
		err := d.inTx(ctx, func(tx sqlTx) error {
			n, err := tx.exec(ctx, l.q["EndHold"], string(e.Item), e.OpKey)
			if err != nil || n == 0 {
				return err
			}
			var units int64
			if err := tx.queryRow(ctx, l.q["HoldUnits"], string(e.Item), e.OpKey).Scan(&units); err != nil {
				return err
			}
			ended = true
			_, err = tx.exec(ctx, l.q["InsertUsage"], string(e.Item), units, string(invrt.KindRelease), e.OpKey, e.Attempt)
			return err
		})
		return ended && err == nil, err
	}
	rows, err := l.db.query(ctx, l.q["EndHold"], string(e.Item), e.OpKey, e.Attempt)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	ended := rows.Next()
	for rows.Next() {
	}
	return ended, rows.Err()
}

func (l holdLedger) ConfirmHold(ctx context.Context, item itemKey, holdKey string) (bool, error) {
	n, err := l.db.exec(ctx, l.q["ConfirmHold"], string(item), holdKey)
	return n == 1, err
}

func (l holdLedger) LookupHold(ctx context.Context, item itemKey, holdKey string) (h invrt.HoldRow, found bool, err error) {
	var state string
	var deadline, now int64
	err = l.db.queryRow(ctx, l.q["LookupHold"], string(item), holdKey).Scan(&h.Units, &deadline, &state, &now)
	if isNoRows(err) {
		return h, false, nil
	}
	h.State, h.Deadline, h.Now = invrt.HoldState(state), time.UnixMilli(deadline), time.UnixMilli(now)
	return h, err == nil, err
}

func (l holdLedger) HeldUnits(ctx context.Context, item itemKey) (n int64, err error) {
	err = l.db.queryRow(ctx, l.q["HeldUnits"], string(item)).Scan(&n)
	return n, err
}

func (l holdLedger) DueHolds(ctx context.Context, limit int) ([]invrt.DueHold[itemKey], error) {
	rows, err := l.db.query(ctx, l.q["DueHolds"], limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []invrt.DueHold[itemKey]
	for rows.Next() {
		var item, key string
		if err := rows.Scan(&item, &key); err != nil {
			return nil, err
		}
		out = append(out, invrt.DueHold[itemKey]{Item: itemKey(item), HoldKey: key})
	}
	return out, rows.Err()
}
