// Package mutants checks that the planted bugs of scripts/mutants (make
// mutants) still apply to the tree and build: a patch that no longer
// applies plants nothing, and make mutants would count it as a bug the
// tests missed; one that does not build fails every test, and would be
// counted as caught.
package mutants

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestPatchesApply(t *testing.T) {
	root, patches := planted(t)
	for _, p := range patches {
		cmd := exec.Command("git", "apply", "--check", p)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s does not apply to the tree: %v\n%s", filepath.Base(p), err, strings.TrimSpace(string(out)))
		}
	}
}

// planted returns the repository's root and the patches of scripts/mutants.
func planted(t *testing.T) (string, []string) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	patches, err := filepath.Glob(filepath.Join(root, "scripts", "mutants", "*.patch"))
	if err != nil {
		t.Fatal(err)
	}
	if len(patches) == 0 {
		t.Fatal("no patches in scripts/mutants")
	}
	return root, patches
}
