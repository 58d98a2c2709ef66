package generator

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/mod/modfile"

	invrt "github.com/invgen/invgen/runtime"
)

// Limits of the spec.
const (
	// MaxIdentLen is PostgreSQL's identifier limit (NAMEDATALEN − 1), which
	// SQLite specs keep too, so that they move to PostgreSQL unchanged.
	MaxIdentLen = 63
	// MaxIdentLenMySQL is MySQL's and MariaDB's limit of table and index
	// names.
	MaxIdentLenMySQL = 64
	// MaxIndexKeyMySQL is InnoDB's limit of an index key, in bytes (the
	// DYNAMIC row format, the default of MySQL 8 and MariaDB 10.11).
	MaxIndexKeyMySQL = 3072
	// MaxShards is the largest number of hash-tag shards per prefix.
	MaxShards = 1024
	// MaxKeyLenLimit is the largest max_key_len of a string key.
	MaxKeyLenLimit = 1024
	// DefaultShards, DefaultMaxKeyLen, DefaultNamespace and DefaultLedger
	// apply where the spec says nothing.
	DefaultShards    = 16
	DefaultMaxKeyLen = 64
	DefaultNamespace = "inv"
	DefaultLedger    = "sync"
	// maxOpKeyLen must match runtime.MaxOpKeyLen.
	maxOpKeyLen = 128
)

// Model is a validated spec with every name computed: what the emitters
// read. Nothing in it depends on map order.
type Model struct {
	// SpecPath is the spec file; OutDir is the output directory on disk.
	SpecPath string
	OutDir   string
	// ImportPath is the Go import path of OutDir.
	ImportPath string
	Engine     string
	Namespace  string
	Prefixes   []*Prefix
}

// Prefix is the model of one prefix.
type Prefix struct {
	Name    string // as in the spec: flash_sale
	Package string // Go package name: flashsale
	Dir     string // directory below OutDir, slash-separated: the package's name
	// ImportPath and DBImportPath are the Go import paths of the prefix's
	// package and of its sqlc package.
	ImportPath, DBImportPath string
	Key                      string // string | int64 | uuid
	MaxKeyLen                int    // string keys; 0 otherwise
	Ledger                   string
	Shards                   int
	// Buckets is the number of stock buckets Init splits an item into.
	Buckets int
	// SQL names.
	ModTable, UsageTable   string
	LayoutTable            string
	ModUnique, UsageUnique string
	// HoldTable holds the prefix's holds; HoldUnique is its unique key
	// (item, hold key) and HoldDue its index of open holds by deadline.
	HoldTable, HoldUnique, HoldDue string
	ItemSQLType                    string
	MaxOpKeyLen                    int
	// Engine is the model's engine; ItemGoType is the key's Go type as
	// sqlc's configuration names it, and FlushItem the SQL that turns an
	// item of the flusher's JSON batch (b.item, or b.value ->> 0 in SQLite)
	// into the key column's type (MySQL and SQLite).
	Engine, ItemGoType, FlushItem string
}

// Engines are the SQL databases a spec's engine may name.
var Engines = []string{"postgresql", "mysql", "sqlite"}

// identLimit is the longest table or index name of engine, and the
// database it is the limit of.
func identLimit(engine string) (int, string) {
	switch engine {
	case "mysql":
		return MaxIdentLenMySQL, "MySQL's"
	case "sqlite":
		return MaxIdentLen, "PostgreSQL's (kept by SQLite specs, so that they move to any engine)"
	}
	return MaxIdentLen, "PostgreSQL's"
}

// keyColumns sets p's key column types for engine: the SQL type, the Go
// type sqlc maps it to, and the flusher's conversion.
func keyColumns(engine string, p *Prefix) {
	p.Engine = engine
	switch engine {
	case "mysql":
		// VARBINARY: byte-for-byte comparison, no trailing-space padding.
		switch p.Key {
		case "string":
			p.ItemSQLType, p.ItemGoType, p.FlushItem = fmt.Sprintf("VARBINARY(%d)", p.MaxKeyLen), "string", "CAST(b.item AS BINARY)"
		case "int64":
			p.ItemSQLType, p.ItemGoType, p.FlushItem = "BIGINT", "int64", "CAST(b.item AS SIGNED)"
		case "uuid":
			p.ItemSQLType, p.ItemGoType, p.FlushItem = "CHAR(36) CHARACTER SET ascii COLLATE ascii_bin", "github.com/google/uuid.UUID", "b.item"
		}
	case "sqlite":
		switch p.Key {
		case "string":
			p.ItemSQLType, p.ItemGoType, p.FlushItem = "TEXT", "string", "b.value ->> 0"
		case "int64":
			p.ItemSQLType, p.ItemGoType, p.FlushItem = "INTEGER", "int64", "CAST(b.value ->> 0 AS INTEGER)"
		case "uuid":
			p.ItemSQLType, p.ItemGoType, p.FlushItem = "TEXT", "github.com/google/uuid.UUID", "b.value ->> 0"
		}
	default:
		switch p.Key {
		case "string":
			p.ItemSQLType = fmt.Sprintf("varchar(%d)", p.MaxKeyLen)
		case "int64":
			p.ItemSQLType = "bigint"
		case "uuid":
			p.ItemSQLType = "uuid"
		}
	}
}

