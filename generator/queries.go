package generator

import (
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
)

// Queries returns the statements of p's query.sql (and, on the mysql and
// sqlite engines, of its direct.sql) by name (InsertUsage, ItemTotals,
// LoadLayout, FlushInsert, ...), with every parameter written $n as sqlc
// numbers them. On PostgreSQL that is positional ones as they are, named
// ones (sqlc.arg(x)) after them in the order they first appear; on the
// engines of ? parameters, every parameter in the order it first appears
// in the text. `invgen admin` runs them, so that it speaks to a prefix's
// tables with the statements its generated package runs.
func Queries(m *Model, p *Prefix) (map[string]string, error) {
	files := []string{"query.sql"}
	if m.Engine != "postgresql" {
		files = append(files, "direct.sql")
	}
	out := map[string]string{}
	for _, f := range files {
		text, err := sqlTemplate(f)(m, p)
		if err != nil {
			return nil, err
		}
		maps.Copy(out, namedStatements(m.Engine, text))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("query.sql of %s holds no named query", p.Name)
	}
	return out, nil
}

// namedStatements splits a rendered file of "-- name: Name" statements into
// its statements by name, comments and trailing semicolons dropped, with
// their parameters numbered $n for engine (numberArgs on PostgreSQL,
// numberInOrder on the engines of ? parameters).
func namedStatements(engine string, text []byte) map[string]string {
	out := map[string]string{}
	for _, block := range strings.Split(string(text), "-- name: ")[1:] {
		head, body, _ := strings.Cut(block, "\n")
		name, _, _ := strings.Cut(strings.TrimSpace(head), " ")
		q := strings.TrimSuffix(strings.TrimSpace(stripComments(body)), ";")
		if engine == "postgresql" {
			out[name] = numberArgs(q)
		} else {
			out[name] = numberInOrder(q)
		}
	}
	return out
}

var anyParam = regexp.MustCompile(`\?|sqlc\.arg\((\w+)\)`)

// numberInOrder numbers the parameters of a statement of the mysql or
// sqlite engine, ? or sqlc.arg(x), in the order they first appear: a
// repeated sqlc.arg keeps its number.
func numberInOrder(q string) string {
	n := 0
	seen := map[string]int{}
	return anyParam.ReplaceAllStringFunc(q, func(s string) string {
		if s == "?" {
			n++
			return "$" + strconv.Itoa(n)
		}
		name := anyParam.FindStringSubmatch(s)[1]
		if _, ok := seen[name]; !ok {
			n++
			seen[name] = n
		}
		return "$" + strconv.Itoa(seen[name])
	})
}

// SchemaSQL is p's schema.sql: the statements CreateTables runs.
func SchemaSQL(m *Model, p *Prefix) (string, error) {
	b, err := sqlTemplate("schema.sql")(m, p)
	return string(b), err
}

var (
	positional = regexp.MustCompile(`\$(\d+)`)
	named      = regexp.MustCompile(`sqlc\.arg\((\w+)\)`)
)

func numberArgs(q string) string {
	n := 0
	for _, m := range positional.FindAllStringSubmatch(q, -1) {
		v, _ := strconv.Atoi(m[1])
		n = max(n, v)
	}
	seen := map[string]int{}
	return named.ReplaceAllStringFunc(q, func(s string) string {
		name := named.FindStringSubmatch(s)[1]
		if _, ok := seen[name]; !ok {
			n++
			seen[name] = n
		}
		return "$" + strconv.Itoa(seen[name])
	})
}

func stripComments(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}
