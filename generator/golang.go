package generator

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/dave/jennifer/jen"
	"golang.org/x/tools/imports"

	invrt "github.com/invgen/invgen/runtime"
)

// Import paths that generated code uses, with fixed names so the output
// never depends on emission order.
const (
	runtimePath = "github.com/invgen/invgen/runtime"
	redisPath   = "github.com/redis/go-redis/v9"
	uuidPath    = "github.com/google/uuid"
	pgxPath     = "github.com/jackc/pgx/v5"
	pgxpoolPath = "github.com/jackc/pgx/v5/pgxpool"
	sqlPath     = "database/sql"
	mysqlPath   = "github.com/go-sql-driver/mysql"
	sqlitePath  = "github.com/ncruces/go-sqlite3"
)

// engineNames are the engines as the generated docs name them.
var engineNames = map[string]string{"postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB", "sqlite": "SQLite"}

func rt(name string) *jen.Statement { return jen.Qual(runtimePath, name) }

// keyType is the Go type of a prefix's item keys.
func keyType(p *Prefix) jen.Code {
	switch p.Key {
	case "int64":
		return jen.Int64()
	case "uuid":
		return jen.Qual(uuidPath, "UUID")
	}
	return jen.String()
}

func codec(p *Prefix) jen.Code {
	switch p.Key {
	case "int64":
		return rt("Int64Codec").Values()
	case "uuid":
		return rt("UUIDCodec").Values()
	}
	return rt("StringCodec").Values(jen.Dict{jen.Id("MaxLen"): jen.Id("MaxKeyLen")})
}

// maxKeyLen is what New passes as the layout's max key length.
func maxKeyLen(p *Prefix) jen.Code {
	if p.Key == "string" {
		return jen.Id("MaxKeyLen")
	}
	return jen.Lit(0)
}

// method is one delegating method of Manager: its doc, parameters after
// ctx, and results. The runtime's method of the same name does the work.
type method struct {
	name    string
	doc     string
	params  []param
	results []jen.Code
}

type param struct {
	name string
	typ  jen.Code
}

func managerMethods(p *Prefix) []method {
	id := param{"id", jen.Id("Key")}
	res := []jen.Code{jen.Id("Result"), jen.Error()}
	// When a purchase is recorded and a return goes on sale.
	decrDoc := "Decr takes n units of item id for the purchase opKey, in one atomic Redis step, and\n" +
		"returns once its usage row is committed. It returns ErrInsufficientStock, and takes\n" +
		"nothing, when fewer than n are available. Repeating it with the same op key returns\n" +
		"the first outcome."
	incrSale := ""
	if p.Ledger == "stream" {
		decrDoc = "Decr takes n units of item id for the purchase opKey, in one atomic Redis step that\n" +
			"also appends its usage row to the stream (the flusher writes it to the ledger). It\n" +
			"returns ErrInsufficientStock, and takes nothing, when fewer than n are available.\n" +
			"Repeating it with the same op key returns the first outcome."
		incrSale = "\nIts units go on sale once the flusher has written its row (Release's too)."
	}
	methods := []method{
		{"Ping", "Ping checks that Redis and the ledger's database answer, and that the database records\n" +
			"this Manager's layout or none yet (ErrLayoutMismatch).", nil, []jen.Code{jen.Error()}},
		{"CreateTables", "CreateTables creates the ledger tables of " + p.Name + " if they are missing, records this\n" +
			"Manager's layout unless one is recorded, and checks it (ErrLayoutMismatch). It is idempotent.", nil, []jen.Code{jen.Error()}},
		{"TablesInitialized", "TablesInitialized reports whether the ledger tables of " + p.Name + " exist.", nil, []jen.Code{jen.Bool(), jen.Error()}},
		{"Init", "Init creates item id with qty units, split into Buckets stock buckets. An item that\n" +
			"exists gets ErrAlreadyExists.", []param{id, {"qty", jen.Int64()}}, []jen.Code{jen.Error()}},
		{"InitBuckets", "InitBuckets is Init with the stock of item id split into buckets buckets (1..Shards,\n" +
			"at most 64), on as many Redis Cluster masters: for a hot item whose purchases one\n" +
			"master cannot serve. The count is the item's for good.",
			[]param{id, {"qty", jen.Int64()}, {"buckets", jen.Int()}}, []jen.Code{jen.Error()}},
		{"Adjust", "Adjust changes the capacity and stock of item id by delta (a restock or a correction),\n" +
			"recorded under opKey. Repeating it with the same op key returns the first outcome.",
			[]param{id, {"delta", jen.Int64()}, {"opKey", jen.String()}}, res},
		{"Get", "Get returns the units of item id available now, or ErrNotFound.", []param{id}, []jen.Code{jen.Int64(), jen.Error()}},
		{"Decr", decrDoc,
			[]param{id, {"n", jen.Int64()}, {"opKey", jen.String()}}, res},
		{"Incr", "Incr returns n units to item id for the operation opKey. It never returns more units\n" +
			"than were sold (ErrOverLimit). Repeating it with the same op key returns the first outcome." + incrSale,
			[]param{id, {"n", jen.Int64()}, {"opKey", jen.String()}}, res},
		{"Release", "Release gives back exactly what the Decr with the same op key took, once. An op key\n" +
			"that took nothing gets ErrNotFound.",
			[]param{id, {"opKey", jen.String()}}, res},
		{"Refresh", "Refresh sets the Redis stock of item id to exactly what the ledger says, fenced so\n" +
			"that no concurrent change is lost.", []param{id}, []jen.Code{jen.Error()}},
		{"RefreshAll", "RefreshAll refreshes every item of " + p.Name + ", one at a time, and returns how many it loaded.",
			nil, []jen.Code{jen.Int(), jen.Error()}},
		{"Reconcile", "Reconcile settles every change whose process died between its Redis step and its\n" +
			"ledger commit, once its lease has passed.", nil, []jen.Code{jen.Id("ReconcileReport"), jen.Error()}},
		{"Audit", "Audit compares every item's Redis stock with the ledger and the journal and reports\n" +
			"what differs, changing nothing (a dry run of repair).", nil, []jen.Code{jen.Id("AuditReport"), jen.Error()}},
		{"JournalLen", "JournalLen counts the changes between their Redis step and their ledger commit: the\n" +
			"journal entries of every shard. A number that keeps growing means the ledger is failing.",
			nil, []jen.Code{jen.Int64(), jen.Error()}},
		{"SwitchLayout", "SwitchLayout makes this Manager's layout (namespace, shards, ledger mode, max key\n" +
			"length) the one the ledger database records for " + p.Name + ": it refuses while the recorded\n" +
			"layout has unsettled changes, retires it (its processes stop within LayoutRecheck),\n" +
			"waits, drains it, rebuilds Redis under the new layout from the ledger and records it.\n" +
			"Call it from one process of the new layout (see SwitchLayout of the runtime).",
			nil, []jen.Code{jen.Id("LayoutSwitch"), jen.Error()}},
		{"RunJanitor", "RunJanitor reconciles, and if configured audits and repairs, on a schedule until ctx\n" +
			"is done. Run it in a goroutine of its own.", []param{{"cfg", jen.Id("JanitorConfig")}}, []jen.Code{jen.Error()}},
		{"Close", "Close stops the Manager: later calls get ErrClosed. It waits, until ctx is done, for the\n" +
			"work it does in the background (journal clears of committed changes, changes that\n" +
			"complete after their caller's context ended). Call it before the process exits.",
			nil, []jen.Code{jen.Error()}},
	}
	if p.Holds() {
		methods = append(methods, holdMethods(id, res)...)
	}
	if p.Ledger != "stream" {
		return methods
	}
	// Only a stream prefix has streams to flush.
	return append(methods,
		method{"RunFlusher", "RunFlusher writes the usage streams of " + p.Name + " to the ledger in batches until ctx\n" +
			"is done, then drains them. Several may run at once.",
			[]param{{"cfg", jen.Id("FlusherConfig")}}, []jen.Code{jen.Error()}},
		method{"Flush", "Flush writes everything the usage streams hold to the ledger now.",
			nil, []jen.Code{jen.Int(), jen.Error()}},
		method{"FlushLag", "FlushLag reports how far the ledger is behind Redis: entries not yet written and the\n" +
			"age of the oldest.", nil, []jen.Code{jen.Id("FlushLag"), jen.Error()}},
	)
}

