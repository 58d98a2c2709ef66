package generator

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Queries returns the statements of p's query.sql by name (InsertUsage,
// ItemTotals, LoadLayout, ...), with every parameter written $n as sqlc
// numbers them: positional ones as they are, named ones (sqlc.arg(x)) after
// them in the order they first appear. `invgen admin` runs them, so that it
// speaks to a prefix's tables with the statements its generated package
// runs through sqlc.
func Queries(m *Model, p *Prefix) (map[string]string, error) {
	text, err := sqlTemplate("query.sql")(m, p)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, block := range strings.Split(string(text), "-- name: ")[1:] {
		head, body, _ := strings.Cut(block, "\n")
		name, _, _ := strings.Cut(head, " ")
		out[name] = numberArgs(strings.TrimSpace(stripComments(body)))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("query.sql of %s holds no named query", p.Name)
	}
	return out, nil
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
