package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/invgen/invgen/generator"
	invrt "github.com/invgen/invgen/runtime"
)

const adminDoc = `Admin looks at and repairs the inventory of a prefix of the spec, with the
same protocol as the application's generated package, without writing Go:

  list      PREFIX                      every item: stock in Redis, per the ledger, capacity
  get       PREFIX ITEM                 one item
  init      PREFIX ITEM QTY [BUCKETS]   create an item (BUCKETS: stock buckets, default the spec's)
  adjust    PREFIX ITEM DELTA OPKEY     restock (+) or correct (-) under an op key
  audit     PREFIX                      items whose Redis stock differs from the ledger (exit 3 if any)
  reconcile PREFIX                      settle changes whose process died between Redis and SQL
  refresh   PREFIX ITEM|-all            set Redis to what the ledger says, one item or all
  lag       PREFIX                      changes not yet in the ledger: journal, and streams (stream ledger)
  drain     PREFIX                      reconcile and flush until nothing is pending (before a layout switch)
  redis     PREFIX                      each Redis server's eviction policy and persistence, and what they guarantee (exit 3 if one may evict)
  holds     PREFIX ITEM [HOLDKEY]       units on hold of an item, or one hold: units, state, deadline (exit 3 if none)
  expire    PREFIX                      end the holds past their deadline now and give their units back

Output is a table, or JSON with -json. On a terminal, refresh -all and drain
show their progress (done of total, rate, time left), cleared when they end;
never with -json or when the output is not a terminal. Exit codes: 0 done; 1 a failure (Redis
or SQL unreachable, a layout mismatch); 2 bad arguments or spec; 3 the
inventory said no: an item not found or already there, not enough stock, an
op key that took nothing, drift found by audit, or changes still pending
after drain.
-redis names one Redis server or a Redis Cluster (by its seeds).`

// exitNo is the inventory's refusal: not found, short, drift.
const exitNo = 3

