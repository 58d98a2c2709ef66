package generator

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// specDir writes a go.mod and the spec text to a fresh temporary directory
// and returns the spec's path.
func specDir(t *testing.T, spec string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/x\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(file, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// specErrors runs FromSpec on a spec that must be rejected, checks that
// nothing was written, and returns the spec errors.
func specErrors(t *testing.T, spec string) (string, Errors) {
	t.Helper()
	file := specDir(t, spec)
	m, files, err := FromSpec(file)
	if err == nil {
		t.Fatalf("FromSpec accepted the spec (model %+v, %d files); want an error", m, len(files))
	}
	if m != nil || files != nil {
		t.Errorf("FromSpec returned a model or files along with error %v", err)
	}
	var list Errors
	if !errors.As(err, &list) {
		t.Fatalf("FromSpec error %v (%T) is not a generator.Errors", err, err)
	}
	if len(list) == 0 {
		t.Fatalf("FromSpec returned an empty Errors")
	}
	entries, rerr := os.ReadDir(filepath.Dir(file))
	if rerr != nil {
		t.Fatal(rerr)
	}
	for _, e := range entries {
		if e.Name() != "go.mod" && e.Name() != "inventory.yaml" {
			t.Errorf("a rejected spec left %s in its directory", e.Name())
		}
	}
	return file, list
}

// The valid spec the error cases below are small edits of:
//
//	version: 1
//	output: out
//	prefixes:
//	  - name: a
//	    key: string

func TestSpecErrors(t *testing.T) {
	tests := []struct {
		name      string
		spec      string
		line, col int
		msg       string
	}{
		// Decoding.
		{"unknown field at top level", "version: 1\noutput: out\ncolour: red\nprefixes:\n  - name: a\n    key: string\n",
			3, 1, `unknown field "colour" in spec (known: defaults, engine, output, prefixes, redis, version)`},
		{"unknown field in redis", "version: 1\noutput: out\nredis:\n  namespace: inv\n  host: localhost\nprefixes:\n  - name: a\n    key: string\n",
			5, 3, `unknown field "host" in redis (known: namespace)`},
		{"unknown field in defaults", "version: 1\noutput: out\ndefaults:\n  ledger: sync\n  shard: 4\nprefixes:\n  - name: a\n    key: string\n",
			5, 3, `unknown field "shard" in defaults (known: buckets, ledger, shards)`},
		{"unknown field in a prefix", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    max_len: 10\n",
			6, 5, `unknown field "max_len" in prefix (known: buckets, key, ledger, max_key_len, name, shards)`},
		{"field given twice at top level", "version: 1\noutput: out\nversion: 1\nprefixes:\n  - name: a\n    key: string\n",
			3, 1, `field "version" appears twice in spec`},
		{"field given twice in a prefix", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    key: int64\n",
			6, 5, `field "key" appears twice in prefix`},
		{"invalid YAML: tab indentation", "version: 1\n\toutput: out\n",
			2, 1, "invalid YAML: found a tab character that violates indentation"},
		// yaml.v3 reports a syntax error on the line where the construct
		// holding it starts (here the plain scalar "out", which a tab-indented
		// line would continue), and no column.
		{"invalid YAML: tab after a plain scalar", "version: 1\noutput: out\n\tprefixes: []\n",
			2, 1, "invalid YAML: found a tab character that violates indentation"},
		{"invalid YAML: bad indentation", "version: 1\n output: out\nprefixes: []\n",
			2, 1, "invalid YAML: mapping values are not allowed in this context"},
		{"empty spec", "", 1, 1, "spec is empty"},
		{"spec of comments only", "# nothing yet\n", 1, 1, "spec is empty"},
		{"second YAML document", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n---\nversion: 2\n",
			6, 1, "the spec must be one YAML document; a second one starts here"},
		{"second YAML document after an empty one", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n---\n---\nversion: 2\n",
			7, 1, "the spec must be one YAML document"},
		{"invalid YAML in a second document", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n---\n\tversion: 2\n",
			7, 1, "invalid YAML: found character that cannot start any token"},
		{"spec not a mapping", "- version: 1\n", 1, 1, "spec must be a mapping"},
		{"redis not a mapping", "version: 1\noutput: out\nredis: inv\nprefixes:\n  - name: a\n    key: string\n",
			3, 8, "redis must be a mapping"},
		{"prefixes not a list", "version: 1\noutput: out\nprefixes: a\n", 3, 11, "prefixes must be a list"},
		{"prefix not a mapping", "version: 1\noutput: out\nprefixes:\n  - a\n", 4, 5, "prefix must be a mapping"},
		{"key not a string", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: 64\n", 5, 10, "key must be a string"},
		{"name not a string", "version: 1\noutput: out\nprefixes:\n  - name: true\n    key: string\n", 4, 11, "name must be a string"},

		// Version.
		{"missing version", "output: out\nprefixes:\n  - name: a\n    key: string\n",
			1, 1, "version is missing (this invgen reads version: 1)"},
		{"missing version after a comment", "# my spec\n\noutput: out\nprefixes:\n  - name: a\n    key: string\n",
			3, 1, "version is missing"},
		{"unsupported version", "version: 2\noutput: out\nprefixes:\n  - name: a\n    key: string\n",
			1, 10, "unsupported version 2 (this invgen reads version: 1)"},
		{"version zero", "version: 0\noutput: out\nprefixes:\n  - name: a\n    key: string\n",
			1, 10, "unsupported version 0"},
		{"version a word", "version: one\noutput: out\nprefixes:\n  - name: a\n    key: string\n",
			1, 10, "version must be an integer"},
		{"version a quoted number", "version: \"1\"\noutput: out\nprefixes:\n  - name: a\n    key: string\n",
			1, 10, "version must be an integer"},
		{"version a float", "version: 1.0\noutput: out\nprefixes:\n  - name: a\n    key: string\n",
			1, 10, "version must be an integer"},
		{"version a list", "version: [1]\noutput: out\nprefixes:\n  - name: a\n    key: string\n",
			1, 10, "version must be an integer"},
		{"version too large", "version: 99999999999999999999\noutput: out\nprefixes:\n  - name: a\n    key: string\n",
			1, 10, "version must be an integer"},

		// Prefix names.
		{"duplicate prefix", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n  - name: a\n    key: int64\n",
			6, 11, `duplicate prefix "a" (first at line 4)`},
		{"name with upper case", "version: 1\noutput: out\nprefixes:\n  - name: Flash\n    key: string\n",
			4, 11, `prefix name "Flash" must match ^[a-z][a-z0-9_]*$`},
		{"name starting with a digit", "version: 1\noutput: out\nprefixes:\n  - name: 1sale\n    key: string\n",
			4, 11, `prefix name "1sale" must match`},
		{"name starting with _", "version: 1\noutput: out\nprefixes:\n  - name: _sale\n    key: string\n",
			4, 11, `prefix name "_sale" must match`},
		{"name with a dash", "version: 1\noutput: out\nprefixes:\n  - name: flash-sale\n    key: string\n",
			4, 11, `prefix name "flash-sale" must match`},
		{"name with a quote", "version: 1\noutput: out\nprefixes:\n  - name: \"a'; drop table x; --\"\n    key: string\n",
			4, 11, `must match`},
		{"empty name", "version: 1\noutput: out\nprefixes:\n  - name: \"\"\n    key: string\n",
			4, 11, `prefix name "" must match`},
		{"missing name", "version: 1\noutput: out\nprefixes:\n  - key: string\n", 4, 5, "prefix has no name"},
		{"SQL reserved word select", "version: 1\noutput: out\nprefixes:\n  - name: select\n    key: string\n",
			4, 11, `prefix name "select" is a reserved word in SQL`},
		{"SQL reserved word user", "version: 1\noutput: out\nprefixes:\n  - name: user\n    key: string\n",
			4, 11, `prefix name "user" is a reserved word in SQL`},
		{"Go keyword func", "version: 1\noutput: out\nprefixes:\n  - name: func\n    key: string\n",
			4, 11, `prefix name "func" is reserved in Go`},
		{"Go package name main", "version: 1\noutput: out\nprefixes:\n  - name: main\n    key: string\n",
			4, 11, `prefix name "main" is reserved in Go`},
		{"Go package name init", "version: 1\noutput: out\nprefixes:\n  - name: init\n    key: string\n",
			4, 11, `prefix name "init" is reserved in Go`},
		{"Go package name reserved after dropping _", "version: 1\noutput: out\nprefixes:\n  - name: go_to\n    key: string\n",
			4, 11, `prefix "go_to" would be Go package "goto", which is reserved in Go`},
		{"Go package name init after dropping _", "version: 1\noutput: out\nprefixes:\n  - name: in_it\n    key: string\n",
			4, 11, `prefix "in_it" would be Go package "init", which is reserved in Go`},
		{"Go package names collide", "version: 1\noutput: out\nprefixes:\n  - name: flash_sale\n    key: string\n  - name: flashsale\n    key: string\n",
			6, 11, `prefix "flashsale" has Go package name "flashsale", like prefix "flash_sale" at line 4`},
		{"table name over 63 bytes", "version: 1\noutput: out\nprefixes:\n  - name: abcdefghij_abcdefghij_abcdefghij_x\n    key: string\n",
			4, 11, "prefix \"abcdefghij_abcdefghij_abcdefghij_x\" makes the SQL name abcdefghij_abcdefghij_abcdefghij_x_inventory_modification_record, 64 bytes long, over PostgreSQL's limit of 63; shorten the name to at most 33 bytes"},

		// Keys.
		{"unknown key type", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: text\n",
			5, 10, `unknown key type "text" (known: string, int64, uuid)`},
		{"missing key", "version: 1\noutput: out\nprefixes:\n  - name: a\n", 4, 5, `prefix "a" has no key type (key: string | int64 | uuid)`},
		{"max_key_len 0", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    max_key_len: 0\n",
			6, 18, "max_key_len 0 is out of range 1..1024"},
		{"max_key_len 5000", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    max_key_len: 5000\n",
			6, 18, "max_key_len 5000 is out of range 1..1024"},
		{"max_key_len negative", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    max_key_len: -1\n",
			6, 18, "max_key_len -1 is out of range 1..1024"},
		{"max_key_len not an integer", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    max_key_len: long\n",
			6, 18, "max_key_len must be an integer"},
		{"max_key_len on an int64 key", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: int64\n    max_key_len: 10\n",
			6, 18, "max_key_len applies to string keys only, not int64"},
		{"max_key_len on a uuid key", "version: 1\noutput: out\nprefixes:\n  - name: a\n    max_key_len: 10\n    key: uuid\n",
			5, 18, "max_key_len applies to string keys only, not uuid"},

		// Ledger and shards.
		{"unknown ledger mode in defaults", "version: 1\noutput: out\ndefaults:\n  ledger: async\nprefixes:\n  - name: a\n    key: string\n",
			4, 11, `unknown ledger mode "async" (known: sync, stream)`},
		{"unknown ledger mode in a prefix", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    ledger: async\n",
			6, 13, `unknown ledger mode "async" (known: sync, stream)`},
		{"ledger mode with wrong case", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    ledger: Stream\n",
			6, 13, `unknown ledger mode "Stream" (known: sync, stream)`},
		{"defaults.shards 0", "version: 1\noutput: out\ndefaults:\n  shards: 0\nprefixes:\n  - name: a\n    key: string\n",
			4, 11, "defaults.shards 0 is out of range 1..1024"},
		{"defaults.shards 2000", "version: 1\noutput: out\ndefaults:\n  shards: 2000\nprefixes:\n  - name: a\n    key: string\n",
			4, 11, "defaults.shards 2000 is out of range 1..1024"},
		{"defaults.shards not an integer", "version: 1\noutput: out\ndefaults:\n  shards: many\nprefixes:\n  - name: a\n    key: string\n",
			4, 11, "defaults.shards must be an integer"},
		{"prefix shards 0", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    shards: 0\n",
			6, 13, "shards 0 is out of range 1..1024"},
		{"prefix shards 2000", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    shards: 2000\n",
			6, 13, "shards 2000 is out of range 1..1024"},
		{"prefix shards 0x800", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    shards: 0x800\n",
			6, 13, "shards 2048 is out of range 1..1024"},
		{"defaults.buckets 0", "version: 1\noutput: out\ndefaults:\n  buckets: 0\nprefixes:\n  - name: a\n    key: string\n",
			4, 12, "defaults.buckets 0 is out of range 1..64"},
		{"prefix buckets 65", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    shards: 128\n    buckets: 65\n",
			7, 14, "buckets 65 is out of range 1..64"},
		{"prefix buckets beyond shards", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n    shards: 2\n    buckets: 4\n",
			7, 14, "buckets 4 exceeds the prefix's shards 2: each bucket needs a shard of its own"},
		{"default buckets beyond shards", "version: 1\noutput: out\ndefaults:\n  buckets: 8\nprefixes:\n  - name: a\n    key: string\n    shards: 4\n",
			6, 5, "buckets 8 exceeds the prefix's shards 4: each bucket needs a shard of its own"},

		// Output.
		{"output escaping the spec directory", "version: 1\noutput: ../x\nprefixes:\n  - name: a\n    key: string\n",
			2, 9, `output "../x" must be a relative path inside the spec's directory`},
		{"output escaping after a subdirectory", "version: 1\noutput: a/../../x\nprefixes:\n  - name: a\n    key: string\n",
			2, 9, `output "a/../../x" must be a relative path inside the spec's directory`},
		{"output absolute", "version: 1\noutput: /abs\nprefixes:\n  - name: a\n    key: string\n",
			2, 9, `output "/abs" must be a relative path inside the spec's directory`},
		{"output empty", "version: 1\noutput: \"\"\nprefixes:\n  - name: a\n    key: string\n",
			2, 9, `output "" must be a relative path inside the spec's directory`},
		{"missing output", "version: 1\nprefixes:\n  - name: a\n    key: string\n",
			1, 1, "output is missing"},

		// Prefixes list.
		{"no prefixes field", "version: 1\noutput: out\n", 1, 1, "no prefixes: the spec must list at least one"},
		{"empty prefixes list", "version: 1\noutput: out\nprefixes: []\n", 3, 1, "no prefixes: the spec must list at least one"},

		// Engine and Redis.
		{"unknown engine", "version: 1\noutput: out\nengine: oracle\nprefixes:\n  - name: a\n    key: string\n",
			3, 9, `unknown engine "oracle" (known: postgresql, mysql, sqlite)`},
		{"mysql table name", "version: 1\noutput: out\nengine: mysql\nprefixes:\n  - name: abcdefghij_abcdefghij_abcdefghij_abcd\n    key: string\n",
			5, 11, `over MySQL's limit of 64; shorten the name to at most 34 bytes`},
		{"sqlite table name", "version: 1\noutput: out\nengine: sqlite\nprefixes:\n  - name: abcdefghij_abcdefghij_abcdefghij_abc\n    key: string\n",
			5, 11, `over PostgreSQL's (kept by SQLite specs, so that they move to any engine) limit of 63`},
		{"namespace with upper case", "version: 1\noutput: out\nredis:\n  namespace: Inv\nprefixes:\n  - name: a\n    key: string\n",
			4, 14, `redis.namespace "Inv" must match ^[a-z][a-z0-9_-]{0,31}$`},
		{"namespace with a brace", "version: 1\noutput: out\nredis:\n  namespace: \"inv{x}\"\nprefixes:\n  - name: a\n    key: string\n",
			4, 14, `redis.namespace "inv{x}" must match`},
		{"namespace with a colon", "version: 1\noutput: out\nredis:\n  namespace: \"a:b\"\nprefixes:\n  - name: a\n    key: string\n",
			4, 14, `redis.namespace "a:b" must match`},
		{"namespace empty", "version: 1\noutput: out\nredis:\n  namespace: \"\"\nprefixes:\n  - name: a\n    key: string\n",
			4, 14, `redis.namespace "" must match`},
		{"namespace over 32 bytes", "version: 1\noutput: out\nredis:\n  namespace: abcdefghijabcdefghijabcdefghijabc\nprefixes:\n  - name: a\n    key: string\n",
			4, 14, `redis.namespace "abcdefghijabcdefghijabcdefghijabc" must match`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file, list := specErrors(t, tt.spec)
			if len(list) != 1 {
				t.Errorf("got %d errors, want 1:\n%v", len(list), list)
			}
			got := list[0].Error()
			wantPrefix := fmt.Sprintf("%s:%d:%d: ", file, tt.line, tt.col)
			if !strings.HasPrefix(got, wantPrefix) || !strings.Contains(list[0].Msg, tt.msg) {
				t.Errorf("error\n\t%s\nwant\n\t%s...%s...", got, wantPrefix, tt.msg)
			}
			if list[0].File != file || list[0].Pos != (Pos{tt.line, tt.col}) {
				t.Errorf("error at %s:%d:%d, want %s:%d:%d", list[0].File, list[0].Pos.Line, list[0].Pos.Col, file, tt.line, tt.col)
			}
		})
	}
}

// TestSpecErrorsAll checks that every problem of a spec is reported, each
// at its position, sorted by position, and that Errors prints one per line.
func TestSpecErrorsAll(t *testing.T) {
	t.Run("validation", func(t *testing.T) {
		// Problems found in the model are reported in file order, though
		// some (output, prefix keys) are found after later ones.
		spec := `prefixes:
  - name: flash_sale
    key: text
    shards: 0
  - name: select
    key: string
  - name: flash_sale
    key: string
  - name: coupon
    key: int64
    max_key_len: 10
    ledger: streaming
defaults:
  shards: 5000
  ledger: fast
redis:
  namespace: "Inv"
engine: db2
version: 3
output: ../elsewhere
`
		file, list := specErrors(t, spec)
		want := []struct {
			line, col int
			msg       string
		}{
			{3, 10, `unknown key type "text"`},
			{4, 13, "shards 0 is out of range"},
			{5, 11, `prefix name "select" is a reserved word in SQL`},
			{7, 11, `duplicate prefix "flash_sale" (first at line 2)`},
			{11, 18, "max_key_len applies to string keys only, not int64"},
			{12, 13, `unknown ledger mode "streaming"`},
			{14, 11, "defaults.shards 5000 is out of range"},
			{15, 11, `unknown ledger mode "fast"`},
			{17, 14, `redis.namespace "Inv" must match`},
			{18, 9, `unknown engine "db2"`},
			{19, 10, "unsupported version 3"},
			{20, 9, `output "../elsewhere" must be a relative path`},
		}
		checkAll(t, file, list, want)
	})
	t.Run("decoding", func(t *testing.T) {
		// Problems found while decoding stop before validation; they are
		// found, and reported, in file order.
		spec := `version: 1
output: out
colour: red
redis:
  host: localhost
defaults:
  shards: many
  shards: 2
prefixes:
  - name: a
    key: string
    size: 3
  - name: 7
    key: int64
`
		file, list := specErrors(t, spec)
		want := []struct {
			line, col int
			msg       string
		}{
			{3, 1, `unknown field "colour" in spec`},
			{5, 3, `unknown field "host" in redis`},
			{7, 11, "defaults.shards must be an integer"},
			{8, 3, `field "shards" appears twice in defaults`},
			{12, 5, `unknown field "size" in prefix`},
			{13, 11, "name must be a string"},
		}
		checkAll(t, file, list, want)
	})
}

func checkAll(t *testing.T, file string, list Errors, want []struct {
	line, col int
	msg       string
}) {
	t.Helper()
	if len(list) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(list), len(want), list)
	}
	lines := strings.Split(list.Error(), "\n")
	if len(lines) != len(list) {
		t.Errorf("Errors.Error() has %d lines for %d errors", len(lines), len(list))
	}
	for i := 0; i < len(list) && i < len(want); i++ {
		w := want[i]
		prefix := fmt.Sprintf("%s:%d:%d: ", file, w.line, w.col)
		if !strings.HasPrefix(list[i].Error(), prefix) || !strings.Contains(list[i].Msg, w.msg) {
			t.Errorf("error %d:\n\t%s\nwant\n\t%s...%s...", i, list[i], prefix, w.msg)
		}
		if i < len(lines) && lines[i] != list[i].Error() {
			t.Errorf("line %d of Errors.Error() is %q, want %q", i, lines[i], list[i].Error())
		}
	}
}

