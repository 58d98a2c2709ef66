package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// result is what one run of the CLI did.
type result struct {
	code           int
	stdout, stderr string
}

func invgen(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// want fails the test unless the run exited with code.
func (r result) want(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

// inModule makes a temporary Go module the working directory.
func inModule(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	writeFile(t, "go.mod", "module example.com/x\n\ngo 1.26\n")
	return dir
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// snapshot is every file below dir (slash paths relative to it) with its
// content and modification time.
type fileState struct {
	content string
	mtime   time.Time
}

func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = fileState{string(data), info.ModTime()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, before, after map[string]fileState) {
	t.Helper()
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			t.Errorf("%s was removed", p)
		case a.content != b.content:
			t.Errorf("%s was changed", p)
		case !a.mtime.Equal(b.mtime):
			t.Errorf("%s was rewritten (mtime %v, was %v)", p, a.mtime, b.mtime)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was created", p)
		}
	}
}

// ageFiles sets the modification time of every file below dir to an hour
// ago, so that a rewrite shows in the mtime however coarse the clock.
func ageFiles(t *testing.T, dir string) {
	t.Helper()
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

const spec = `version: 1
output: gen
prefixes:
  - name: flash_sale
    key: string
  - name: coupon
    key: int64
`

// generated is what spec generates, relative to its output directory.
var generated = []string{
	"coupon/db/db.go", "coupon/db/models.go", "coupon/db/query.sql.go",
	"coupon/manager.go", "coupon/query.sql", "coupon/schema.sql",
	"flashsale/db/db.go", "flashsale/db/models.go", "flashsale/db/query.sql.go",
	"flashsale/manager.go", "flashsale/query.sql", "flashsale/schema.sql",
	"invgen.manifest", "sqlc.yaml",
}

// wroteLines returns the paths of the "wrote PATH" lines of out.
func wroteLines(out string) []string {
	var paths []string
	for _, line := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(line, "wrote "); ok {
			paths = append(paths, p)
		}
	}
	return paths
}

func TestInit(t *testing.T) {
	inModule(t)
	r := invgen(t, "init").want(t, exitOK)
	if !strings.Contains(r.stdout, "wrote inventory.yaml") {
		t.Errorf("stdout %q does not name the spec", r.stdout)
	}
	if got := readFile(t, "inventory.yaml"); got != starterSpec {
		t.Fatalf("init wrote\n%s\nwant the starter spec", got)
	}

	// The starter spec generates and checks cleanly.
	r = invgen(t, "generate").want(t, exitOK)
	for _, p := range []string{"manager.go", "schema.sql", "query.sql", "db/db.go", "db/models.go", "db/query.sql.go"} {
		name := filepath.Join("internal", "inventory", "flashsale", filepath.FromSlash(p))
		if _, err := os.Stat(name); err != nil {
			t.Errorf("generate from the starter spec: %v", err)
		}
		if !slices.Contains(wroteLines(r.stdout), name) {
			t.Errorf("generate did not print wrote %s:\n%s", name, r.stdout)
		}
	}
	invgen(t, "check").want(t, exitOK)

	// A second init refuses to overwrite, whatever the file holds.
	writeFile(t, "inventory.yaml", "# mine\n")
	r = invgen(t, "init").want(t, exitFail)
	if !strings.Contains(r.stderr, "inventory.yaml exists; not overwriting it") {
		t.Errorf("stderr %q does not say why", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
	if got := readFile(t, "inventory.yaml"); got != "# mine\n" {
		t.Errorf("init changed an existing spec to\n%s", got)
	}

	// -f names another file.
	invgen(t, "init", "-f", "other.yaml").want(t, exitOK)
	if got := readFile(t, "other.yaml"); got != starterSpec {
		t.Errorf("init -f other.yaml wrote\n%s", got)
	}
	invgen(t, "init", "-f", "other.yaml").want(t, exitFail)
}

func TestGenerateBadSpec(t *testing.T) {
	dir := inModule(t)
	writeFile(t, "inventory.yaml", `version: 1
output: gen
prefixes:
  - name: select
    key: string
  - name: coupon
    key: float
`)
	before := snapshot(t, dir)
	for _, cmd := range []string{"generate", "check"} {
		r := invgen(t, cmd).want(t, exitUsage)
		want := "inventory.yaml:4:11: prefix name \"select\" is a reserved word in SQL\n" +
			"inventory.yaml:7:10: unknown key type \"float\" (known: string, int64, uuid)\n"
		if r.stderr != want {
			t.Errorf("%s: stderr\n%s\nwant\n%s", cmd, r.stderr, want)
		}
		if r.stdout != "" {
			t.Errorf("%s: stdout %q, want nothing", cmd, r.stdout)
		}
		if _, err := os.Stat("gen"); !os.IsNotExist(err) {
			t.Errorf("%s of a bad spec created its output directory (stat: %v)", cmd, err)
		}
		sameSnapshot(t, before, snapshot(t, dir))
	}

	// An error in the YAML itself, and one while decoding, are spec errors too.
	writeFile(t, "inventory.yaml", "version: 1\n output: gen\nprefixes: []\n")
	r := invgen(t, "generate").want(t, exitUsage)
	if r.stderr != "inventory.yaml:2:1: invalid YAML: mapping values are not allowed in this context\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	writeFile(t, "inventory.yaml", "version: 1\noutput: gen\nprefix:\n  - name: a\n    key: string\n")
	r = invgen(t, "generate").want(t, exitUsage)
	// Decoding and validation problems are reported together, by position.
	if want := "inventory.yaml:1:1: no prefixes: the spec must list at least one\n" +
		`inventory.yaml:3:1: unknown field "prefix" in spec`; !strings.HasPrefix(r.stderr, want) {
		t.Errorf("stderr %q, want it to start with %q", r.stderr, want)
	}
	if _, err := os.Stat("gen"); !os.IsNotExist(err) {
		t.Errorf("generate of a bad spec created its output directory (stat: %v)", err)
	}
}

func TestGenerateMissingSpec(t *testing.T) {
	inModule(t)
	r := invgen(t, "generate").want(t, exitFail)
	if !strings.Contains(r.stderr, "inventory.yaml") {
		t.Errorf("stderr %q does not name the spec", r.stderr)
	}
	r = invgen(t, "check", "-f", "nope.yaml").want(t, exitFail)
	if !strings.Contains(r.stderr, "nope.yaml") {
		t.Errorf("stderr %q does not name the spec", r.stderr)
	}
}

func TestGenerateTwice(t *testing.T) {
	dir := inModule(t)
	writeFile(t, "inventory.yaml", spec)
	r := invgen(t, "generate").want(t, exitOK)
	var want []string
	for _, p := range generated {
		want = append(want, filepath.Join("gen", filepath.FromSlash(p)))
	}
	if got := wroteLines(r.stdout); !slices.Equal(got, want) {
		t.Errorf("first generate wrote\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
	if r.stderr != "" {
		t.Errorf("stderr %q, want nothing", r.stderr)
	}

	ageFiles(t, dir)
	before := snapshot(t, dir)
	r = invgen(t, "generate").want(t, exitOK)
	if got := wroteLines(r.stdout); len(got) != 0 {
		t.Errorf("second generate wrote %v", got)
	}
	if r.stdout != "" || r.stderr != "" {
		t.Errorf("second generate printed\nstdout: %q\nstderr: %q", r.stdout, r.stderr)
	}
	sameSnapshot(t, before, snapshot(t, dir))

	// After one file changes, generate rewrites just that file.
	writeFile(t, filepath.Join("gen", "coupon", "query.sql"), "-- edited\n")
	r = invgen(t, "generate").want(t, exitOK)
	if got, want := wroteLines(r.stdout), []string{filepath.Join("gen", "coupon", "query.sql")}; !slices.Equal(got, want) {
		t.Errorf("generate after an edit wrote %v, want %v", got, want)
	}
}

func TestGenerateSpecElsewhere(t *testing.T) {
	// The output is relative to the spec, not to the working directory,
	// and the printed paths are relative to the working directory.
	inModule(t)
	writeFile(t, filepath.Join("sub", "inventory.yaml"), spec)
	r := invgen(t, "generate", "-f", filepath.Join("sub", "inventory.yaml")).want(t, exitOK)
	if got := wroteLines(r.stdout); len(got) != len(generated) || got[0] != filepath.Join("sub", "gen", "coupon", "db", "db.go") {
		t.Errorf("generate -f sub/inventory.yaml wrote\n%s", r.stdout)
	}
	if _, err := os.Stat(filepath.Join("sub", "gen", "flashsale", "manager.go")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat("gen"); !os.IsNotExist(err) {
		t.Errorf("generate wrote below the working directory (stat: %v)", err)
	}
	invgen(t, "check", "-f", filepath.Join("sub", "inventory.yaml")).want(t, exitOK)
}

func TestCheck(t *testing.T) {
	dir := inModule(t)
	writeFile(t, "inventory.yaml", spec)
	invgen(t, "generate").want(t, exitOK)

	r := invgen(t, "check").want(t, exitOK)
	if !strings.Contains(r.stdout, "14 generated files match inventory.yaml") || r.stderr != "" {
		t.Errorf("check of a fresh generation printed\nstdout: %q\nstderr: %q", r.stdout, r.stderr)
	}

	// A hand edit is stale.
	manager := filepath.Join("gen", "flashsale", "manager.go")
	writeFile(t, manager, readFile(t, manager)+"\n// hand edit\n")
	ageFiles(t, dir)
	before := snapshot(t, dir)
	r = invgen(t, "check").want(t, exitFail)
	if !strings.Contains(r.stderr, "stale: "+manager+"\n") {
		t.Errorf("check does not name the edited file:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "--- a/flashsale/manager.go\n+++ b/flashsale/manager.go\n") || !strings.Contains(r.stderr, "\n-// hand edit\n") {
		t.Errorf("check does not show the edit as a unified diff:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "1 of 14 generated files differ from inventory.yaml") {
		t.Errorf("check does not count the drift:\n%s", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
	sameSnapshot(t, before, snapshot(t, dir))

	// A deleted file is missing.
	models := filepath.Join("gen", "coupon", "db", "models.go")
	if err := os.Remove(models); err != nil {
		t.Fatal(err)
	}
	before = snapshot(t, dir)
	r = invgen(t, "check").want(t, exitFail)
	for _, want := range []string{"missing: " + models + "\n", "stale: " + manager + "\n", "2 of 14 generated files differ"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("check stderr does not contain %q:\n%s", want, r.stderr)
		}
	}
	sameSnapshot(t, before, snapshot(t, dir))

	// A changed spec is drift too: every file of a new prefix is missing.
	writeFile(t, "inventory.yaml", spec+"  - name: gift_card\n    key: uuid\n")
	r = invgen(t, "check").want(t, exitFail)
	if !strings.Contains(r.stderr, "missing: "+filepath.Join("gen", "giftcard", "manager.go")+"\n") ||
		!strings.Contains(r.stderr, "stale: "+filepath.Join("gen", "sqlc.yaml")+"\n") {
		t.Errorf("check after adding a prefix:\n%s", r.stderr)
	}

	// generate repairs all of it.
	invgen(t, "generate").want(t, exitOK)
	invgen(t, "check").want(t, exitOK)

	// A prefix removed from the spec: check fails on its files, generate
	// deletes them and its emptied directories, and nothing else.
	mine := filepath.Join("gen", "flashsale", "mine.go")
	writeFile(t, mine, "package flashsale\n")
	writeFile(t, "inventory.yaml", strings.Replace(spec, "  - name: flash_sale\n    key: string\n", "", 1))
	r = invgen(t, "check").want(t, exitFail)
	if !strings.Contains(r.stderr, "orphaned: "+manager+" (the spec no longer generates it") ||
		!strings.Contains(r.stderr, "orphaned: "+filepath.Join("gen", "flashsale", "db", "query.sql.go")) ||
		strings.Contains(r.stderr, "mine.go") {
		t.Errorf("check after removing a prefix:\n%s", r.stderr)
	}
	r = invgen(t, "generate").want(t, exitOK)
	if !strings.Contains(r.stdout, "deleted "+manager+"\n") {
		t.Errorf("generate after removing a prefix printed:\n%s", r.stdout)
	}
	if _, err := os.Stat(filepath.Join("gen", "flashsale", "db")); !os.IsNotExist(err) {
		t.Errorf("the removed prefix's db/ is still there (stat: %v)", err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("generate deleted a file it did not write: %v", err)
	}
	invgen(t, "check").want(t, exitOK)
}

func TestVersion(t *testing.T) {
	r := invgen(t, "version").want(t, exitOK)
	if !strings.HasPrefix(r.stdout, "invgen ") || !strings.Contains(r.stdout, "generated code version") || r.stderr != "" {
		t.Errorf("version printed\nstdout: %q\nstderr: %q", r.stdout, r.stderr)
	}
	invgen(t, "version", "extra").want(t, exitUsage)
}

func TestUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // on stderr
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, `invgen: unknown command "frobnicate"`},
		{[]string{"Generate"}, `invgen: unknown command "Generate"`},
		{[]string{"generate", "-x"}, "flag provided but not defined: -x"},
		{[]string{"check", "-f"}, "flag needs an argument: -f"},
		{[]string{"generate", "inventory.yaml"}, `invgen generate: unexpected argument "inventory.yaml"`},
		{[]string{"init", "-f", "a.yaml", "b.yaml"}, `invgen init: unexpected argument "b.yaml"`},
		{[]string{"version", "-f", "x"}, "flag provided but not defined: -f"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			inModule(t)
			r := invgen(t, tt.args...).want(t, exitUsage)
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr does not contain %q:\n%s", tt.want, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			entries, err := os.ReadDir(".")
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("a usage error wrote files: %v", entries)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help", "help"} {
		r := invgen(t, arg).want(t, exitOK)
		if r.stdout != usage || r.stderr != "" {
			t.Errorf("invgen %s printed\nstdout: %q\nstderr: %q", arg, r.stdout, r.stderr)
		}
	}
	for _, cmd := range []string{"init", "generate", "check", "version"} {
		for _, arg := range []string{"-h", "--help"} {
			t.Run(cmd+" "+arg, func(t *testing.T) {
				inModule(t)
				writeFile(t, "inventory.yaml", "not: a spec\n")
				r := invgen(t, cmd, arg).want(t, exitOK)
				// Like the flag package, the usage goes to stderr.
				if !strings.HasPrefix(r.stderr, "Usage: invgen "+cmd) || !strings.Contains(r.stderr, commandDoc[cmd]) {
					t.Errorf("stderr is not the usage of %s:\n%s", cmd, r.stderr)
				}
				if cmd != "version" && !strings.Contains(r.stderr, "-f FILE") {
					t.Errorf("usage of %s does not document -f:\n%s", cmd, r.stderr)
				}
				if r.stdout != "" {
					t.Errorf("stdout %q, want nothing", r.stdout)
				}
				// -h does the command's work no more than it reads the spec.
				entries, err := os.ReadDir(".")
				if err != nil {
					t.Fatal(err)
				}
				if len(entries) != 2 || readFile(t, "inventory.yaml") != "not: a spec\n" {
					t.Errorf("%s %s changed the directory: %v", cmd, arg, entries)
				}
			})
		}
	}
}

// TestCheckRepo checks the repository's reference spec against the
// packages committed from it, so they cannot drift.
func TestCheckRepo(t *testing.T) {
	spec := filepath.Join("..", "..", "inventory.yaml")
	r := invgen(t, "check", "-f", spec)
	if r.code != exitOK {
		t.Fatalf("invgen check -f %s: exit %d; run: go run ./cmd/invgen generate\n%s%s", spec, r.code, r.stdout, r.stderr)
	}
}
