package generator

import (
	"github.com/dave/jennifer/jen"
)

// emitSQLLedger renders the adapter from the sqlc queries of a prefix of
// the mysql or sqlite engine (database/sql) to the runtime's Ledger and
// LayoutStore. Its errors go through dbError, which tells the runtime what
// the driver's errors mean (runtime.DBError).
func emitSQLLedger(f *jen.File, p *Prefix) {
	mysql := p.Engine == "mysql"
	fn := func() *jen.Statement { f.Line(); return f.Func() }
	dbq := func(name string) *jen.Statement { return jen.Qual(p.DBImportPath, name) }
	entry := rt("Entry").Types(jen.Id("Key"))
	ctx := jen.Id("ctx").Qual("context", "Context")
	recv := jen.Id("l").Id("ledger")
	isMod := jen.Id("e").Dot("Kind").Dot("Modification").Call()
	wrapErr := jen.Id("dbError").Call(jen.Err())

	g := ledgerParts{f: f, p: p, wrap: func(c jen.Code) jen.Code { return jen.Id("dbError").Call(c) }, noRows: jen.Qual(sqlPath, "ErrNoRows")}
	g.typeDecl()
	emitDBError(f, p)
	g.params()

	f.Line().Comment("CreateTables runs schema.sql a statement at a time: the drivers take one per call.")
	fn().Params(recv.Clone()).Id("CreateTables").Params(ctx.Clone()).Error().Block(
		jen.For(jen.List(jen.Id("_"), jen.Id("stmt")).Op(":=").Range().Add(rt("SQLStatements")).Call(jen.Id("schema"))).Block(
			jen.If(jen.List(jen.Id("_"), jen.Err()).Op(":=").Id("l").Dot("db").Dot("ExecContext").Call(jen.Id("ctx"), jen.Id("stmt")), jen.Err().Op("!=").Nil()).Block(
				jen.Return(wrapErr.Clone()))),
		jen.Return(jen.Nil()))

	fn().Params(recv.Clone()).Id("TablesInitialized").Params(ctx.Clone()).Params(jen.Bool(), jen.Error()).Block(
		jen.Var().Id("n").Int64(),
		jen.Err().Op(":=").Id("l").Dot("db").Dot("QueryRowContext").Call(jen.Id("ctx"), jen.Id("direct").Index(jen.Lit("TablesInitialized"))).Dot("Scan").Call(jen.Op("&").Id("n")),
		jen.Return(jen.Id("n").Op("==").Lit(1), wrapErr.Clone()))

	f.Comment("Acquire takes one connection of the pool (a *sql.DB, or a wrapper of one with its Conn")
	f.Comment("method) under ctx, so that a change whose ledger row was never sent can tell so.")
	fn().Params(recv.Clone()).Id("Acquire").Params(ctx.Clone()).Params(rt("Ledger").Types(jen.Id("Key")), jen.Func().Params(), jen.Error()).Block(
		jen.List(jen.Id("p"), jen.Id("ok")).Op(":=").Id("l").Dot("db").Assert(jen.Interface(
			jen.Id("Conn").Params(jen.Qual("context", "Context")).Params(jen.Op("*").Qual(sqlPath, "Conn"), jen.Error()))),
		jen.If(jen.Op("!").Id("ok")).Block(jen.Return(jen.Id("l"), jen.Func().Params().Block(), jen.Nil())),
		jen.List(jen.Id("conn"), jen.Err()).Op(":=").Id("p").Dot("Conn").Call(jen.Id("ctx")),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Nil(), wrapErr.Clone())),
		jen.Return(jen.Id("ledger").Values(jen.Dict{
			jen.Id("db"): jen.Id("conn"),
			jen.Id("q"):  dbq("New").Call(jen.Id("conn")),
		}), jen.Func().Params().Block(jen.Id("conn").Dot("Close").Call()), jen.Nil()))

	g.insert()

	if mysql {
		// No INSERT ... RETURNING in MySQL: write, then read the row that
		// exists. Rows are never updated, so the read sees the row that
		// made the write a no-op, or the void row.
		f.Line().Comment("Void writes a void row unless the op key has one, then reads the row that exists.")
		fn().Params(recv.Clone()).Id("Void").Params(ctx.Clone(), jen.Id("e").Add(entry)).Params(rt("Row"), jen.Error()).Block(
			jen.Var().Err().Error(),
			jen.If(isMod.Clone()).Block(
				jen.Err().Op("=").Id("l").Dot("q").Dot("VoidModification").Call(jen.Id("ctx"), dbq("VoidModificationParams").Parens(jen.Id("params").Call(jen.Id("e"))))).
				Else().Block(
				jen.Err().Op("=").Id("l").Dot("q").Dot("VoidUsage").Call(jen.Id("ctx"), dbq("VoidUsageParams").Parens(jen.Id("params").Call(jen.Id("e"))))),
			jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(rt("Row").Values(), wrapErr.Clone())),
			jen.List(jen.Id("r"), jen.Id("found"), jen.Err()).Op(":=").Id("l").Dot("Lookup").Call(jen.Id("ctx"), jen.Id("e").Dot("Item"), jen.Id("e").Dot("Kind"), jen.Id("e").Dot("OpKey")),
			jen.If(jen.Err().Op("==").Nil().Op("&&").Op("!").Id("found")).Block(
				jen.Err().Op("=").Qual("errors", "New").Call(jen.Lit("invgen: the row of a void write is missing"))),
			jen.Return(jen.Id("r"), jen.Err()))
	} else {
		fn().Params(recv.Clone()).Id("Void").Params(ctx.Clone(), jen.Id("e").Add(entry)).Params(rt("Row"), jen.Error()).Block(
			jen.If(isMod.Clone()).Block(
				jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("VoidModification").Call(jen.Id("ctx"),
					dbq("VoidModificationParams").Parens(jen.Id("params").Call(jen.Id("e")))),
				jen.Return(g.row(), wrapErr.Clone())),
			jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("VoidUsage").Call(jen.Id("ctx"),
				dbq("VoidUsageParams").Parens(jen.Id("params").Call(jen.Id("e")))),
			jen.Return(g.row(), wrapErr.Clone()))
	}

	g.lookup()

	totalsArg := jen.Id("item")
	if mysql {
		totalsArg = dbq("ItemTotalsParams").Values(jen.Dict{jen.Id("ItemID"): jen.Id("item")})
	}
	fn().Params(recv.Clone()).Id("Totals").Params(ctx.Clone(), jen.Id("item").Id("Key")).
		Params(rt("Totals").Types(jen.Id("Key")), jen.Bool(), jen.Error()).Block(
		jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("ItemTotals").Call(jen.Id("ctx"), totalsArg),
		jen.Return(
			rt("Totals").Types(jen.Id("Key")).Values(jen.Dict{
				jen.Id("Item"):      jen.Id("item"),
				jen.Id("Capacity"):  jen.Id("r").Dot("Capacity"),
				jen.Id("Available"): jen.Id("r").Dot("Capacity").Op("+").Id("r").Dot("Used"),
				jen.Id("Buckets"):   jen.Int().Parens(jen.Id("r").Dot("Buckets")),
			}),
			jen.Id("r").Dot("Found").Op("==").Lit(1), wrapErr.Clone()))

	page := jen.Dict{jen.Id("First"): jen.Id("first"), jen.Id("After"): jen.Id("after")}
	if mysql {
		page[jen.Id("Limit")] = jen.Int32().Parens(jen.Id("limit"))
	} else {
		page[jen.Id("PageSize")] = jen.Int64().Parens(jen.Id("limit"))
	}
	fn().Params(recv.Clone()).Id("Items").Params(ctx.Clone(), jen.Id("after").Id("Key"), jen.Id("first").Bool(), jen.Id("limit").Int()).
		Params(jen.Index().Add(rt("Totals")).Types(jen.Id("Key")), jen.Error()).Block(
		jen.List(jen.Id("rows"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("ItemTotalsPage").Call(jen.Id("ctx"), dbq("ItemTotalsPageParams").Values(page)),
		jen.Id("out").Op(":=").Make(jen.Index().Add(rt("Totals")).Types(jen.Id("Key")), jen.Len(jen.Id("rows"))),
		jen.For(jen.List(jen.Id("i"), jen.Id("r")).Op(":=").Range().Id("rows")).Block(
			jen.Id("out").Index(jen.Id("i")).Op("=").Add(rt("Totals")).Types(jen.Id("Key")).Values(jen.Dict{
				jen.Id("Item"):      jen.Id("r").Dot("ItemID"),
				jen.Id("Capacity"):  jen.Id("r").Dot("Capacity"),
				jen.Id("Available"): jen.Id("r").Dot("Capacity").Op("+").Id("r").Dot("Used"),
				jen.Id("Buckets"):   jen.Int().Parens(jen.Id("r").Dot("Buckets")),
			})),
		jen.Return(jen.Id("out"), wrapErr.Clone()))

	emitSQLLayoutStore(f, p)
	if p.Holds() {
		emitSQLHoldStore(f, p)
	}

	f.Line().Comment("Flush writes a batch in two statements of direct.sql over its JSON: the insert, then the")
	f.Comment("entries whose op key another attempt holds. Both are idempotent, so a round that fails")
	f.Comment("between them is repeated whole.")
	fn().Params(recv.Clone()).Id("Flush").Params(ctx.Clone(), jen.Id("b").Op("*").Add(rt("Batch"))).Params(jen.Index().String(), jen.Error()).Block(
		jen.List(jen.Id("batch"), jen.Err()).Op(":=").Id("b").Dot("JSON").Call(),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.If(jen.List(jen.Id("_"), jen.Err()).Op(":=").Id("l").Dot("db").Dot("ExecContext").Call(jen.Id("ctx"), jen.Id("direct").Index(jen.Lit("FlushInsert")), jen.Id("batch")), jen.Err().Op("!=").Nil()).Block(
			jen.Return(jen.Nil(), wrapErr.Clone())),
		jen.List(jen.Id("rows"), jen.Err()).Op(":=").Id("l").Dot("db").Dot("QueryContext").Call(jen.Id("ctx"), jen.Id("direct").Index(jen.Lit("FlushConflicts")), jen.Id("batch")),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), wrapErr.Clone())),
		jen.Defer().Id("rows").Dot("Close").Call(),
		jen.Var().Id("conflicts").Index().String(),
		jen.For(jen.Id("rows").Dot("Next").Call()).Block(
			jen.Var().Id("item").String(),
			jen.If(jen.Err().Op(":=").Id("rows").Dot("Scan").Call(jen.Op("&").Id("item")), jen.Err().Op("!=").Nil()).Block(
				jen.Return(jen.Nil(), wrapErr.Clone())),
			jen.Id("conflicts").Op("=").Append(jen.Id("conflicts"), jen.Id("item"))),
		jen.Return(jen.Id("conflicts"), jen.Id("dbError").Call(jen.Id("rows").Dot("Err").Call())))
}