// holdMethods are the methods of holds: a sync prefix, on every engine.
func holdMethods(id param, res []jen.Code) []method {
	key := param{"holdKey", jen.String()}
	return []method{
		{"Hold", "Hold takes n units of item id out of sale for ttl under holdKey: a purchase that\n" +
			"Confirm makes final and Cancel gives back, and that gives its units back by itself\n" +
			"once ttl has passed on the ledger database's clock (the janitor ends it, within\n" +
			"JanitorConfig.ExpireHoldsEvery). It returns once the purchase row and the hold are\n" +
			"committed; ErrInsufficientStock takes nothing. Repeating it returns the first outcome.",
			[]param{id, {"n", jen.Int64()}, key, {"ttl", jen.Qual("time", "Duration")}}, res},
		{"Confirm", "Confirm makes the open hold holdKey of item id a purchase for good, if its deadline\n" +
			"has not passed: ErrHoldExpired (even while its units are still out), ErrHoldCancelled,\n" +
			"ErrHoldNotFound. It touches no stock, so the holder of the last unit confirms it while\n" +
			"Get reports 0. Repeating it succeeds.",
			[]param{id, key}, []jen.Code{jen.Error()}},
		{"Cancel", "Cancel ends the open hold holdKey of item id and gives its units back, once (a hold\n" +
			"past its deadline is ended as expired). A confirmed hold gets ErrHoldConfirmed: Release\n" +
			"the purchase to refund it. Repeating it returns the first outcome.",
			[]param{id, key}, res},
		{"LookupHold", "LookupHold returns the hold holdKey of item id as the ledger holds it.",
			[]param{id, key}, []jen.Code{jen.Id("HoldRow"), jen.Bool(), jen.Error()}},
		{"Held", "Held returns the units of the open holds of item id: out of stock, not sold for good yet.",
			[]param{id}, []jen.Code{jen.Int64(), jen.Error()}},
		{"ExpireHolds", "ExpireHolds ends every open hold past its deadline and gives its units back; it returns\n" +
			"how many it ended. The janitor runs it on a schedule.",
			nil, []jen.Code{jen.Int(), jen.Error()}},
	}
}

// option is a re-exported runtime option.
type option struct {
	name, arg string
	typ       jen.Code
	doc       string
}