// runAdmin is `invgen admin`.
func runAdmin(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("invgen admin", flag.ContinueOnError)
	fset.SetOutput(stderr)
	file := fset.String("f", "inventory.yaml", "the spec `FILE`")
	redisURL := fset.String("redis", envOr("INVGEN_REDIS_URL", "redis://127.0.0.1:6379/0"), redisURLHelp)
	dbURL := fset.String("db", "", dbFlagDoc)
	namespace := fset.String("namespace", "", "Redis `namespace` replacing the spec's")
	asJSON := fset.Bool("json", false, "print JSON instead of a table")
	timeout := fset.Duration("timeout", time.Minute, "give up after this long")
	fset.Usage = func() {
		fmt.Fprintf(stderr, "Usage: invgen admin [flags] VERB PREFIX [ARGS]\n\n%s\n\nFlags:\n", adminDoc)
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	rest := fset.Args()
	if len(rest) < 2 {
		fset.Usage()
		return exitUsage
	}
	verb, prefix, rest := rest[0], rest[1], rest[2:]
	want, ok := adminArgs[verb]
	if !ok {
		fmt.Fprintf(stderr, "invgen admin: unknown verb %q\n", verb)
		return exitUsage
	}
	if len(rest) < want[0] || len(rest) > want[1] {
		fmt.Fprintf(stderr, "invgen admin %s: %d arguments after the prefix, want %d to %d (invgen admin -h)\n", verb, len(rest), want[0], want[1])
		return exitUsage
	}
	if _, err := parseRedisURL(*redisURL); err != nil {
		fmt.Fprintf(stderr, "invgen admin: -redis: %v\n", err)
		return exitUsage
	}
	if err := checkNamespace(*namespace); err != nil {
		fmt.Fprintf(stderr, "invgen admin: %v\n", err)
		return exitUsage
	}
	m, code := loadModel(*file, stderr)
	if code != exitOK {
		return code
	}
	var p *generator.Prefix
	for _, q := range m.Prefixes {
		if q.Name == prefix {
			p = q
		}
	}
	if p == nil {
		fmt.Fprintf(stderr, "invgen admin: %s has no prefix %q\n", *file, prefix)
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	mode := dbWrite
	if readOnlyVerbs[verb] {
		mode = dbRead
	}
	core, closeAll, err := openCoreMode(ctx, m, p, *namespace, *dbURL, *redisURL, mode)
	if err != nil {
		fmt.Fprintf(stderr, "invgen admin: %v\n", err)
		if errors.Is(err, errBadDB) || errors.Is(err, invrt.ErrInvalidArgument) {
			return exitUsage
		}
		return exitFail
	}
	defer closeAll()
	a := admin{ctx: ctx, core: core, p: p, out: stdout, json: *asJSON}
	if _, err := a.do(verb, rest); err != nil {
		fmt.Fprintf(stderr, "invgen admin %s %s: %v\n", verb, prefix, err)
		switch {
		case errors.Is(err, invrt.ErrInvalidArgument), errors.Is(err, invrt.ErrNotSupported):
			return exitUsage
		case errors.Is(err, invrt.ErrNotFound), errors.Is(err, invrt.ErrInsufficientStock), errors.Is(err, invrt.ErrHoldNotFound),
			errors.Is(err, invrt.ErrOverLimit), errors.Is(err, invrt.ErrAlreadyExists), errors.Is(err, errFound):
			return exitNo
		}
		return exitFail
	}
	return exitOK
}

// adminArgs: how many arguments each verb takes after the prefix.
var adminArgs = map[string][2]int{
	"list": {0, 0}, "get": {1, 1}, "init": {2, 3}, "adjust": {3, 3}, "audit": {0, 0},
	"reconcile": {0, 0}, "refresh": {1, 1}, "lag": {0, 0}, "drain": {0, 0}, "redis": {0, 0},
	"holds": {1, 2}, "expire": {0, 0},
}

// readOnlyVerbs only read the ledger: they open a SQLite ledger
// read-only. (get and list may put an item Redis forgot back from the
// ledger, as the application's Get does; that writes Redis only.)
var readOnlyVerbs = map[string]bool{"list": true, "get": true, "audit": true, "lag": true, "redis": true, "holds": true}

// checkNamespace refuses a -namespace the runtime would refuse (what may
// stand before a hash tag in a key: letters, digits, _ - . :, at most 64
// bytes), so that a bad one exits 2 before anything is opened; "" keeps
// the spec's.
func checkNamespace(ns string) error {
	if ns == "" {
		return nil
	}
	for _, r := range ns {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '_' || r == '-' || r == '.' || r == ':'
		if !ok {
			return fmt.Errorf("-namespace %q: %q is not allowed (letters, digits, _ - . : only)", ns, r)
		}
	}
	if len(ns) > 64 {
		return fmt.Errorf("-namespace %q is over 64 bytes", ns)
	}
	return nil
}

// errFound: audit found drift, or drain left changes pending.
var errFound = errors.New("found")

// openCore builds the manager of prefix p from the spec, over the ledger
// database at dbURL and the Redis at redisURL.
func openCore(ctx context.Context, m *generator.Model, p *generator.Prefix, ns, dbURL, redisURL string) (*invrt.Core[itemKey], func(), error) {
	return openCoreMode(ctx, m, p, ns, dbURL, redisURL, dbWrite)
}

// openCoreMode is openCore opening the ledger as mode says.
func openCoreMode(ctx context.Context, m *generator.Model, p *generator.Prefix, ns, dbURL, redisURL string, mode dbMode) (*invrt.Core[itemKey], func(), error) {
	pool, err := openLedger(ctx, m.Engine, dbURL, mode)
	if err != nil {
		return nil, nil, err
	}
	rdb, err := openRedis(ctx, redisURL)
	if err != nil {
		pool.close()
		return nil, nil, err
	}
	l, err := newSQLLedger(pool, m, p)
	if err != nil {
		pool.close()
		rdb.Close()
		return nil, nil, err
	}
	if ns == "" {
		ns = m.Namespace
	}
	maxLen := p.MaxKeyLen
	if p.Key != "string" {
		maxLen = 0
	}
	core, err := invrt.NewCore(invrt.Config[itemKey]{
		Namespace: ns, Prefix: p.Name, Shards: p.Shards, Buckets: p.Buckets,
		Codec: textCodec{keyType: p.Key, str: invrt.StringCodec{MaxLen: max(p.MaxKeyLen, 1)}}, Ledger: ledgerFor(l, p), Layouts: l,
		Redis: rdb, Stream: p.Ledger == "stream", KeyType: p.Key, MaxKeyLen: maxLen, DB: pool.handle(),
	}, invrt.WithNamespace(ns))
	if err != nil {
		pool.close()
		rdb.Close()
		return nil, nil, err
	}
	return core, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		core.Close(cctx)
		rdb.Close()
		pool.close()
	}, nil
}

// admin runs one verb and prints its result.
type admin struct {
	ctx  context.Context
	core *invrt.Core[itemKey]
	p    *generator.Prefix
	out  io.Writer
	json bool
}

// itemRow is one item as list and get show it.
type itemRow struct {
	Item     string `json:"item"`
	Redis    int64  `json:"redis"`
	Ledger   int64  `json:"ledger"`
	Capacity int64  `json:"capacity"`
	Buckets  int    `json:"buckets"`
}

func (a admin) do(verb string, args []string) (any, error) {
	ctx, c := a.ctx, a.core
	switch verb {
	case "list":
		items, err := c.ListItems(ctx)
		if err != nil {
			return nil, err
		}
		rows := make([]itemRow, len(items))
		for i, it := range items {
			rows[i] = itemRow{Item: string(it.Item), Redis: it.Redis, Ledger: it.Ledger, Capacity: it.Capacity, Buckets: it.Buckets}
		}
		return rows, a.print(rows, itemTable(rows))
	case "get":
		it, err := c.Item(ctx, itemKey(args[0]))
		if err != nil {
			return nil, err
		}
		row := itemRow{Item: string(it.Item), Redis: it.Redis, Ledger: it.Ledger, Capacity: it.Capacity, Buckets: it.Buckets}
		return row, a.print(row, itemTable([]itemRow{row}))
	case "init":
		qty, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: quantity %q is not a number", invrt.ErrInvalidArgument, args[1])
		}
		buckets := max(a.p.Buckets, 1)
		if len(args) == 3 {
			if buckets, err = strconv.Atoi(args[2]); err != nil {
				return nil, fmt.Errorf("%w: buckets %q is not a number", invrt.ErrInvalidArgument, args[2])
			}
		}
		if err := c.InitBuckets(ctx, itemKey(args[0]), qty, buckets); err != nil {
			return nil, err
		}
		return a.do("get", args[:1])
	case "adjust":
		delta, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: delta %q is not a number", invrt.ErrInvalidArgument, args[1])
		}
		r, err := c.Adjust(ctx, itemKey(args[0]), delta, args[2])
		if err != nil {
			return nil, err
		}
		return r, a.print(r, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "item\tdelta\tavailable\treplayed\n%s\t%+d\t%d\t%v\n", args[0], r.Delta, r.Available, r.Replayed)
		})
	case "audit":
		rep, err := c.Audit(ctx)
		if err != nil {
			return nil, err
		}
		err = a.print(rep, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "items\t%d\ndrifting\t%d\nexpired journal entries\t%d\nflush backlog\t%d\n", rep.Items, len(rep.Drift), rep.Expired, rep.Flush.Entries)
			if len(rep.Drift) > 0 {
				fmt.Fprintf(w, "\nitem\tredis\tledger\tpending\tmissing\tstale\tcorrupt\n")
				for _, d := range rep.Drift {
					fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%v\t%v\t%s\n", d.Item, d.Redis, d.Ledger, d.Pending, d.Missing, d.Stale, d.Corrupt)
				}
			}
		})
		if err == nil && len(rep.Drift) > 0 {
			err = fmt.Errorf("%w: %d items drift; refresh them (invgen admin refresh %s -all)", errFound, len(rep.Drift), a.p.Name)
		}
		return rep, err
	case "reconcile":
		rep, err := c.Reconcile(ctx)
		if err != nil {
			return nil, err
		}
		return rep, a.print(rep, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "expired entries\t%d\nconfirmed\t%d\nvoided\t%d\nunits given back\t%d\ncorrupt\t%d\n", rep.Seen, rep.Confirmed, rep.Voided, rep.Units, len(rep.Corrupt))
		})
	case "refresh":
		if args[0] == "-all" {
			pctx, bar := withItemProgress(ctx, a.out, a.json, "refresh "+a.p.Name)
			n, err := c.RefreshAll(pctx)
			bar.finish()
			if err != nil {
				return nil, err
			}
			return n, a.print(map[string]int{"refreshed": n}, func(w *tabwriter.Writer) { fmt.Fprintf(w, "refreshed\t%d\n", n) })
		}
		if err := c.Refresh(ctx, itemKey(args[0])); err != nil {
			return nil, err
		}
		return a.do("get", args)
	case "lag":
		lag, err := a.lag()
		if err != nil {
			return nil, err
		}
		return lag, a.print(lag, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "journal entries\t%d\nstream entries\t%d\noldest\t%v\n", lag.Journal, lag.Stream, time.Duration(lag.OldestMS)*time.Millisecond)
		})
	case "redis":
		return a.redisCheck()
	case "holds":
		return a.holds(args)
	case "expire":
		n, err := c.ExpireHolds(ctx)
		if err != nil {
			return nil, err
		}
		return n, a.print(map[string]int{"expired": n}, func(w *tabwriter.Writer) { fmt.Fprintf(w, "expired\t%d\n", n) })
	case "drain":
		lag, err := a.drain()
		if err != nil {
			return nil, err
		}
		err = a.print(lag, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "journal entries\t%d\nstream entries\t%d\n", lag.Journal, lag.Stream)
		})
		if err == nil && lag.Journal+lag.Stream > 0 {
			err = fmt.Errorf("%w: changes still pending; their leases have not passed yet, or the ledger fails: run drain again", errFound)
		}
		return lag, err
	}
	return nil, fmt.Errorf("%w: unknown verb %q", invrt.ErrInvalidArgument, verb)
}