// emitDBError renders dbError, which wraps the driver's errors in
// runtime.DBError: by MySQL error number and SQLSTATE, or by SQLite result
// code; never by message text.
func emitDBError(f *jen.File, p *Prefix) {
	f.Line()
	kind := func(k string) jen.Code { return jen.Id("kind").Op("=").Add(rt(k)) }
	var body []jen.Code
	if p.Engine == "mysql" {
		f.Comment("dbError tells the runtime what an error of go-sql-driver/mysql means: a server error")
		f.Comment("rolled its statement back (1062 is a duplicate key, 1213 a deadlock and 1205 a lock wait")
		f.Comment("timeout, which a retry may pass, SQLSTATE class 42 a schema or access error); ErrBadConn")
		f.Comment("and a failed dial mean that nothing was sent.")
		body = []jen.Code{
			jen.Var().Id("me").Op("*").Qual(mysqlPath, "MySQLError"),
			jen.Var().Id("oe").Op("*").Qual("net", "OpError"),
			jen.Switch().Block(
				jen.Case(jen.Qual("errors", "As").Call(jen.Err(), jen.Op("&").Id("me")).Op("&&").Id("me").Dot("Number").Op("==").Lit(1062)).Block(kind("DBErrUniqueViolation")),
				jen.Case(jen.Qual("errors", "As").Call(jen.Err(), jen.Op("&").Id("me")).Op("&&").Parens(jen.Id("me").Dot("Number").Op("==").Lit(1213).Op("||").Id("me").Dot("Number").Op("==").Lit(1205))).Block(kind("DBErrConflict")),
				jen.Case(jen.Qual("errors", "As").Call(jen.Err(), jen.Op("&").Id("me")).Op("&&").Id("me").Dot("SQLState").Index(jen.Lit(0)).Op("==").LitRune('4').Op("&&").Id("me").Dot("SQLState").Index(jen.Lit(1)).Op("==").LitRune('2')).Block(kind("DBErrSchema")),
				jen.Case(jen.Qual("errors", "As").Call(jen.Err(), jen.Op("&").Id("me"))).Block(kind("DBErrRejected")),
				jen.Case(jen.Qual("errors", "Is").Call(jen.Err(), jen.Qual("database/sql/driver", "ErrBadConn")),
					jen.Qual("errors", "As").Call(jen.Err(), jen.Op("&").Id("oe")).Op("&&").Id("oe").Dot("Op").Op("==").Lit("dial")).Block(kind("DBErrNotSent")),
			),
		}
	} else {
		f.Comment("dbError tells the runtime what an error of ncruces/go-sqlite3 means: a unique or")
		f.Comment("primary key constraint is a duplicate key; the generic SQLITE_ERROR a schema or syntax")
		f.Comment("error; a busy or locked file is a conflict a retry may pass; a read-only database and a")
		f.Comment("refused value rolled their statement back. Anything else (an I/O error, an interrupt)")
		f.Comment("may have come after the commit, and stays in doubt.")
		code := func(c string) jen.Code { return jen.Qual(sqlitePath, c) }
		primary := func() *jen.Statement { return jen.Qual(sqlitePath, "ErrorCode").Parens(jen.Id("x")) }
		body = []jen.Code{
			jen.Comment("The driver returns an *sqlite3.Error or a bare result code: both convert."),
			jen.Var().Id("x").Qual(sqlitePath, "ExtendedErrorCode"),
			jen.Switch().Block(
				jen.Case(jen.Op("!").Qual("errors", "As").Call(jen.Err(), jen.Op("&").Id("x"))),
				jen.Case(jen.Id("x").Op("==").Add(code("CONSTRAINT_UNIQUE")), jen.Id("x").Op("==").Add(code("CONSTRAINT_PRIMARYKEY"))).Block(kind("DBErrUniqueViolation")),
				jen.Case(primary().Op("==").Add(code("ERROR"))).Block(kind("DBErrSchema")),
				jen.Case(primary().Op("==").Add(code("BUSY")), primary().Op("==").Add(code("LOCKED"))).Block(kind("DBErrConflict")),
				jen.Case(jen.Qual("slices", "Contains").Call(jen.Index().Qual(sqlitePath, "ErrorCode").Values(
					code("READONLY"), code("CONSTRAINT"), code("TOOBIG"), code("MISMATCH"), code("RANGE")), primary())).Block(kind("DBErrRejected")),
			),
		}
	}
	all := append([]jen.Code{
		jen.If(jen.Err().Op("==").Nil().Op("||").Qual("errors", "Is").Call(jen.Err(), jen.Qual(sqlPath, "ErrNoRows"))).Block(jen.Return(jen.Err())),
		jen.Id("kind").Op(":=").Add(rt("DBErrUnknown")),
	}, body...)
	all = append(all, jen.Return(jen.Op("&").Add(rt("DBError")).Values(jen.Dict{jen.Id("Kind"): jen.Id("kind"), jen.Id("Err"): jen.Err()})))
	f.Func().Id("dbError").Params(jen.Err().Error()).Error().Block(all...)
}