var options = []option{
	{"WithNamespace", "ns", jen.String(), "WithNamespace replaces the spec's Redis namespace (tests give each run its own)."},
	{"WithLease", "d", jen.Qual("time", "Duration"), "WithLease sets how long a change may stay between Redis and its ledger commit\nbefore Reconcile may void it (default 10s)."},
	{"WithOpTTL", "d", jen.Qual("time", "Duration"), "WithOpTTL sets how long Redis remembers a completed op key (default 24h)."},
	{"WithFenceTTL", "d", jen.Qual("time", "Duration"), "WithFenceTTL sets how long a refresh may fence an item (default 5s)."},
	{"WithBusyWait", "d", jen.Qual("time", "Duration"), "WithBusyWait sets how long a change waits for a fenced item before ErrBusy (default 2s)."},
	{"WithLogger", "l", jen.Op("*").Qual("log/slog", "Logger"), "WithLogger sets where the manager reports what goes wrong in the background (default: nowhere)."},
	{"WithLedgerTimeout", "d", jen.Qual("time", "Duration"), "WithLedgerTimeout bounds the SQL calls that settle a change whose ledger write failed (default 5s)."},
	{"WithSoldOutCache", "d", jen.Qual("time", "Duration"), "WithSoldOutCache refuses purchases of a sold-out item in the process, without Redis, for up to d\nat a time; units that come back become sellable within d (default: off)."},
	{"WithReplicaAck", "d", jen.Qual("time", "Duration"), "WithReplicaAck makes each change wait up to d for a replica to confirm it (Redis WAIT),\nso that a failover loses no acknowledged change (default: off)."},
	{"WithObserver", "o", jen.Id("Observer"), "WithObserver reports every operation to o: metrics (invgen/metrics, Prometheus),\ntracing (invgen/tracing, OpenTelemetry) or your own (default: none)."},
}

var sentinels = []struct{ name, doc string }{
	{"ErrNotFound", "the item (or the purchase to release) does not exist."},
	{"ErrAlreadyExists", "Init of an item that exists."},
	{"ErrInsufficientStock", "fewer units available than asked for; nothing was taken."},
	{"ErrOverLimit", "an Incr would return more than was sold, or an Adjust would exceed MaxQuantity."},
	{"ErrInvalidArgument", "a bad argument; nothing was written."},
	{"ErrBusy", "the item is being refreshed or the op key is in progress; retry later."},
	{"ErrVoided", "the op key's earlier operation failed and was voided; use a new op key."},
	{"ErrInDoubt", "the outcome is not known yet; retry with the same op key for it."},
	{"ErrCorrupt", "Redis holds a key of the item that invgen did not write; Refresh repairs it."},
	{"ErrClosed", "the Manager was closed."},
	{"ErrLayoutMismatch", "the ledger database records another layout of the prefix (or a retired one, or none); nothing was done."},
	{"ErrHoldExpired", "the hold's deadline passed before Confirm; the purchase did not happen."},
	{"ErrHoldConfirmed", "Cancel of a confirmed hold; Release refunds the purchase."},
	{"ErrHoldCancelled", "Confirm of a cancelled hold."},
	{"ErrHoldNotFound", "no hold has this key for the item."},
	{"ErrNotSupported", "the prefix cannot do this (holds need the sync ledger)."},
}

// doc adds a comment of one or more lines as // lines.
func doc(f *jen.File, text string) {
	for _, line := range strings.Split(text, "\n") {
		f.Comment(line)
	}
}

