package generator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Pos is a position in the spec file, 1-based.
type Pos struct {
	Line, Col int
}

// Spec is a decoded inventory.yaml, before validation. Every field keeps
// the position it was read from, so validation can point at it.
type Spec struct {
	// Path is the spec file as given.
	Path string

	Version   Field[int]
	Output    Field[string]
	Engine    Field[string]
	Namespace Field[string]
	Ledger    Field[string] // defaults.ledger
	Shards    Field[int]    // defaults.shards
	Buckets   Field[int]    // defaults.buckets
	Prefixes  []PrefixSpec
	// PrefixesPos is where the prefixes list starts (or the document, when
	// it is missing).
	PrefixesPos Pos
	docPos      Pos
	prefixesBad bool // prefixes is not a list (already reported)
}

// PrefixSpec is one entry of the prefixes list.
type PrefixSpec struct {
	Pos       Pos
	Name      Field[string]
	Key       Field[string]
	MaxKeyLen Field[int]
	Ledger    Field[string]
	Shards    Field[int]
	Buckets   Field[int]
}

// Field is a spec value with its position; Set is false when the spec does
// not give it.
type Field[T any] struct {
	Value T
	Pos   Pos
	Set   bool
	bad   bool // given, but not of the right type (already reported)
}

// given reports whether the spec gives a usable value.
func (f Field[T]) given() bool { return f.Set && !f.bad }

// Error is a problem in a spec, at a position.
type Error struct {
	File string
	Pos  Pos
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Pos.Line, e.Pos.Col, e.Msg)
}

// Errors is every problem found in one spec, in file order.
type Errors []*Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// errs collects spec errors.
type errs struct {
	file string
	list Errors
}

func (c *errs) add(p Pos, format string, args ...any) {
	c.list = append(c.list, &Error{File: c.file, Pos: p, Msg: fmt.Sprintf(format, args...)})
}

func (c *errs) err() error {
	if len(c.list) == 0 {
		return nil
	}
	return c.list
}

func posOf(n *yaml.Node) Pos { return Pos{Line: n.Line, Col: n.Column} }

// Load reads and decodes the spec at path. Unknown fields and values of the
// wrong type are errors with their position; Load does not validate values
// (see NewModel). When the YAML itself decodes, Load returns the spec along
// with such errors, so that NewModel can report the rest at once.
func Load(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes a spec from data; path is used in error messages and to
// resolve the output directory.
func Parse(path string, data []byte) (*Spec, error) {
	c := &errs{file: path}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			// No document at all: an empty file, or only comments.
			c.add(Pos{1, 1}, "spec is empty")
		} else {
			c.add(yamlErrorPos(err), "%s", yamlErrorMsg(err))
		}
		return nil, c.err()
	}
	// A second document would be ignored silently; refuse it (an empty
	// one, as after a trailing "---", is harmless).
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			c.add(yamlErrorPos(err), "%s", yamlErrorMsg(err))
			return nil, c.err()
		}
		if len(extra.Content) == 1 && extra.Content[0].Tag == "!!null" && extra.Content[0].Value == "" {
			continue
		}
		c.add(posOf(&extra), "the spec must be one YAML document; a second one starts here")
		return nil, c.err()
	}
	s := &Spec{Path: path, docPos: Pos{1, 1}}
	if len(doc.Content) == 0 {
		c.add(Pos{1, 1}, "spec is empty")
		return nil, c.err()
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		c.add(posOf(root), "spec must be a mapping")
		return nil, c.err()
	}
	s.docPos = posOf(root)
	s.PrefixesPos = s.docPos
	c.mapping(root, "spec", map[string]func(k, v *yaml.Node){
		"version": func(_, v *yaml.Node) { c.int(v, "version", &s.Version) },
		"output":  func(_, v *yaml.Node) { c.str(v, "output", &s.Output) },
		"engine":  func(_, v *yaml.Node) { c.str(v, "engine", &s.Engine) },
		"redis": func(_, v *yaml.Node) {
			c.mapping(v, "redis", map[string]func(k, v *yaml.Node){
				"namespace": func(_, v *yaml.Node) { c.str(v, "redis.namespace", &s.Namespace) },
			})
		},
		"defaults": func(_, v *yaml.Node) {
			c.mapping(v, "defaults", map[string]func(k, v *yaml.Node){
				"ledger":  func(_, v *yaml.Node) { c.str(v, "defaults.ledger", &s.Ledger) },
				"shards":  func(_, v *yaml.Node) { c.int(v, "defaults.shards", &s.Shards) },
				"buckets": func(_, v *yaml.Node) { c.int(v, "defaults.buckets", &s.Buckets) },
			})
		},
		"prefixes": func(k, v *yaml.Node) {
			s.PrefixesPos = posOf(k)
			if v.Kind != yaml.SequenceNode {
				c.add(posOf(v), "prefixes must be a list")
				s.prefixesBad = true
				return
			}
			for _, item := range v.Content {
				p := PrefixSpec{Pos: posOf(item)}
				if item.Kind != yaml.MappingNode {
					c.add(posOf(item), "prefix must be a mapping")
					s.prefixesBad = true
					continue
				}
				c.mapping(item, "prefix", map[string]func(k, v *yaml.Node){
					"name":        func(_, v *yaml.Node) { c.str(v, "name", &p.Name) },
					"key":         func(_, v *yaml.Node) { c.str(v, "key", &p.Key) },
					"max_key_len": func(_, v *yaml.Node) { c.int(v, "max_key_len", &p.MaxKeyLen) },
					"ledger":      func(_, v *yaml.Node) { c.str(v, "ledger", &p.Ledger) },
					"shards":      func(_, v *yaml.Node) { c.int(v, "shards", &p.Shards) },
					"buckets":     func(_, v *yaml.Node) { c.int(v, "buckets", &p.Buckets) },
				})
				s.Prefixes = append(s.Prefixes, p)
			}
		},
	})
	// The spec is returned with its decoding errors, so that validation can
	// report its own problems in the same round.
	return s, c.err()
}