// emitSQLLayoutStore renders the ledger's invrt.LayoutStore methods over
// the layout queries of a mysql or sqlite prefix.
func emitSQLLayoutStore(f *jen.File, p *Prefix) {
	mysql := p.Engine == "mysql"
	fn := func() *jen.Statement { f.Line(); return f.Func() }
	dbq := func(name string) *jen.Statement { return jen.Qual(p.DBImportPath, name) }
	ctx := jen.Id("ctx").Qual("context", "Context")
	recv := jen.Id("l").Id("ledger")
	wrapErr := jen.Id("dbError").Call(jen.Err())
	intType := func(c jen.Code) jen.Code {
		if mysql {
			return jen.Int32().Parens(c)
		}
		return jen.Int64().Parens(c)
	}
	fields := func(l string) jen.Dict {
		return jen.Dict{
			jen.Id("Namespace"):  jen.Id(l).Dot("Namespace"),
			jen.Id("Shards"):     intType(jen.Id(l).Dot("Shards")),
			jen.Id("LedgerMode"): jen.Id(l).Dot("Ledger"),
			jen.Id("KeyType"):    jen.Id(l).Dot("KeyType"),
			jen.Id("MaxKeyLen"):  intType(jen.Id(l).Dot("MaxKeyLen")),
		}
	}
	retired := jen.Id("r").Dot("Retired")
	if !mysql {
		retired = jen.Id("r").Dot("Retired").Op("!=").Lit(0)
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
			jen.Id("Retired"): retired,
			jen.Id("Version"): jen.Id("r").Dot("Version"),
		})))

	if mysql {
		f.Line().Comment("RecordLayout records want unless a layout is recorded, then reads the recorded one.")
		fn().Params(recv.Clone()).Id("RecordLayout").Params(ctx.Clone(), jen.Id("want").Add(rt("Layout"))).Params(rt("LayoutRecord"), jen.Error()).Block(
			jen.If(jen.Err().Op(":=").Id("l").Dot("q").Dot("RecordLayout").Call(jen.Id("ctx"), dbq("RecordLayoutParams").Values(fields("want"))), jen.Err().Op("!=").Nil()).Block(
				jen.Return(rt("LayoutRecord").Values(), wrapErr.Clone())),
			jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("LoadLayout").Call(jen.Id("ctx")),
			jen.Return(jen.Id("layoutRecord").Call(jen.Id("r")), wrapErr.Clone()))
	} else {
		fn().Params(recv.Clone()).Id("RecordLayout").Params(ctx.Clone(), jen.Id("want").Add(rt("Layout"))).Params(rt("LayoutRecord"), jen.Error()).Block(
			jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("RecordLayout").Call(jen.Id("ctx"), dbq("RecordLayoutParams").Values(fields("want"))),
			jen.Return(jen.Id("layoutRecord").Call(dbq("LoadLayoutRow").Parens(jen.Id("r"))), wrapErr.Clone()))
	}

	f.Line().Comment("LoadLayout reads the record; a database without the prefix's tables records none.")
	fn().Params(recv.Clone()).Id("LoadLayout").Params(ctx.Clone()).Params(rt("LayoutRecord"), jen.Bool(), jen.Error()).Block(
		jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("LoadLayout").Call(jen.Id("ctx")),
		jen.If(jen.Qual("errors", "Is").Call(jen.Err(), jen.Qual(sqlPath, "ErrNoRows"))).Block(
			jen.Return(rt("LayoutRecord").Values(), jen.False(), jen.Nil())),
		jen.If(jen.Err().Op("!=").Nil()).Block(
			jen.If(jen.List(jen.Id("ok"), jen.Id("terr")).Op(":=").Id("l").Dot("TablesInitialized").Call(jen.Id("ctx")), jen.Id("terr").Op("==").Nil().Op("&&").Op("!").Id("ok")).Block(
				jen.Return(rt("LayoutRecord").Values(), jen.False(), jen.Nil())),
			jen.Return(rt("LayoutRecord").Values(), jen.False(), wrapErr.Clone())),
		jen.Return(jen.Id("layoutRecord").Call(jen.Id("r")), jen.True(), jen.Nil()))

	fn().Params(recv.Clone()).Id("RetireLayout").Params(ctx.Clone(), jen.Id("version").Int64()).Params(jen.Bool(), jen.Error()).Block(
		jen.List(jen.Id("n"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("RetireLayout").Call(jen.Id("ctx"), jen.Id("version")),
		jen.Return(jen.Id("n").Op("==").Lit(1), wrapErr.Clone()))

	replace := fields("to")
	replace[jen.Id("Version")] = jen.Id("version")
	fn().Params(recv.Clone()).Id("ReplaceLayout").Params(ctx.Clone(), jen.Id("version").Int64(), jen.Id("to").Add(rt("Layout"))).Params(jen.Bool(), jen.Error()).Block(
		jen.List(jen.Id("n"), jen.Err()).Op(":=").Id("l").Dot("q").Dot("ReplaceLayout").Call(jen.Id("ctx"), dbq("ReplaceLayoutParams").Values(replace)),
		jen.Return(jen.Id("n").Op("==").Lit(1), wrapErr.Clone()))
}

// emitSQLHoldStore renders the ledger's invrt.HoldStore methods over the
// hold queries of a mysql or sqlite prefix. Neither engine writes two
// tables in one statement, so a hold and its purchase row, and its end and
// its release row, are written in one transaction (invrt.SQLTx); the end
// changes the hold first, which takes its row's lock before anything else.
func emitSQLHoldStore(f *jen.File, p *Prefix) {
	fn := func() *jen.Statement { f.Line(); return f.Func() }
	dbq := func(name string) *jen.Statement { return jen.Qual(p.DBImportPath, name) }
	entry := rt("Entry").Types(jen.Id("Key"))
	ctx := jen.Id("ctx").Qual("context", "Context")
	recv := jen.Id("l").Id("ledger")
	e := func(field string) *jen.Statement { return jen.Id("e").Dot(field) }
	key := func(item, holdKey jen.Code) jen.Dict {
		return jen.Dict{jen.Id("ItemID"): item, jen.Id("HoldKey"): holdKey}
	}
	inTx := func(body ...jen.Code) *jen.Statement {
		return rt("SQLTx").Call(jen.Id("ctx"), jen.Id("l").Dot("db"), jen.Func().Params(jen.Id("tx").Op("*").Qual(sqlPath, "Tx")).Error().Block(
			append([]jen.Code{jen.Id("q").Op(":=").Id("l").Dot("q").Dot("WithTx").Call(jen.Id("tx"))}, body...)...))
	}
	limit := jen.Int64().Parens(jen.Id("limit"))
	if p.Engine == "mysql" {
		limit = jen.Int32().Parens(jen.Id("limit"))
	}

	f.Var().Id("_").Add(rt("HoldStore")).Types(jen.Id("Key")).Op("=").Id("ledger").Values()

	f.Line().Comment("RefuseHolds says why the ledger keeps no holds: its pool cannot begin a transaction.")
	fn().Params(recv.Clone()).Id("RefuseHolds").Params().Error().Block(
		jen.Return(rt("SQLTxRefusal").Call(jen.Id("l").Dot("db"))))

	f.Line().Comment("InsertHold writes the purchase row e and its open hold in one transaction.")
	fn().Params(recv.Clone()).Id("InsertHold").Params(ctx.Clone(), jen.Id("e").Add(entry), jen.Id("ttl").Qual("time", "Duration")).Error().Block(
		jen.Return(jen.Id("dbError").Call(inTx(
			jen.If(jen.Err().Op(":=").Id("q").Dot("InsertUsage").Call(jen.Id("ctx"), jen.Id("params").Call(jen.Id("e"))), jen.Err().Op("!=").Nil()).Block(
				jen.Return(jen.Err())),
			jen.Return(jen.Id("q").Dot("InsertHold").Call(jen.Id("ctx"), dbq("InsertHoldParams").Values(jen.Dict{
				jen.Id("ItemID"):  e("Item"),
				jen.Id("HoldKey"): e("OpKey"),
				jen.Id("Units"):   jen.Op("-").Add(e("Delta")),
				jen.Id("TtlMs"):   jen.Id("ttl").Dot("Milliseconds").Call(),
			})))))))

	f.Line().Comment("EndHold ends the open hold of e's op key and writes its release row, of the hold's")
	f.Comment("units, in one transaction; nothing when no open hold is there.")
	fn().Params(recv.Clone()).Id("EndHold").Params(ctx.Clone(), jen.Id("e").Add(entry)).Params(jen.Bool(), jen.Error()).Block(
		jen.Id("ended").Op(":=").False(),
		jen.Err().Op(":=").Add(inTx(
			jen.List(jen.Id("n"), jen.Err()).Op(":=").Id("q").Dot("EndHold").Call(jen.Id("ctx"), dbq("EndHoldParams").Values(key(e("Item"), e("OpKey")))),
			jen.If(jen.Err().Op("!=").Nil().Op("||").Id("n").Op("==").Lit(0)).Block(jen.Return(jen.Err())),
			jen.List(jen.Id("units"), jen.Err()).Op(":=").Id("q").Dot("HoldUnits").Call(jen.Id("ctx"), dbq("HoldUnitsParams").Values(key(e("Item"), e("OpKey")))),
			jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Err())),
			jen.Id("e").Dot("Kind").Op(",").Id("e").Dot("Delta").Op("=").Add(rt("KindRelease")).Op(",").Id("units"),
			jen.Id("ended").Op("=").True(),
			jen.Return(jen.Id("q").Dot("InsertUsage").Call(jen.Id("ctx"), jen.Id("params").Call(jen.Id("e")))))),
		jen.Return(jen.Id("ended").Op("&&").Err().Op("==").Nil(), jen.Id("dbError").Call(jen.Err())))

	emitHoldReads(f, p, jen.Qual(sqlPath, "ErrNoRows"), limit, func(c jen.Code) jen.Code { return jen.Id("dbError").Call(c) })
}