// lagRow is what lag and drain show.
type lagRow struct {
	Journal  int64 `json:"journal_entries"`
	Stream   int64 `json:"stream_entries"`
	OldestMS int64 `json:"oldest_ms"`
}

func (a admin) lag() (lagRow, error) {
	var r lagRow
	n, err := a.core.JournalLen(a.ctx)
	if err != nil {
		return r, err
	}
	r.Journal = n
	if a.p.Ledger == "stream" {
		lag, err := a.core.FlushLag(a.ctx)
		if err != nil {
			return r, err
		}
		r.Stream, r.OldestMS = lag.Entries, lag.Oldest.Milliseconds()
	}
	return r, nil
}

// drain settles what is pending: it flushes the streams and reconciles
// the journal until both are empty or no progress is made for a lease.
func (a admin) drain() (lagRow, error) {
	deadline := time.Now().Add(15 * time.Second)
	var bar *progress
	defer func() { bar.finish() }()
	for first := true; ; first = false {
		if a.p.Ledger == "stream" {
			if _, err := a.core.Flush(a.ctx); err != nil {
				return lagRow{}, err
			}
		}
		if _, err := a.core.Reconcile(a.ctx); err != nil {
			return lagRow{}, err
		}
		lag, err := a.lag()
		if err != nil || lag.Journal+lag.Stream == 0 || time.Now().After(deadline) {
			return lag, err
		}
		if first {
			// What the first round left: the changes whose leases have
			// not passed yet, or that the ledger fails.
			bar = newProgress(a.out, a.json, lag.Journal+lag.Stream, "drain "+a.p.Name, "changes")
		}
		bar.set(bar.max() - (lag.Journal + lag.Stream))
		select {
		case <-a.ctx.Done():
			return lag, a.ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// itemTable prints items as a table.
func itemTable(rows []itemRow) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "item\tredis\tledger\tcapacity\tbuckets\n")
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n", r.Item, r.Redis, r.Ledger, r.Capacity, r.Buckets)
		}
	}
}

