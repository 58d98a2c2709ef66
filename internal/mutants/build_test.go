package mutants

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPatchesBuild: each planted bug compiles. One that does not fails
// every test with a build error, which make mutants would count as a bug
// the tests caught. The patched Go files are built in place of the
// originals through the go command's -overlay, so that the tree stays as
// it is.
func TestPatchesBuild(t *testing.T) {
	root, patches := planted(t)
	for _, p := range patches {
		files, err := goFiles(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			continue // a Lua script or SQL text only: embedded, built as it is
		}
		t.Run(strings.TrimSuffix(filepath.Base(p), ".patch"), func(t *testing.T) {
			t.Parallel()
			buildPatched(t, root, p, files)
		})
	}
}

// goFiles lists the Go files patch p changes.
func goFiles(p string) ([]string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "+++ b/"); ok && strings.HasSuffix(name, ".go") {
			files = append(files, name)
		}
	}
	return files, nil
}

// buildPatched applies p to copies of files and builds the packages that
// hold them with the copies in place of the originals.
func buildPatched(t *testing.T, root, p string, files []string) {
	dir := t.TempDir()
	replace := map[string]string{}
	pkgs := map[string]bool{}
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, src, 0o644); err != nil {
			t.Fatal(err)
		}
		replace[filepath.Join(root, f)] = dst
		pkgs[importPath(filepath.Dir(f))] = true
	}
	apply := exec.Command("git", "apply", "--unsafe-paths", "--directory="+dir, "--include=*.go", p)
	apply.Dir = root
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("apply to copies: %v\n%s", err, out)
	}
	overlay, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		t.Fatal(err)
	}
	ov := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ov, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"build", "-overlay=" + ov, "-o", os.DevNull}
	for pkg := range pkgs {
		args = append(args, pkg)
	}
	build := exec.Command("go", args...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Errorf("%s does not build with its bug planted: %v\n%s", filepath.Base(p), err, strings.TrimSpace(string(out)))
	}
}

// importPath is the import path of the package in directory dir of the
// repository (the runtime is a module of its own, required by the main
// module).
func importPath(dir string) string {
	return "github.com/invgen/invgen/" + filepath.ToSlash(dir)
}
