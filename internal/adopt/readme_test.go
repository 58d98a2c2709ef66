// Package adopt tests the way in that README.md and docs/getting-started.md
// give: their steps, run verbatim in a fresh module, against invgen served
// at its version from this work tree.
package adopt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	"github.com/invgen/invgen/generator"
)

// The install steps, as the code blocks of docs/getting-started.md give
// them (and README.md the first two).
var (
	stepInit    = "go run github.com/invgen/invgen/cmd/invgen@" + generator.Version + " init"
	stepGenRun  = "//go:generate go run github.com/invgen/invgen/cmd/invgen@" + generator.Version + " generate"
	stepGetTool = "go get -tool github.com/invgen/invgen/cmd/invgen@" + generator.Version
	stepGenTool = "//go:generate go tool invgen generate"
)

// TestREADMESteps runs the install steps in fresh modules, before and
// after go mod tidy, in both forms, with invgen's two modules served at
// their version from this work tree by a module proxy in a directory. An
// application generated with the go run form has no module but the
// runtime's: go-redis, pgx and uuid, and what their go.mod files list.
func TestREADMESteps(t *testing.T) {
	// docs/getting-started.md gives every step; the README's quick start
	// the go run form.
	for doc, steps := range map[string][]string{
		"docs/getting-started.md": {stepInit, stepGenRun, stepGetTool, stepGenTool},
		"README.md":               {stepInit, stepGenRun},
	} {
		text, err := os.ReadFile(filepath.Join("../..", doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range steps {
			if !bytes.Contains(text, []byte(step)) {
				t.Fatalf("%s does not say %q", doc, step)
			}
		}
	}
	proxy := serve(t)
	upstream := strings.TrimSpace(run(t, ".", nil, "go", "env", "GOPROXY"))
	env := []string{
		"GOPROXY=file://" + filepath.ToSlash(proxy) + "," + upstream,
		"GONOSUMDB=github.com/invgen", "GONOSUMCHECK=1", "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local",
	}

	t.Run("go run", func(t *testing.T) {
		dir := scratch(t, env)
		write(t, dir, "gen.go", "package main\n\n"+stepGenRun+"\n")
		steps(t, dir, env)
		mods := strings.Split(strings.TrimSpace(run(t, dir, env, "go", "list", "-m", "all")), "\n")
		t.Logf("go list -m all: %d modules\n%s", len(mods), strings.Join(mods, "\n"))
		// The runtime module's own graph, read in the work tree.
		runtimeMods := map[string]bool{"example.com/shop": true}
		for _, line := range strings.Split(strings.TrimSpace(run(t, "../../runtime", []string{"GOWORK=off", "GOFLAGS=-mod=mod"}, "go", "list", "-m", "all")), "\n") {
			runtimeMods[strings.Fields(line)[0]] = true
		}
		for _, line := range mods {
			if path := strings.Fields(line)[0]; !runtimeMods[path] {
				t.Errorf("the application needs %s, which is not the runtime's: a dependency of the generator leaked into it", path)
			}
		}
	})
	t.Run("go tool", func(t *testing.T) {
		dir := scratch(t, env)
		run(t, dir, env, strings.Fields(stepGetTool)...)
		write(t, dir, "gen.go", "package main\n\n"+stepGenTool+"\n")
		steps(t, dir, env)
		mods := strings.Split(strings.TrimSpace(run(t, dir, env, "go", "list", "-m", "all")), "\n")
		t.Logf("go list -m all with invgen as a tool: %d modules", len(mods))
	})
}

// scratch is a fresh module with the first install step done.
func scratch(t *testing.T, env []string) string {
	dir := t.TempDir()
	run(t, dir, env, "go", "mod", "init", "example.com/shop")
	run(t, dir, env, strings.Fields(stepInit)...)
	if _, err := os.Stat(filepath.Join(dir, "inventory.yaml")); err != nil {
		t.Fatalf("init wrote no spec: %v", err)
	}
	write(t, dir, "main.go", `package main

import (
	"fmt"

	"example.com/shop/internal/inventory/flashsale"
)

func main() { fmt.Println(flashsale.Prefix, flashsale.New) }
`)
	return dir
}

// steps generates, tidies, builds, and does it all again after the tidy.
func steps(t *testing.T, dir string, env []string) {
	for range 2 {
		run(t, dir, env, "go", "generate", "./...")
		run(t, dir, env, "go", "mod", "tidy")
		run(t, dir, env, "go", "build", "./...")
	}
	if out := run(t, dir, env, "go", "run", "."); !strings.HasPrefix(out, "flash_sale ") {
		t.Errorf("the application printed %q", out)
	}
}

func run(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func write(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// serve builds a module proxy in a directory holding invgen's two modules
// at generator.Version, from this work tree, and returns the directory.
func serve(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	proxy := t.TempDir()
	v := generator.Version
	rtZip := publish(t, proxy, module.Version{Path: "github.com/invgen/invgen/runtime", Version: v}, filepath.Join(root, "runtime"))

	// The main module requires the runtime at v: its go.sum gets the
	// runtime's hashes, as a release's would.
	src := filepath.Join(t.TempDir(), "invgen")
	copyTree(t, root, src)
	zh, err := dirhash.HashZip(rtZip, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	mh, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return os.Open(filepath.Join(root, "runtime", "go.mod"))
	})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.OpenFile(filepath.Join(src, "go.sum"), os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(sum, "github.com/invgen/invgen/runtime %s %s\ngithub.com/invgen/invgen/runtime %s/go.mod %s\n", v, zh, v, mh)
	sum.Close()
	publish(t, proxy, module.Version{Path: "github.com/invgen/invgen", Version: v}, src)
	return proxy
}

// publish puts module m, from dir, into the proxy directory and returns
// the path of its zip.
func publish(t *testing.T, proxy string, m module.Version, dir string) string {
	t.Helper()
	at := filepath.Join(proxy, filepath.FromSlash(m.Path), "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	zf, err := os.Create(filepath.Join(at, m.Version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	if err := modzip.CreateFromDir(zf, m, dir); err != nil {
		t.Fatalf("zip of %s: %v", m.Path, err)
	}
	zf.Close()
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := json.Marshal(map[string]any{"Version": m.Version, "Time": time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
	for name, data := range map[string][]byte{m.Version + ".mod": gomod, m.Version + ".info": info, "list": []byte(m.Version + "\n")} {
		if err := os.WriteFile(filepath.Join(at, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return zf.Name()
}

// copyTree copies the main module's files from root to dst: not the
// runtime (a module of its own), not .git, not what builds leave.
func copyTree(t *testing.T, root, dst string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			switch rel {
			case ".git", "runtime":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() || rel == "go.work" || rel == "go.work.sum" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRuntimeModuleIsLean: what an application imports, the runtime
// module, requires go-redis, pgx and uuid directly, and nothing else:
// nothing of the generator, sqlc, the tests or the metrics and tracing
// packages.
func TestRuntimeModuleIsLean(t *testing.T) {
	data, err := os.ReadFile("../../runtime/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse("runtime/go.mod", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"github.com/redis/go-redis/v9": true, "github.com/jackc/pgx/v5": true, "github.com/google/uuid": true}
	for _, r := range f.Require {
		if !r.Indirect && !allowed[r.Mod.Path] {
			t.Errorf("the runtime module requires %s", r.Mod.Path)
		}
	}
	if len(f.Replace) > 0 {
		t.Errorf("the runtime's go.mod has replace directives: go run ...@version would refuse the modules that require it")
	}
}
