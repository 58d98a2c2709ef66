package generator

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestFilesPaths(t *testing.T) {
	fs := Files{"b/x.go": nil, "a.yaml": nil, "a/b.sql": nil}
	if got, want := fs.Paths(), []string{"a.yaml", "a/b.sql", "b/x.go"}; !slices.Equal(got, want) {
		t.Errorf("Paths() = %v, want %v", got, want)
	}
}

// TestWriteDiff checks Write and Diff on a hand-made file set, without
// running sqlc.
func TestWriteDiff(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	files := Files{
		"sqlc.yaml":        []byte("# yaml\n"),
		"p/manager.go":     []byte("package p\n"),
		"p/db/models.go":   []byte("package db\n"),
		"q/deep/a/b/c.sql": []byte("-- sql\n"),
	}

	drift, err := Diff(dir, files)
	if err != nil {
		t.Fatal(err)
	}
	if len(drift) != len(files) {
		t.Errorf("Diff of a missing directory = %v, want every file missing", drift)
	}
	for _, d := range drift {
		if d.Reason != "missing" {
			t.Errorf("Diff: %+v, want missing", d)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("Diff created the directory (stat: %v)", err)
	}

	wrote, err := Write(dir, files)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(wrote, files.Paths()) {
		t.Errorf("first Write wrote %v, want %v", wrote, files.Paths())
	}
	for p, data := range files {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil || string(got) != string(data) {
			t.Errorf("%s: %q, %v; want %q", p, got, err, data)
		}
	}
	if drift, err := Diff(dir, files); err != nil || len(drift) != 0 {
		t.Errorf("Diff after Write = %v, %v; want no drift", drift, err)
	}

	// Writing again touches nothing.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	for p := range files {
		if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(p)), old, old); err != nil {
			t.Fatal(err)
		}
	}
	wrote, err = Write(dir, files)
	if err != nil || len(wrote) != 0 {
		t.Errorf("second Write wrote %v, %v; want nothing", wrote, err)
	}
	for p := range files {
		info, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil || !info.ModTime().Equal(old) {
			t.Errorf("second Write touched %s", p)
		}
	}

	// A stale and a missing file; Diff reports them in path order and
	// changes nothing; Write repairs just them.
	stale := filepath.Join(dir, "p", "manager.go")
	if err := os.WriteFile(stale, []byte("package p // edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "p", "db", "models.go")); err != nil {
		t.Fatal(err)
	}
	drift, err = Diff(dir, files)
	if err != nil {
		t.Fatal(err)
	}
	want := []Drift{{"p/db/models.go", "missing"}, {"p/manager.go", "stale"}}
	if !slices.Equal(drift, want) {
		t.Errorf("Diff = %v, want %v", drift, want)
	}
	if got, _ := os.ReadFile(stale); string(got) != "package p // edited\n" {
		t.Errorf("Diff changed %s", stale)
	}
	wrote, err = Write(dir, files)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"p/db/models.go", "p/manager.go"}; !slices.Equal(wrote, want) {
		t.Errorf("Write wrote %v, want %v", wrote, want)
	}
}