// emitManager renders <prefix>/manager.go.
func emitManager(m *Model, p *Prefix) ([]byte, error) {
	f := jen.NewFile(p.Package)
	f.HeaderComment(Header)
	pkgDoc := (fmt.Sprintf("Package %s is the inventory of prefix %s: a typed manager over\n"+
		"Redis (namespace %q, shards: %d) and the %s tables\n%s and %s,\ngenerated by invgen from %s.",
		p.Package, p.Name, m.Namespace, p.Shards, engineNames[m.Engine], p.ModTable, p.UsageTable, filepath.Base(m.SpecPath)))
	for _, line := range strings.Split(pkgDoc, "\n") {
		f.PackageComment(line)
	}
	f.ImportAlias(runtimePath, "invrt")
	f.ImportName(redisPath, "redis")
	f.ImportName(uuidPath, "uuid")
	f.ImportName(pgxPath, "pgx")
	f.ImportName(pgxpoolPath, "pgxpool")
	f.ImportName(mysqlPath, "mysql")
	f.ImportName(sqlitePath, "sqlite3")
	f.ImportName(p.DBImportPath, "db")
	f.Anon("embed")

	f.Comment("The generated code and the runtime must agree on the version of their contract.")
	f.Const().Id("_").Op("=").Add(rt("EnforceVersion")).Parens(jen.Lit(invrt.GenVersion).Op("-").Add(rt("MinVersion")))
	f.Const().Id("_").Op("=").Add(rt("EnforceVersion")).Parens(rt("MaxVersion").Op("-").Lit(invrt.GenVersion))
	f.Line()

	consts := []jen.Code{
		jen.Comment("Prefix is the business prefix of this package."),
		jen.Id("Prefix").Op("=").Lit(p.Name),
		jen.Comment("Namespace is the first segment of every Redis key (see WithNamespace)."),
		jen.Id("Namespace").Op("=").Lit(m.Namespace),
		jen.Comment("Shards is the number of Redis hash-tag shards of this prefix."),
		jen.Id("Shards").Op("=").Lit(p.Shards),
		jen.Comment("Buckets is the number of stock buckets Init splits an item into (see InitBuckets)."),
		jen.Id("Buckets").Op("=").Lit(p.Buckets),
		jen.Comment("LedgerMode is how usage reaches the ledger."),
		jen.Id("LedgerMode").Op("=").Lit(p.Ledger),
		jen.Comment("ModificationTable records inits and adjustments."),
		jen.Id("ModificationTable").Op("=").Lit(p.ModTable),
		jen.Comment("UsageTable records purchases, returns and releases."),
		jen.Id("UsageTable").Op("=").Lit(p.UsageTable),
		jen.Comment("LayoutTable records the layout every process of " + p.Name + " must have."),
		jen.Id("LayoutTable").Op("=").Lit(p.LayoutTable),
		jen.Comment("KeyType is the spec's key type."),
		jen.Id("KeyType").Op("=").Lit(p.Key),
	}
	if p.Key == "string" {
		consts = append(consts,
			jen.Comment("MaxKeyLen is the longest item key, in bytes."),
			jen.Id("MaxKeyLen").Op("=").Lit(p.MaxKeyLen))
	}
	f.Const().Defs(consts...)

	f.Comment("Key is the type of the item keys of " + p.Name + ".")
	f.Type().Id("Key").Op("=").Add(keyType(p))

	f.Comment("Result is the outcome of a change.")
	f.Type().Id("Result").Op("=").Add(rt("Result"))

	f.Comment("Option configures a Manager.")
	f.Type().Id("Option").Op("=").Add(rt("Option"))

	for _, a := range []struct{ name, doc string }{
		{"ReconcileReport", "ReconcileReport tells what Reconcile found and did."},
		{"AuditReport", "AuditReport is what Audit found."},
		{"Drift", "Drift is an item whose Redis stock differs from the ledger."},
		{"JanitorConfig", "JanitorConfig configures RunJanitor."},
		{"JanitorReport", "JanitorReport is the outcome of one janitor round."},
	} {
		f.Comment(a.doc)
		t := rt(a.name)
		if a.name != "ReconcileReport" {
			t = t.Types(jen.Id("Key"))
		}
		f.Type().Id(a.name).Op("=").Add(t)
	}
	aliases := []struct{ name, doc string }{
		{"LayoutSwitch", "LayoutSwitch is what SwitchLayout did."},
		{"Observer", "Observer watches a Manager for metrics and tracing (see WithObserver)."},
	}
	if p.Holds() {
		aliases = append(aliases, struct{ name, doc string }{"HoldRow", "HoldRow is a hold as the ledger holds it."})
	}
	if p.Ledger == "stream" {
		aliases = append(aliases,
			struct{ name, doc string }{"FlusherConfig", "FlusherConfig configures RunFlusher."},
			struct{ name, doc string }{"FlushReport", "FlushReport is what one round of a flusher wrote (FlusherConfig.OnFlush)."},
			struct{ name, doc string }{"FlushLag", "FlushLag is how far the ledger is behind Redis."})
	}
	for _, a := range aliases {
		f.Comment(a.doc)
		f.Type().Id(a.name).Op("=").Add(rt(a.name))
	}

	var errDefs []jen.Code
	for _, s := range sentinels {
		errDefs = append(errDefs, jen.Comment(s.name+": "+s.doc), jen.Id(s.name).Op("=").Add(rt(s.name)))
	}
	f.Comment("Errors, checked with errors.Is. They are the runtime's sentinels.")
	f.Var().Defs(errDefs...)

	for _, o := range options {
		doc(f, o.doc)
		f.Func().Id(o.name).Params(jen.Id(o.arg).Add(o.typ)).Id("Option").Block(
			jen.Return(rt(o.name).Call(jen.Id(o.arg))))
	}

	f.Line().Comment("//go:embed schema.sql")
	f.Var().Id("schema").String()
	if m.Engine != "postgresql" {
		f.Line().Comment("//go:embed direct.sql")
		f.Var().Id("directSQL").String()
		f.Comment("direct holds the statements that the ledger runs without sqlc, by name.")
		f.Var().Id("direct").Op("=").Add(rt("NamedSQL")).Call(jen.Id("directSQL"))
	}

	f.Comment("Manager is the inventory manager of prefix " + p.Name + ". It is safe for concurrent use.")
	f.Type().Id("Manager").Struct(jen.Id("core").Op("*").Add(rt("Core")).Types(jen.Id("Key")))

	doc(f, "New returns a Manager over the ledger database pool ("+poolDoc[m.Engine]+", or anything\n"+
		"sqlc's DBTX accepts but a transaction, which gets ErrInvalidArgument) and a Redis\n"+
		"client, cluster client or ring. It makes no call to either: Ping and CreateTables\n"+
		"check the layout the database records at once, and otherwise the first call fails\n"+
		"with ErrLayoutMismatch when it differs from this Manager's (or none is recorded).")
	f.Func().Id("New").Params(
		jen.Id("pool").Qual(p.DBImportPath, "DBTX"),
		jen.Id("rdb").Qual(redisPath, "UniversalClient"),
		jen.Id("opts").Op("...").Id("Option"),
	).Params(jen.Op("*").Id("Manager"), jen.Error()).Block(
		jen.Id("l").Op(":=").Id("ledger").Values(jen.Dict{jen.Id("db"): jen.Id("pool"), jen.Id("q"): jen.Qual(p.DBImportPath, "New").Call(jen.Id("pool"))}),
		jen.List(jen.Id("core"), jen.Err()).Op(":=").Add(rt("NewCore")).Call(
			rt("Config").Types(jen.Id("Key")).Values(jen.Dict{
				jen.Id("Namespace"): jen.Id("Namespace"),
				jen.Id("Prefix"):    jen.Id("Prefix"),
				jen.Id("Shards"):    jen.Id("Shards"),
				jen.Id("Buckets"):   jen.Id("Buckets"),
				jen.Id("Codec"):     codec(p),
				jen.Id("Ledger"):    jen.Id("l"),
				jen.Id("Layouts"):   jen.Id("l"),
				jen.Id("DB"):        jen.Id("pool"),
				jen.Id("KeyType"):   jen.Id("KeyType"),
				jen.Id("MaxKeyLen"): maxKeyLen(p),
				jen.Id("Redis"):     jen.Id("rdb"),
				jen.Id("Stream"):    jen.Id("LedgerMode").Op("==").Lit("stream"),
			}),
			jen.Id("opts").Op("..."),
		),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.Return(jen.Op("&").Id("Manager").Values(jen.Dict{jen.Id("core"): jen.Id("core")}), jen.Nil()),
	)

	for _, mm := range managerMethods(p) {
		params := []jen.Code{jen.Id("ctx").Qual("context", "Context")}
		args := []jen.Code{jen.Id("ctx")}
		for _, pa := range mm.params {
			params = append(params, jen.Id(pa.name).Add(pa.typ))
			args = append(args, jen.Id(pa.name))
		}
		doc(f, mm.doc)
		f.Func().Params(jen.Id("m").Op("*").Id("Manager")).Id(mm.name).Params(params...).Params(mm.results...).Block(
			jen.Return(jen.Id("m").Dot("core").Dot(mm.name).Call(args...)))
	}

	if m.Engine == "postgresql" {
		emitLedger(f, p)
	} else {
		emitSQLLedger(f, p)
	}

	var buf bytes.Buffer
	if err := f.Render(&buf); err != nil {
		return nil, fmt.Errorf("render %s/manager.go: %w", p.Dir, err)
	}
	// jennifer formats with go/format; goimports also groups the standard
	// library's imports apart from the others.
	out, err := imports.Process(p.Dir+"/manager.go", buf.Bytes(), &imports.Options{Comments: true, TabIndent: true, TabWidth: 8, FormatOnly: true})
	if err != nil {
		return nil, fmt.Errorf("format %s/manager.go: %w", p.Dir, err)
	}
	return out, nil
}