// TestSpecOutsideModule checks that an output directory outside any Go
// module is refused at the output field (the import paths of the
// generated packages come from go.mod).
func TestSpecOutsideModule(t *testing.T) {
	dir := t.TempDir()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			t.Fatalf("the temporary directory is inside the Go module at %s; set TMPDIR outside any module", d)
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	file := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(file, []byte("version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := FromSpec(file)
	want := file + `:2:9: output "out" is not inside a Go module: no go.mod at or above it`
	if err == nil || err.Error() != want {
		t.Fatalf("FromSpec error %v, want %s", err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output directory exists after a rejected spec (stat: %v)", err)
	}
}

// TestSpecMissingFile checks that a missing spec is an I/O error, not a
// spec error.
func TestSpecMissingFile(t *testing.T) {
	_, _, err := FromSpec(filepath.Join(t.TempDir(), "nope.yaml"))
	var list Errors
	if !errors.Is(err, os.ErrNotExist) || errors.As(err, &list) {
		t.Fatalf("FromSpec of a missing file: %v, want a not-exist error", err)
	}
}

// TestNewModel checks the names and defaults NewModel computes.
func TestNewModel(t *testing.T) {
	spec := `version: 1
output: internal/inv
redis:
  namespace: shop-1
defaults:
  shards: 32
prefixes:
  - name: flash_sale_2026
    key: string
  - name: coupon
    key: int64
    shards: 4
    ledger: sync
  - name: abcdefghij_abcdefghij_abcdefghij
    key: string
    max_key_len: 1024
  - name: gift_card
    key: uuid
    shards: 0x10
`
	file := specDir(t, spec)
	s, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewModel(s)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(file)
	if m.SpecPath != file || m.OutDir != filepath.Join(dir, "internal", "inv") ||
		m.ImportPath != "example.com/x/internal/inv" || m.Engine != "postgresql" || m.Namespace != "shop-1" {
		t.Errorf("model = %+v", m)
	}
	want := []Prefix{
		{Name: "abcdefghij_abcdefghij_abcdefghij", Package: "abcdefghijabcdefghijabcdefghij", Key: "string", MaxKeyLen: 1024, Shards: 32, Buckets: 1, ItemSQLType: "varchar(1024)", Engine: "postgresql"},
		{Name: "coupon", Package: "coupon", Key: "int64", Shards: 4, Buckets: 1, ItemSQLType: "bigint", Engine: "postgresql"},
		{Name: "flash_sale_2026", Package: "flashsale2026", Key: "string", MaxKeyLen: 64, Shards: 32, Buckets: 1, ItemSQLType: "varchar(64)", Engine: "postgresql"},
		{Name: "gift_card", Package: "giftcard", Key: "uuid", Shards: 16, Buckets: 1, ItemSQLType: "uuid", Engine: "postgresql"},
	}
	if len(m.Prefixes) != len(want) {
		t.Fatalf("got %d prefixes, want %d", len(m.Prefixes), len(want))
	}
	for i, w := range want {
		w.Dir = w.Package
		w.ImportPath = "example.com/x/internal/inv/" + w.Package
		w.DBImportPath = w.ImportPath + "/db"
		w.Ledger = "sync"
		w.ModTable = w.Name + "_inventory_modification_record"
		w.UsageTable = w.Name + "_inventory_usage_record"
		w.LayoutTable = w.Name + "_inventory_layout"
		w.ModUnique = w.Name + "_modification_op_key"
		w.UsageUnique = w.Name + "_usage_op_key"
		w.HoldTable = w.Name + "_inventory_hold"
		w.HoldUnique = w.Name + "_hold_key"
		w.HoldDue = w.Name + "_hold_due"
		w.MaxOpKeyLen = 128
		if got := *m.Prefixes[i]; got != w {
			t.Errorf("prefix %d:\n got %+v\nwant %+v", i, got, w)
		}
	}
}

// TestNewModelDefaults checks the model of the smallest spec.
func TestNewModelDefaults(t *testing.T) {
	file := specDir(t, "version: 1\noutput: .\nprefixes:\n  - name: a\n    key: string\n")
	s, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewModel(s)
	if err != nil {
		t.Fatal(err)
	}
	if m.OutDir != filepath.Dir(file) || m.ImportPath != "example.com/x" || m.Namespace != DefaultNamespace || m.Engine != "postgresql" {
		t.Errorf("model = %+v", m)
	}
	p := m.Prefixes[0]
	if p.Shards != DefaultShards || p.Ledger != DefaultLedger || p.MaxKeyLen != DefaultMaxKeyLen || p.ImportPath != "example.com/x/a" {
		t.Errorf("prefix = %+v", p)
	}
}

// TestParseDocumentMarkers checks that document markers around the one
// document of a spec are accepted, and that YAML's integer forms are read
// as YAML reads them.
func TestParseDocumentMarkers(t *testing.T) {
	for _, spec := range []string{
		"---\nversion: 1\nprefixes: []\ndefaults:\n  shards: 0x10\n",
		"version: 1\nprefixes: []\ndefaults:\n  shards: 0o20\n---\n",
		"version: 1\nprefixes: []\ndefaults:\n  shards: 1_6\n...\n",
	} {
		s, err := Parse("inventory.yaml", []byte(spec))
		if err != nil {
			t.Errorf("Parse(%q): %v", spec, err)
			continue
		}
		if !s.Version.Set || s.Version.Value != 1 || !s.Shards.Set || s.Shards.Value != 16 {
			t.Errorf("Parse(%q) = version %+v, shards %+v", spec, s.Version, s.Shards)
		}
	}
}