// indexKeyBytes is the longest key, in bytes, of p's unique index on
// (item_id, kind, op_key) in MySQL: VARBINARY counts bytes, the ascii kind
// one byte a character, the uuid column 36.
func indexKeyBytes(p *Prefix) int {
	item := 8
	switch p.Key {
	case "string":
		item = p.MaxKeyLen
	case "uuid":
		item = 36
	}
	return item + 8 + p.MaxOpKeyLen
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
var namespaceRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// NewModel validates s and computes its model. Every problem is reported,
// each at its position, as Errors.
func NewModel(s *Spec) (*Model, error) {
	c := &errs{file: s.Path}
	m := &Model{SpecPath: s.Path, Engine: "postgresql", Namespace: DefaultNamespace}

	switch {
	case s.Version.bad:
	case !s.Version.Set:
		c.add(s.docPos, "version is missing (this invgen reads version: 1)")
	case s.Version.Value != 1:
		c.add(s.Version.Pos, "unsupported version %d (this invgen reads version: 1)", s.Version.Value)
	}

	if s.Engine.given() {
		switch s.Engine.Value {
		case "postgresql", "mysql", "sqlite":
			m.Engine = s.Engine.Value
		default:
			c.add(s.Engine.Pos, "unknown engine %q (known: %s)", s.Engine.Value, strings.Join(Engines, ", "))
		}
	}

	if s.Namespace.given() {
		if !namespaceRE.MatchString(s.Namespace.Value) {
			c.add(s.Namespace.Pos, "redis.namespace %q must match %s", s.Namespace.Value, namespaceRE)
		}
		m.Namespace = s.Namespace.Value
	}

	ledger := DefaultLedger
	if s.Ledger.given() {
		if checkLedger(c, s.Ledger) {
			ledger = s.Ledger.Value
		}
	}
	shards := DefaultShards
	if s.Shards.given() {
		if checkShards(c, "defaults.shards", s.Shards) {
			shards = s.Shards.Value
		}
	}

	buckets := 1
	if s.Buckets.given() && checkBuckets(c, "defaults.buckets", s.Buckets) {
		buckets = s.Buckets.Value
	}

	m.OutDir, m.ImportPath = resolveOutput(c, s)

	if len(s.Prefixes) == 0 && !s.prefixesBad {
		c.add(s.PrefixesPos, "no prefixes: the spec must list at least one")
	}
	byName := map[string]*PrefixSpec{}
	byPkg := map[string]*PrefixSpec{}
	for i := range s.Prefixes {
		ps := &s.Prefixes[i]
		p := &Prefix{Ledger: ledger, Shards: shards, Buckets: buckets, MaxOpKeyLen: maxOpKeyLen}
		nameOK := checkPrefixName(c, ps)
		p.Name = ps.Name.Value
		if !nameOK {
			// Still check the rest of the entry, so one round shows all.
			checkPrefixFields(c, ps, p)
			continue
		}
		p.Package = strings.ReplaceAll(p.Name, "_", "")
		if first, dup := byName[p.Name]; dup {
			c.add(ps.Name.Pos, "duplicate prefix %q (first at line %d)", p.Name, first.Name.Pos.Line)
			continue
		}
		byName[p.Name] = ps
		if first, dup := byPkg[p.Package]; dup {
			c.add(ps.Name.Pos, "prefix %q has Go package name %q, like prefix %q at line %d", p.Name, p.Package, first.Name.Value, first.Name.Pos.Line)
			continue
		}
		byPkg[p.Package] = ps
		if goReserved[p.Package] {
			c.add(ps.Name.Pos, "prefix %q would be Go package %q, which is reserved in Go", p.Name, p.Package)
		}
		// The directory is the package's name: Go names a package after the
		// last element of its import path, and tools and readers expect the
		// two to agree (a flash_sale/ holding package flashsale needs an
		// alias everywhere it is imported to read right).
		p.Dir = p.Package
		p.ImportPath = path.Join(m.ImportPath, p.Dir)
		p.DBImportPath = path.Join(p.ImportPath, "db")
		p.ModTable = p.Name + "_inventory_modification_record"
		p.UsageTable = p.Name + "_inventory_usage_record"
		p.ModUnique = p.Name + "_modification_op_key"
		p.UsageUnique = p.Name + "_usage_op_key"
		p.LayoutTable = p.Name + "_inventory_layout"
		p.HoldTable = p.Name + "_inventory_hold"
		p.HoldUnique = p.Name + "_hold_key"
		p.HoldDue = p.Name + "_hold_due"
		for _, id := range []string{p.ModTable, p.UsageTable, p.ModUnique, p.UsageUnique, p.LayoutTable, p.LayoutTable + "_id_check", p.HoldTable} {
			if limit, whose := identLimit(m.Engine); len(id) > limit {
				c.add(ps.Name.Pos, "prefix %q makes the SQL name %s, %d bytes long, over %s limit of %d; shorten the name to at most %d bytes",
					p.Name, id, len(id), whose, limit, limit-(len(id)-len(p.Name)))
				break
			}
		}

		checkPrefixFields(c, ps, p)
		keyColumns(m.Engine, p)
		if m.Engine == "mysql" && p.Key != "" && indexKeyBytes(p) > MaxIndexKeyMySQL {
			c.add(ps.Pos, "prefix %q: its unique key (item_id, kind, op_key) would be %d bytes long, over InnoDB's limit of %d; lower max_key_len",
				p.Name, indexKeyBytes(p), MaxIndexKeyMySQL)
		}
		m.Prefixes = append(m.Prefixes, p)
	}
	if err := c.err(); err != nil {
		c.sort()
		return nil, err
	}
	sort.Slice(m.Prefixes, func(i, j int) bool { return m.Prefixes[i].Name < m.Prefixes[j].Name })
	return m, nil
}

// sort orders the errors by position.
func (c *errs) sort() {
	sort.SliceStable(c.list, func(i, j int) bool {
		a, b := c.list[i].Pos, c.list[j].Pos
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
}

// checkPrefixFields checks and copies the key type, max_key_len, ledger and
// shards of one prefix.
func checkPrefixFields(c *errs, ps *PrefixSpec, p *Prefix) {
	switch {
	case ps.Key.bad:
	case !ps.Key.Set:
		c.add(ps.Pos, "prefix %q has no key type (key: string | int64 | uuid)", p.Name)
	case ps.Key.Value == "string":
		p.Key, p.MaxKeyLen = "string", DefaultMaxKeyLen
	case ps.Key.Value == "int64":
		p.Key = "int64"
	case ps.Key.Value == "uuid":
		p.Key = "uuid"
	default:
		c.add(ps.Key.Pos, "unknown key type %q (known: string, int64, uuid)", ps.Key.Value)
	}
	if ps.MaxKeyLen.given() {
		switch {
		case ps.Key.given() && ps.Key.Value != "string":
			c.add(ps.MaxKeyLen.Pos, "max_key_len applies to string keys only, not %s", ps.Key.Value)
		case ps.MaxKeyLen.Value < 1 || ps.MaxKeyLen.Value > MaxKeyLenLimit:
			c.add(ps.MaxKeyLen.Pos, "max_key_len %d is out of range 1..%d", ps.MaxKeyLen.Value, MaxKeyLenLimit)
		default:
			p.MaxKeyLen = ps.MaxKeyLen.Value
		}
	}
	if ps.Ledger.given() && checkLedger(c, ps.Ledger) {
		p.Ledger = ps.Ledger.Value
	}
	if ps.Shards.given() && checkShards(c, "shards", ps.Shards) {
		p.Shards = ps.Shards.Value
	}
	if ps.Buckets.given() && checkBuckets(c, "buckets", ps.Buckets) {
		p.Buckets = ps.Buckets.Value
	}
	if p.Buckets > p.Shards {
		pos := ps.Pos
		if ps.Buckets.given() {
			pos = ps.Buckets.Pos
		}
		c.add(pos, "buckets %d exceeds the prefix's shards %d: each bucket needs a shard of its own", p.Buckets, p.Shards)
		p.Buckets = p.Shards
	}
}

func checkPrefixName(c *errs, ps *PrefixSpec) bool {
	switch {
	case ps.Name.bad:
	case !ps.Name.Set:
		c.add(ps.Pos, "prefix has no name")
	case !nameRE.MatchString(ps.Name.Value):
		c.add(ps.Name.Pos, "prefix name %q must match %s (lower-case letters, digits and _, starting with a letter)", ps.Name.Value, nameRE)
	case sqlReserved[ps.Name.Value]:
		c.add(ps.Name.Pos, "prefix name %q is a reserved word in SQL", ps.Name.Value)
	case goReserved[ps.Name.Value]:
		c.add(ps.Name.Pos, "prefix name %q is reserved in Go", ps.Name.Value)
	default:
		return true
	}
	return false
}

func checkLedger(c *errs, f Field[string]) bool {
	switch f.Value {
	case "sync", "stream":
		return true
	default:
		c.add(f.Pos, "unknown ledger mode %q (known: sync, stream)", f.Value)
	}
	return false
}

func checkShards(c *errs, what string, f Field[int]) bool {
	if f.Value < 1 || f.Value > MaxShards {
		c.add(f.Pos, "%s %d is out of range 1..%d", what, f.Value, MaxShards)
		return false
	}
	return true
}

func checkBuckets(c *errs, what string, f Field[int]) bool {
	if f.Value < 1 || f.Value > invrt.MaxBuckets {
		c.add(f.Pos, "%s %d is out of range 1..%d", what, f.Value, invrt.MaxBuckets)
		return false
	}
	return true
}

// resolveOutput checks the output directory and finds its Go import path
// from the nearest go.mod at or above it.
func resolveOutput(c *errs, s *Spec) (dir, importPath string) {
	if s.Output.bad {
		return "", ""
	}
	if !s.Output.Set {
		c.add(s.docPos, "output is missing (the directory to write packages to, relative to the spec)")
		return "", ""
	}
	out := filepath.FromSlash(s.Output.Value)
	if !filepath.IsLocal(out) {
		c.add(s.Output.Pos, "output %q must be a relative path inside the spec's directory", s.Output.Value)
		return "", ""
	}
	specDir, err := filepath.Abs(filepath.Dir(s.Path))
	if err != nil {
		c.add(s.Output.Pos, "output: %v", err)
		return "", ""
	}
	dir = filepath.Join(specDir, out)
	for mod := dir; ; mod = filepath.Dir(mod) {
		data, err := os.ReadFile(filepath.Join(mod, "go.mod"))
		if err == nil {
			mp := modfile.ModulePath(data)
			if mp == "" {
				c.add(s.Output.Pos, "output: %s has no module line", filepath.Join(mod, "go.mod"))
				return "", ""
			}
			rel, _ := filepath.Rel(mod, dir)
			return dir, path.Join(mp, filepath.ToSlash(rel))
		}
		if parent := filepath.Dir(mod); parent == mod {
			c.add(s.Output.Pos, "output %q is not inside a Go module: no go.mod at or above it", s.Output.Value)
			return "", ""
		}
	}
}

func sortStrings(s []string) { sort.Strings(s) }

// goReserved holds Go keywords and names a package cannot usefully have
// (a package named init cannot be imported under its own name).
var goReserved = setOf(`break case chan const continue default defer else fallthrough for func go goto if
import interface map package range return select struct switch type var
init main internal testdata vendor`)

// sqlReserved holds PostgreSQL's reserved key words (reserved, and reserved
// that can be function or type names) and those of SQL:2016 that tools
// commonly refuse as bare identifiers.
var sqlReserved = setOf(`all analyse analyze and any array as asc asymmetric authorization binary both
case cast check collate collation column concurrently constraint create cross current_catalog
current_date current_role current_schema current_time current_timestamp current_user default
deferrable desc distinct do else end except false fetch for foreign freeze from full grant group
having ilike in initially inner intersect into is isnull join lateral leading left like limit
localtime localtimestamp natural not notnull null offset on only or order outer overlaps placing
primary references returning right select session_user similar some symmetric system_user table
tablesample then to trailing true union unique user using variadic verbose when where window with`)

func setOf(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}

// Holds reports whether the prefix has holds: the sync ledger, on every
// engine (the stream ledger refuses them, see docs/holds.md).
func (p *Prefix) Holds() bool { return p.Ledger != "stream" }