// poolDoc names the pool New takes, by engine.
var poolDoc = map[string]string{
	"postgresql": "a *pgxpool.Pool",
	"mysql":      "a *sql.DB of go-sql-driver/mysql",
	"sqlite":     "a *sql.DB of ncruces/go-sqlite3",
}

// ledgerParts emits the pieces of a prefix's ledger adapter that every
// engine shares; wrap is what its errors go through (nothing on
// PostgreSQL, dbError on the others) and noRows the driver's "no rows".
type ledgerParts struct {
	f      *jen.File
	p      *Prefix
	wrap   func(jen.Code) jen.Code
	noRows jen.Code
}

func (g ledgerParts) fn() *jen.Statement { g.f.Line(); return g.f.Func() }

func (g ledgerParts) dbq(name string) *jen.Statement { return jen.Qual(g.p.DBImportPath, name) }

// typeDecl emits the ledger type and its interface assertions.
func (g ledgerParts) typeDecl() {
	g.f.Comment("ledger implements invrt.Ledger with the sqlc queries of " + g.p.Name + ".")
	g.f.Type().Id("ledger").Struct(
		jen.Id("db").Add(g.dbq("DBTX")),
		jen.Id("q").Op("*").Add(g.dbq("Queries")),
	)
	g.f.Var().Id("_").Add(rt("Ledger")).Types(jen.Id("Key")).Op("=").Id("ledger").Values()
	g.f.Var().Id("_").Add(rt("LayoutStore")).Op("=").Id("ledger").Values()
}

// params emits the conversion of an entry to the insert parameters; both
// tables have the same columns, so the parameter and row types of their
// queries convert into each other.
func (g ledgerParts) params() {
	g.fn().Id("params").Params(jen.Id("e").Add(rt("Entry").Types(jen.Id("Key")))).Add(g.dbq("InsertUsageParams")).Block(
		jen.Return(g.dbq("InsertUsageParams").Values(jen.Dict{
			jen.Id("ItemID"):  jen.Id("e").Dot("Item"),
			jen.Id("Delta"):   jen.Id("e").Dot("Delta"),
			jen.Id("Kind"):    jen.String().Parens(jen.Id("e").Dot("Kind")),
			jen.Id("OpKey"):   jen.Id("e").Dot("OpKey"),
			jen.Id("Attempt"): jen.Id("e").Dot("Attempt"),
		})))
}

func (g ledgerParts) insert() {
	isMod := jen.Id("e").Dot("Kind").Dot("Modification").Call()
	g.fn().Params(jen.Id("l").Id("ledger")).Id("Insert").Params(jen.Id("ctx").Qual("context", "Context"), jen.Id("e").Add(rt("Entry").Types(jen.Id("Key")))).Error().Block(
		jen.If(isMod).Block(
			jen.Return(g.wrap(jen.Id("l").Dot("q").Dot("InsertModification").Call(jen.Id("ctx"),
				g.dbq("InsertModificationParams").Parens(jen.Id("params").Call(jen.Id("e"))))))),
		jen.Return(g.wrap(jen.Id("l").Dot("q").Dot("InsertUsage").Call(jen.Id("ctx"), jen.Id("params").Call(jen.Id("e"))))))
}

// row is the runtime's Row of a query's row r.
func (g ledgerParts) row() jen.Code {
	return rt("Row").Values(jen.Dict{
		jen.Id("State"):   rt("State").Parens(jen.Id("r").Dot("State")),
		jen.Id("Delta"):   jen.Id("r").Dot("Delta"),
		jen.Id("Attempt"): jen.Id("r").Dot("Attempt"),
	})
}

func (g ledgerParts) lookup() {
	args := jen.Dict{jen.Id("ItemID"): jen.Id("item"), jen.Id("Kind"): jen.String().Parens(jen.Id("kind")), jen.Id("OpKey"): jen.Id("opKey")}
	g.fn().Params(jen.Id("l").Id("ledger")).Id("Lookup").Params(jen.Id("ctx").Qual("context", "Context"), jen.Id("item").Id("Key"), jen.Id("kind").Add(rt("Kind")), jen.Id("opKey").String()).
		Params(rt("Row"), jen.Bool(), jen.Error()).Block(
		jen.Var().Id("r").Add(g.dbq("LookupUsageRow")),
		jen.Var().Err().Error(),
		jen.If(jen.Id("kind").Dot("Modification").Call()).Block(
			jen.Var().Id("m").Add(g.dbq("LookupModificationRow")),
			jen.List(jen.Id("m"), jen.Err()).Op("=").Id("l").Dot("q").Dot("LookupModification").Call(jen.Id("ctx"), g.dbq("LookupModificationParams").Values(args)),
			jen.Id("r").Op("=").Add(g.dbq("LookupUsageRow")).Parens(jen.Id("m")),
		).Else().Block(
			jen.List(jen.Id("r"), jen.Err()).Op("=").Id("l").Dot("q").Dot("LookupUsage").Call(jen.Id("ctx"), g.dbq("LookupUsageParams").Values(args)),
		),
		jen.If(jen.Qual("errors", "Is").Call(jen.Err(), g.noRows)).Block(
			jen.Return(rt("Row").Values(), jen.False(), jen.Nil())),
		jen.Return(g.row(), jen.Err().Op("==").Nil(), g.wrap(jen.Err())))
}