// mapping walks a mapping node, calling fields[key] for each known key and
// reporting unknown and repeated keys.
func (c *errs) mapping(n *yaml.Node, what string, fields map[string]func(k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		c.add(posOf(n), "%s must be a mapping", what)
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		f, ok := fields[k.Value]
		switch {
		case !ok:
			c.add(posOf(k), "unknown field %q in %s (known: %s)", k.Value, what, known(fields))
		case seen[k.Value]:
			c.add(posOf(k), "field %q appears twice in %s", k.Value, what)
		default:
			seen[k.Value] = true
			f(k, v)
		}
	}
}

func known(fields map[string]func(k, v *yaml.Node)) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sortStrings(names)
	return strings.Join(names, ", ")
}

func (c *errs) str(v *yaml.Node, what string, f *Field[string]) {
	f.Pos, f.Set = posOf(v), true
	if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
		c.add(posOf(v), "%s must be a string", what)
		f.bad = true
		return
	}
	f.Value = v.Value
}

func (c *errs) int(v *yaml.Node, what string, f *Field[int]) {
	f.Pos, f.Set = posOf(v), true
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
		c.add(posOf(v), "%s must be an integer", what)
		f.bad = true
		return
	}
	// Decode as YAML reads the number (0x10, 0o17, 1_000), not as Atoi would.
	var n int
	if err := v.Decode(&n); err != nil {
		c.add(posOf(v), "%s: %q is not an integer in range", what, v.Value)
		f.bad = true
		return
	}
	f.Value = n
}

// yamlErrorPos digs the line out of a yaml.v3 syntax error ("yaml: line N:
// ..."); yaml.v3 reports no column for them.
func yamlErrorPos(err error) Pos {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if i := strings.Index(msg, "line "); i >= 0 {
		rest := msg[i+5:]
		if j := strings.IndexAny(rest, ":,"); j > 0 {
			if line, err := strconv.Atoi(rest[:j]); err == nil {
				return Pos{Line: line, Col: 1}
			}
		}
	}
	return Pos{Line: 1, Col: 1}
}

func yamlErrorMsg(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	if i := strings.Index(msg, "line "); i == 0 {
		if j := strings.Index(msg, ": "); j > 0 {
			msg = msg[j+2:]
		}
	}
	return "invalid YAML: " + msg
}