// print writes v as JSON with -json, else the table that table writes.
func (a admin) print(v any, table func(*tabwriter.Writer)) error {
	if a.json {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
	table(w)
	return w.Flush()
}

// holdRow is a hold as holds shows it.
type holdRow struct {
	Item     string    `json:"item"`
	HoldKey  string    `json:"hold_key"`
	Units    int64     `json:"units"`
	State    string    `json:"state"`
	Deadline time.Time `json:"deadline"`
	// Left is the time until the deadline on the ledger database's clock
	// (negative once it passed).
	Left time.Duration `json:"left_ns"`
}

// holds is `admin holds PREFIX ITEM [HOLDKEY]`.
func (a admin) holds(args []string) (any, error) {
	id := itemKey(args[0])
	if len(args) == 1 {
		n, err := a.core.Held(a.ctx, id)
		if err != nil {
			return nil, err
		}
		out := map[string]any{"item": args[0], "held": n}
		return out, a.print(out, func(w *tabwriter.Writer) { fmt.Fprintf(w, "item\theld\n%s\t%d\n", args[0], n) })
	}
	h, found, err := a.core.LookupHold(a.ctx, id, args[1])
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: item %s has no hold %q", invrt.ErrHoldNotFound, args[0], args[1])
	}
	row := holdRow{Item: args[0], HoldKey: args[1], Units: h.Units, State: string(h.State), Deadline: h.Deadline.UTC(), Left: h.Deadline.Sub(h.Now)}
	return row, a.print(row, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "item\thold key\tunits\tstate\tdeadline\tleft\n%s\t%s\t%d\t%s\t%s\t%v\n",
			row.Item, row.HoldKey, row.Units, row.State, row.Deadline.Format(time.RFC3339Nano), row.Left.Round(time.Millisecond))
	})
}