// emitLedger renders the adapter from the prefix's sqlc queries to the
// runtime's Ledger interface. Both tables have the same columns, so the
// parameter and row types of their queries convert into each other.
func emitLedger(f *jen.File, p *Prefix) {
	fn := func() *jen.Statement { f.Line(); return f.Func() }
	dbq := func(name string) *jen.Statement { return jen.Qual(p.DBImportPath, name) }
	entry := rt("Entry").Types(jen.Id("Key"))
	ctx := jen.Id("ctx").Qual("context", "Context")
	recv := jen.Id("l").Id("ledger")
	isMod := jen.Id("e").Dot("Kind").Dot("Modification").Call()

	g := ledgerParts{f: f, p: p, wrap: func(c jen.Code) jen.Code { return c }, noRows: jen.Qual(pgxPath, "ErrNoRows")}
	g.typeDecl()
	g.params()

	fn().Params(recv.Clone()).Id("CreateTables").Params(ctx.Clone()).Error().Block(
		jen.List(jen.Id("_"), jen.Err()).Op(":=").Id("l").Dot("db").Dot("Exec").Call(jen.Id("ctx"), jen.Id("schema")),
		jen.Return(jen.Err()))

	fn().Params(recv.Clone()).Id("TablesInitialized").Params(ctx.Clone()).Params(jen.Bool(), jen.Error()).Block(
		jen.Return(jen.Id("l").Dot("q").Dot("TablesInitialized").Call(jen.Id("ctx"))))

	f.Comment("Acquire takes one connection of the pool under ctx, so that a change whose ledger row")
	f.Comment("was never sent can tell so.")
	fn().Params(recv.Clone()).Id("Acquire").Params(ctx.Clone()).Params(rt("Ledger").Types(jen.Id("Key")), jen.Func().Params(), jen.Error()).Block(
		jen.List(jen.Id("p"), jen.Id("ok")).Op(":=").Id("l").Dot("db").Assert(jen.Op("*").Qual(pgxpoolPath, "Pool")),
		jen.If(jen.Op("!").Id("ok")).Block(jen.Return(jen.Id("l"), jen.Func().Params().Block(), jen.Nil())),
		jen.List(jen.Id("conn"), jen.Err()).Op(":=").Id("p").Dot("Acquire").Call(jen.Id("ctx")),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Nil(), jen.Err())),
		jen.Return(jen.Id("ledger").Values(jen.Dict{
			jen.Id("db"): jen.Id("conn"),
			jen.Id("q"):  dbq("New").Call(jen.Id("conn")),
		}), jen.Id("conn").Dot("Release"), jen.Nil()))

	g.insert()

	fn().Params(recv.Clone()).Id("Void").Params(ctx.Clone(), jen.Id("e").Add(entry)).Params(rt("Row"), jen.Error()).Block(
		jen.If(isMod.Clone()).Block(
			jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("VoidModification").Call(jen.Id("ctx"),
				dbq("VoidModificationParams").Parens(jen.Id("params").Call(jen.Id("e")))),
			jen.Return(g.row(), jen.Err())),
		jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("VoidUsage").Call(jen.Id("ctx"),
			dbq("VoidUsageParams").Parens(jen.Id("params").Call(jen.Id("e")))),
		jen.Return(g.row(), jen.Err()))

	emitLayoutStore(f, p)

	fn().Params(recv.Clone()).Id("Flush").Params(ctx.Clone(), jen.Id("b").Op("*").Add(rt("Batch"))).Params(jen.Index().String(), jen.Error()).Block(
		jen.Return(jen.Id("l").Dot("q").Dot("FlushUsage").Call(jen.Id("ctx"), dbq("FlushUsageParams").Values(jen.Dict{
			jen.Id("Items"):    jen.Id("b").Dot("Items"),
			jen.Id("Deltas"):   jen.Id("b").Dot("Deltas"),
			jen.Id("Kinds"):    jen.Id("b").Dot("Kinds"),
			jen.Id("OpKeys"):   jen.Id("b").Dot("OpKeys"),
			jen.Id("Attempts"): jen.Id("b").Dot("Attempts"),
		}))))

	g.lookup()
	if p.Holds() {
		emitHoldStore(f, p)
	}

	fn().Params(recv.Clone()).Id("Totals").Params(ctx.Clone(), jen.Id("item").Id("Key")).
		Params(rt("Totals").Types(jen.Id("Key")), jen.Bool(), jen.Error()).Block(
		jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("ItemTotals").Call(jen.Id("ctx"), jen.Id("item")),
		jen.Return(
			rt("Totals").Types(jen.Id("Key")).Values(jen.Dict{
				jen.Id("Item"):      jen.Id("item"),
				jen.Id("Capacity"):  jen.Id("r").Dot("Capacity"),
				jen.Id("Available"): jen.Id("r").Dot("Capacity").Op("+").Id("r").Dot("Used"),
				jen.Id("Buckets"):   jen.Int().Parens(jen.Id("r").Dot("Buckets")),
			}),
			jen.Id("r").Dot("Found"), jen.Err()))

	fn().Params(recv.Clone()).Id("Items").Params(ctx.Clone(), jen.Id("after").Id("Key"), jen.Id("first").Bool(), jen.Id("limit").Int()).
		Params(jen.Index().Add(rt("Totals")).Types(jen.Id("Key")), jen.Error()).Block(
		jen.List(jen.Id("rows"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("ItemTotalsPage").Call(jen.Id("ctx"),
			dbq("ItemTotalsPageParams").Values(jen.Dict{
				jen.Id("First"):    jen.Id("first"),
				jen.Id("After"):    jen.Id("after"),
				jen.Id("PageSize"): jen.Int32().Parens(jen.Id("limit")),
			})),
		jen.Id("out").Op(":=").Make(jen.Index().Add(rt("Totals")).Types(jen.Id("Key")), jen.Len(jen.Id("rows"))),
		jen.For(jen.List(jen.Id("i"), jen.Id("r")).Op(":=").Range().Id("rows")).Block(
			jen.Id("out").Index(jen.Id("i")).Op("=").Add(rt("Totals")).Types(jen.Id("Key")).Values(jen.Dict{
				jen.Id("Item"):      jen.Id("r").Dot("ItemID"),
				jen.Id("Capacity"):  jen.Id("r").Dot("Capacity"),
				jen.Id("Available"): jen.Id("r").Dot("Capacity").Op("+").Id("r").Dot("Used"),
				jen.Id("Buckets"):   jen.Int().Parens(jen.Id("r").Dot("Buckets")),
			})),
		jen.Return(jen.Id("out"), jen.Err()))
}

// emitLayoutStore renders the ledger's invrt.LayoutStore methods over the
// layout queries of p.
func emitLayoutStore(f *jen.File, p *Prefix) {
	fn := func() *jen.Statement { f.Line(); return f.Func() }
	dbq := func(name string) *jen.Statement { return jen.Qual(p.DBImportPath, name) }
	ctx := jen.Id("ctx").Qual("context", "Context")
	recv := jen.Id("l").Id("ledger")
	fields := func(l string) jen.Dict {
		return jen.Dict{
			jen.Id("Namespace"):  jen.Id(l).Dot("Namespace"),
			jen.Id("Shards"):     jen.Int32().Parens(jen.Id(l).Dot("Shards")),
			jen.Id("LedgerMode"): jen.Id(l).Dot("Ledger"),
			jen.Id("KeyType"):    jen.Id(l).Dot("KeyType"),
			jen.Id("MaxKeyLen"):  jen.Int32().Parens(jen.Id(l).Dot("MaxKeyLen")),
		}
	}

	f.Line()
	f.Comment("layoutRecord converts a layout row.")
	f.Func().Id("layoutRecord").Params(jen.Id("r").Add(dbq("LoadLayoutRow"))).Add(rt("LayoutRecord")).Block(
		jen.Return(rt("LayoutRecord").Values(jen.Dict{
			jen.Id("Layout"): rt("Layout").Values(jen.Dict{
				jen.Id("Namespace"): jen.Id("r").Dot("Namespace"),
				jen.Id("Shards"):    jen.Int().Parens(jen.Id("r").Dot("Shards")),
				jen.Id("Ledger"):    jen.Id("r").Dot("LedgerMode"),
				jen.Id("KeyType"):   jen.Id("r").Dot("KeyType"),
				jen.Id("MaxKeyLen"): jen.Int().Parens(jen.Id("r").Dot("MaxKeyLen")),
			}),
			jen.Id("Retired"): jen.Id("r").Dot("Retired"),
			jen.Id("Version"): jen.Id("r").Dot("Version"),
		})))

	fn().Params(recv.Clone()).Id("RecordLayout").Params(ctx.Clone(), jen.Id("want").Add(rt("Layout"))).Params(rt("LayoutRecord"), jen.Error()).Block(
		jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("RecordLayout").Call(jen.Id("ctx"), dbq("RecordLayoutParams").Values(fields("want"))),
		jen.Return(jen.Id("layoutRecord").Call(dbq("LoadLayoutRow").Parens(jen.Id("r"))), jen.Err()))

	fn().Params(recv.Clone()).Id("LoadLayout").Params(ctx.Clone()).Params(rt("LayoutRecord"), jen.Bool(), jen.Error()).Block(
		jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("LoadLayout").Call(jen.Id("ctx")),
		jen.If(jen.Qual("errors", "Is").Call(jen.Err(), jen.Qual(pgxPath, "ErrNoRows"))).Block(
			jen.Return(rt("LayoutRecord").Values(), jen.False(), jen.Nil())),
		jen.Return(jen.Id("layoutRecord").Call(jen.Id("r")), jen.Err().Op("==").Nil(), jen.Err()))

	fn().Params(recv.Clone()).Id("RetireLayout").Params(ctx.Clone(), jen.Id("version").Int64()).Params(jen.Bool(), jen.Error()).Block(
		jen.List(jen.Id("n"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("RetireLayout").Call(jen.Id("ctx"), jen.Id("version")),
		jen.Return(jen.Id("n").Op("==").Lit(1), jen.Err()))

	replace := fields("to")
	replace[jen.Id("Version")] = jen.Id("version")
	fn().Params(recv.Clone()).Id("ReplaceLayout").Params(ctx.Clone(), jen.Id("version").Int64(), jen.Id("to").Add(rt("Layout"))).Params(jen.Bool(), jen.Error()).Block(
		jen.List(jen.Id("n"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("ReplaceLayout").Call(jen.Id("ctx"), dbq("ReplaceLayoutParams").Values(replace)),
		jen.Return(jen.Id("n").Op("==").Lit(1), jen.Err()))
}

// emitHoldStore renders the ledger's invrt.HoldStore methods over the hold
// queries of p (postgresql).
func emitHoldStore(f *jen.File, p *Prefix) {
	fn := func() *jen.Statement { f.Line(); return f.Func() }
	dbq := func(name string) *jen.Statement { return jen.Qual(p.DBImportPath, name) }
	entry := rt("Entry").Types(jen.Id("Key"))
	ctx := jen.Id("ctx").Qual("context", "Context")
	recv := jen.Id("l").Id("ledger")
	e := func(field string) *jen.Statement { return jen.Id("e").Dot(field) }

	f.Var().Id("_").Add(rt("HoldStore")).Types(jen.Id("Key")).Op("=").Id("ledger").Values()

	fn().Params(recv.Clone()).Id("InsertHold").Params(ctx.Clone(), jen.Id("e").Add(entry), jen.Id("ttl").Qual("time", "Duration")).Error().Block(
		jen.Return(jen.Id("l").Dot("q").Dot("InsertHold").Call(jen.Id("ctx"), dbq("InsertHoldParams").Values(jen.Dict{
			jen.Id("ItemID"):  e("Item"),
			jen.Id("Delta"):   e("Delta"),
			jen.Id("OpKey"):   e("OpKey"),
			jen.Id("Attempt"): e("Attempt"),
			jen.Id("TtlMs"):   jen.Id("ttl").Dot("Milliseconds").Call(),
		}))))

	fn().Params(recv.Clone()).Id("EndHold").Params(ctx.Clone(), jen.Id("e").Add(entry)).Params(jen.Bool(), jen.Error()).Block(
		jen.List(jen.Id("rows"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("EndHold").Call(jen.Id("ctx"), dbq("EndHoldParams").Values(jen.Dict{
			jen.Id("ItemID"):  e("Item"),
			jen.Id("OpKey"):   e("OpKey"),
			jen.Id("Attempt"): e("Attempt"),
		})),
		jen.Return(jen.Len(jen.Id("rows")).Op(">").Lit(0), jen.Err()))

	emitHoldReads(f, p, jen.Qual(pgxPath, "ErrNoRows"), jen.Int32().Parens(jen.Id("limit")), func(c jen.Code) jen.Code { return c })
}

// emitHoldReads renders the HoldStore methods that are one query on every
// engine: ConfirmHold, LookupHold, HeldUnits and DueHolds. noRows is the
// driver's error of an empty :one, limit DueHolds' argument as its query
// takes it, and wrap what the errors go through.
func emitHoldReads(f *jen.File, p *Prefix, noRows, limit jen.Code, wrap func(jen.Code) jen.Code) {
	fn := func() *jen.Statement { f.Line(); return f.Func() }
	dbq := func(name string) *jen.Statement { return jen.Qual(p.DBImportPath, name) }
	ctx := jen.Id("ctx").Qual("context", "Context")
	recv := jen.Id("l").Id("ledger")
	ms := func(d jen.Code) *jen.Statement { return jen.Qual("time", "UnixMilli").Call(d) }
	key := jen.Dict{jen.Id("ItemID"): jen.Id("item"), jen.Id("HoldKey"): jen.Id("holdKey")}

	fn().Params(recv.Clone()).Id("ConfirmHold").Params(ctx.Clone(), jen.Id("item").Id("Key"), jen.Id("holdKey").String()).Params(jen.Bool(), jen.Error()).Block(
		jen.List(jen.Id("n"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("ConfirmHold").Call(jen.Id("ctx"), dbq("ConfirmHoldParams").Values(key)),
		jen.Return(jen.Id("n").Op("==").Lit(1), wrap(jen.Err())))

	fn().Params(recv.Clone()).Id("LookupHold").Params(ctx.Clone(), jen.Id("item").Id("Key"), jen.Id("holdKey").String()).Params(rt("HoldRow"), jen.Bool(), jen.Error()).Block(
		jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("LookupHold").Call(jen.Id("ctx"), dbq("LookupHoldParams").Values(key)),
		jen.If(jen.Qual("errors", "Is").Call(jen.Err(), noRows)).Block(
			jen.Return(rt("HoldRow").Values(), jen.False(), jen.Nil())),
		jen.Return(rt("HoldRow").Values(jen.Dict{
			jen.Id("Units"):    jen.Id("r").Dot("Units"),
			jen.Id("State"):    rt("HoldState").Parens(jen.Id("r").Dot("State")),
			jen.Id("Deadline"): ms(jen.Id("r").Dot("DeadlineMs")),
			jen.Id("Now"):      ms(jen.Id("r").Dot("NowMs")),
		}), jen.Err().Op("==").Nil(), wrap(jen.Err())))

	fn().Params(recv.Clone()).Id("HeldUnits").Params(ctx.Clone(), jen.Id("item").Id("Key")).Params(jen.Int64(), jen.Error()).Block(
		jen.List(jen.Id("n"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("HeldUnits").Call(jen.Id("ctx"), jen.Id("item")),
		jen.Return(jen.Id("n"), wrap(jen.Err())))

	fn().Params(recv.Clone()).Id("DueHolds").Params(ctx.Clone(), jen.Id("limit").Int()).Params(jen.Index().Add(rt("DueHold")).Types(jen.Id("Key")), jen.Error()).Block(
		jen.List(jen.Id("rows"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("DueHolds").Call(jen.Id("ctx"), limit),
		jen.Id("out").Op(":=").Make(jen.Index().Add(rt("DueHold")).Types(jen.Id("Key")), jen.Len(jen.Id("rows"))),
		jen.For(jen.List(jen.Id("i"), jen.Id("r")).Op(":=").Range().Id("rows")).Block(
			jen.Id("out").Index(jen.Id("i")).Op("=").Add(rt("DueHold")).Types(jen.Id("Key")).Values(jen.Dict{
				jen.Id("Item"):    jen.Id("r").Dot("ItemID"),
				jen.Id("HoldKey"): jen.Id("r").Dot("HoldKey"),
			})),
		jen.Return(jen.Id("out"), wrap(jen.Err())))
}
