package generator

import (
	"bytes"
	"errors"
	"flag"
	"go/format"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden trees under testdata/golden/*/want")

// goldenDir holds one directory per case: inventory.yaml, whose output is
// want/, and want/, the tree the generator must produce.
const goldenDir = "testdata/golden"

// goldenCases returns the names of the golden cases, sorted.
func goldenCases(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(goldenDir, e.Name(), "inventory.yaml")); err != nil {
				t.Fatalf("golden case %s: %v", e.Name(), err)
			}
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		t.Fatal("no golden cases")
	}
	return names
}

// goldenContains lists, per case and file, text the output must contain:
// a check that each option reaches the output, independent of -update.
var goldenContains = map[string]map[string][]string{
	"string_key": {
		"flashsale/manager.go": {"package flashsale", `Namespace = "inv"`, "Shards = 16", `LedgerMode = "sync"`,
			"MaxKeyLen = 64", "type Key = string", "invrt.StringCodec{MaxLen: MaxKeyLen}"},
		"flashsale/schema.sql": {"CREATE TABLE IF NOT EXISTS flash_sale_inventory_modification_record (",
			"CREATE TABLE IF NOT EXISTS flash_sale_inventory_usage_record (", "item_id    varchar(64) NOT NULL"},
		"flashsale/db/models.go": {"ItemID    string"},
		"sqlc.yaml":              {"schema: flashsale/schema.sql", "omit_sqlc_version: true"},
	},
	"int64_key": {
		"coupon/manager.go":   {"package coupon", "Shards = 4", "type Key = int64", "invrt.Int64Codec{}"},
		"coupon/schema.sql":   {"item_id    bigint NOT NULL"},
		"coupon/db/models.go": {"ItemID    int64"},
	},
	"uuid_key": {
		"giftcard/manager.go":   {"package giftcard", "Shards = 1\n", "type Key = uuid.UUID", "invrt.UUIDCodec{}"},
		"giftcard/schema.sql":   {"item_id    uuid NOT NULL"},
		"giftcard/db/models.go": {"ItemID    uuid.UUID", `"github.com/google/uuid"`},
	},
	"mysql_engine": {
		"flashsale/schema.sql":  {"item_id    VARBINARY(1024) NOT NULL", "op_key     VARBINARY(128) NOT NULL", ") ENGINE = InnoDB;"},
		"flashsale/manager.go":  {"the MySQL/MariaDB tables", "me.Number == 1062", "invrt.SQLStatements(schema)", "p.Conn(ctx)"},
		"coupon/direct.sql":     {"-- name: FlushInsert", "JSON_TABLE(?", "CAST(b.item AS SIGNED)", "-- name: FlushConflicts"},
		"giftcard/schema.sql":   {"CHAR(36) CHARACTER SET ascii COLLATE ascii_bin"},
		"giftcard/db/models.go": {"ItemID    uuid.UUID"},
		"sqlc.yaml":             {"engine: mysql"},
	},
	"sqlite_engine": {
		"flashsale/schema.sql": {"item_id    TEXT NOT NULL", ") STRICT;"},
		"flashsale/manager.go": {"the SQLite tables", "sqlite3.CONSTRAINT_UNIQUE", "invrt.SQLStatements(schema)"},
		"coupon/direct.sql":    {"json_each(?)", "CAST(b.value ->> 0 AS INTEGER)"},
		"coupon/schema.sql":    {"item_id    INTEGER NOT NULL"},
		"sqlc.yaml":            {"engine: sqlite"},
	},
	"all_options": {
		"sale2026/manager.go": {"package sale2026", `Namespace = "shop-test_2"`, "Shards = 32", "Buckets = 2\n", "MaxKeyLen = 200", `LedgerMode = "sync"`},
		"sale2026/schema.sql": {"varchar(200)"},
		"coupon/manager.go": {"Shards = 1024", "Buckets = 64\n", `Namespace = "shop-test_2"`, `LedgerMode = "stream"`,
			"func (m *Manager) RunFlusher(ctx context.Context, cfg FlusherConfig) error", "type FlusherConfig = invrt.FlusherConfig", "type FlushLag = invrt.FlushLag"},
		"coupon/query.sql":                       {"unnest(sqlc.arg(items)::text[])::bigint", "ON CONFLICT (item_id, kind, op_key) DO UPDATE SET attempt = u.attempt"},
		"longprefixnameof33bytes0001/manager.go": {"package longprefixnameof33bytes0001", "MaxKeyLen = 1024"},
		"longprefixnameof33bytes0001/schema.sql": {"long_prefix_name_of_33_bytes_0001_inventory_modification_record (", "varchar(1024)"},
		"a/manager.go":                           {"package a\n", "Shards = 1\n", "Buckets = 1\n", "MaxKeyLen = 1\n"},
		"giftcard/manager.go":                    {"Shards = 32", "type Key = uuid.UUID"},
	},
}

// goldenLacks lists, per case and file, text the output must not contain.
var goldenLacks = map[string]map[string][]string{
	"all_options": {
		// A sync prefix has no streams to flush.
		"sale2026/manager.go": {"RunFlusher", "func (m *Manager) Flush(", "FlushLag", "FlusherConfig"},
	},
}

// goldenPrefixes is the set of prefix directories each case must produce,
// so a case cannot lose a prefix by an -update.
var goldenPrefixes = map[string][]string{
	"string_key":    {"flashsale"},
	"int64_key":     {"coupon"},
	"uuid_key":      {"giftcard"},
	"all_options":   {"a", "coupon", "giftcard", "longprefixnameof33bytes0001", "sale2026"},
	"mysql_engine":  {"coupon", "flashsale", "giftcard"},
	"sqlite_engine": {"coupon", "flashsale", "giftcard"},
}

func TestGolden(t *testing.T) {
	for _, name := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			spec := filepath.Join(goldenDir, name, "inventory.yaml")
			m, files, err := FromSpec(spec)
			if err != nil {
				t.Fatal(err)
			}
			want, err := filepath.Abs(filepath.Join(goldenDir, name, "want"))
			if err != nil {
				t.Fatal(err)
			}
			if m.OutDir != want {
				t.Fatalf("%s: output is %s; golden specs must say output: want", spec, m.OutDir)
			}

			checkFileSet(t, name, files)
			checkHeaders(t, files)
			for p, subs := range goldenLacks[name] {
				for _, sub := range subs {
					if strings.Contains(string(files[p]), sub) {
						t.Errorf("%s contains %q", p, sub)
					}
				}
			}
			for p, subs := range goldenContains[name] {
				data, ok := files[p]
				if !ok {
					t.Errorf("%s not generated", p)
					continue
				}
				for _, s := range subs {
					if !bytes.Contains(data, []byte(s)) {
						t.Errorf("%s does not contain %q", p, s)
					}
				}
			}

			// Generating again yields the same bytes.
			_, again, err := FromSpec(spec)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(files.Paths(), again.Paths()) {
				t.Errorf("second generation has other files:\n%v\n%v", files.Paths(), again.Paths())
			}
			for p, data := range files {
				if !bytes.Equal(data, again[p]) {
					t.Errorf("%s differs between two generations", p)
				}
			}

			if *update {
				for _, p := range extraFiles(t, want, files) {
					if err := os.Remove(filepath.Join(want, filepath.FromSlash(p))); err != nil {
						t.Fatal(err)
					}
				}
				removeEmptyDirs(t, want)
				wrote, err := Write(want, files)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range wrote {
					t.Logf("wrote %s", path.Join(goldenDir, name, "want", p))
				}
			}

			drift, err := Diff(want, files)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range drift {
				t.Errorf("%s/want/%s is %s (run: go test ./generator -run Golden -update)", name, d.Path, d.Reason)
			}
			for _, p := range extraFiles(t, want, files) {
				t.Errorf("%s/want/%s is not generated (run: go test ./generator -run Golden -update)", name, p)
			}
		})
	}
}

// checkFileSet checks that every prefix of the case has exactly the files
// of a prefix, and that there is one sqlc.yaml.
func checkFileSet(t *testing.T, name string, files Files) {
	t.Helper()
	prefixes, ok := goldenPrefixes[name]
	if !ok {
		t.Fatalf("golden case %s is missing from goldenPrefixes", name)
	}
	want := []string{"sqlc.yaml", ManifestName}
	perPrefix := []string{"manager.go", "schema.sql", "query.sql", "db/db.go", "db/models.go", "db/query.sql.go"}
	if strings.HasSuffix(name, "_engine") {
		// mysql and sqlite: the statements sqlc does not parse.
		perPrefix = append(perPrefix, "direct.sql")
	}
	for _, p := range prefixes {
		for _, f := range perPrefix {
			want = append(want, p+"/"+f)
		}
	}
	sort.Strings(want)
	if got := files.Paths(); !slices.Equal(got, want) {
		t.Errorf("generated files\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// generatedRE is Go's convention for marking generated files
// (https://go.dev/s/generatedcode).
var generatedRE = regexp.MustCompile(`(?m)^// Code generated .* DO NOT EDIT\.$`)

// checkHeaders checks that every file invgen writes starts with invgen's
// generated-code header, that sqlc's files keep sqlc's, and that every Go
// file is gofmt-formatted.
func checkHeaders(t *testing.T, files Files) {
	t.Helper()
	for _, p := range files.Paths() {
		data := files[p]
		first, _, _ := strings.Cut(string(data), "\n")
		bySQLC := path.Base(path.Dir(p)) == "db"
		var want string
		switch ext := path.Ext(p); {
		case bySQLC && ext == ".go":
			// sqlc's output is never edited, so it carries sqlc's
			// header, not invgen's.
			want = "// Code generated by sqlc. DO NOT EDIT."
		case ext == ".go":
			want = "// " + Header
		case ext == ".sql":
			want = "-- " + Header
		case ext == ".yaml" || ext == ".manifest":
			want = "# " + Header
		default:
			t.Errorf("%s: unexpected kind of generated file", p)
			continue
		}
		if first != want {
			t.Errorf("%s starts with %q, want %q", p, first, want)
		}
		if path.Ext(p) != ".go" {
			continue
		}
		if !generatedRE.Match(data) {
			t.Errorf("%s is not marked generated by Go's convention", p)
		}
		formatted, err := format.Source(data)
		if err != nil {
			t.Errorf("%s: %v", p, err)
		} else if !bytes.Equal(formatted, data) {
			t.Errorf("%s is not gofmt-formatted", p)
		}
	}
}

// extraFiles returns the files below dir, slash-separated and relative to
// it, that are not in files.
func extraFiles(t *testing.T, dir string, files Files) []string {
	t.Helper()
	var extra []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if _, ok := files[filepath.ToSlash(rel)]; !ok {
			extra = append(extra, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return extra
}

// removeEmptyDirs removes the empty directories below dir (not dir).
func removeEmptyDirs(t *testing.T, dir string) {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() && p != dir {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Deepest first, so a parent empties before it is looked at.
	for i := len(dirs) - 1; i >= 0; i-- {
		if entries, err := os.ReadDir(dirs[i]); err == nil && len(entries) == 0 {
			if err := os.Remove(dirs[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestGoldenCompiles builds and vets the golden packages. They live in
// this module below testdata, which ./... skips; naming the directory
// explicitly (./testdata/golden/...) makes the go command match them.
func TestGoldenCompiles(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to compile the golden output: %v", err)
	}
	const pattern = "./" + goldenDir + "/..."

	// The pattern must match every generated package; a pattern that
	// matches nothing would make build and vet pass vacuously.
	var want []string
	for _, name := range goldenCases(t) {
		for _, p := range goldenPrefixes[name] {
			base := "github.com/invgen/invgen/generator/" + goldenDir + "/" + name + "/want/" + p
			want = append(want, base, base+"/db")
		}
	}
	sort.Strings(want)
	out := goTool(t, goCmd, "list", pattern)
	got := strings.Fields(out)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Fatalf("go list %s:\n\t%s\nwant\n\t%s", pattern, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}

	goTool(t, goCmd, "build", pattern)
	goTool(t, goCmd, "vet", pattern)
}

// goTool runs the go command in the package directory and returns its
// standard output, failing the test with its output when it fails.
func goTool(t *testing.T, goCmd string, args ...string) string {
	t.Helper()
	cmd := exec.Command(goCmd, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
