package generator

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"
	"text/template"

	sqlc "github.com/sqlc-dev/sqlc/pkg/cli"

	"github.com/invgen/invgen/templates"
)

// Files maps a slash-separated path, relative to the model's output
// directory, to the file's content.
type Files map[string][]byte

// Paths returns the paths of fs in sorted order.
func (fs Files) Paths() []string {
	out := make([]string, 0, len(fs))
	for p := range fs {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// producer renders one file of a prefix.
type producer struct {
	name string // path below the prefix directory
	make func(m *Model, p *Prefix) ([]byte, error)
}

// prefixFiles is the list of files every prefix gets (besides sqlc's
// output in db/, which sqlc produces from them).
var prefixFiles = []producer{
	{"manager.go", emitManager},
	{"schema.sql", sqlTemplate("schema.sql")},
	{"query.sql", sqlTemplate("query.sql")},
}

// Generate renders every file the spec's model describes, sqlc's output
// included, without writing to the output directory.
func Generate(m *Model) (Files, error) {
	files := Files{}
	for _, p := range m.Prefixes {
		for _, pr := range prefixFiles {
			data, err := pr.make(m, p)
			if err != nil {
				return nil, err
			}
			files[path.Join(p.Dir, pr.name)] = data
		}
		if m.Engine != "postgresql" {
			// The flusher's statements, which sqlc's MySQL and SQLite
			// parsers do not take (JSON_TABLE, json_each): the generated
			// code embeds them.
			data, err := sqlTemplate("direct.sql")(m, p)
			if err != nil {
				return nil, err
			}
			files[path.Join(p.Dir, "direct.sql")] = data
		}
	}
	cfg, err := render(m.Engine, "sqlc.yaml", m.Prefixes)
	if err != nil {
		return nil, err
	}
	files["sqlc.yaml"] = cfg
	if err := runSQLC(files); err != nil {
		return nil, err
	}
	files[ManifestName] = manifest(m, files)
	return files, nil
}

// tableNames is what the query template ranges over: the Go and SQL name of
// each table.
type tableName struct{ Go, SQL string }

// sqlData is what the SQL templates see.
type sqlData struct {
	*Prefix
	Tables []tableName
}

func sqlTemplate(name string) func(m *Model, p *Prefix) ([]byte, error) {
	return func(m *Model, p *Prefix) ([]byte, error) {
		return render(m.Engine, name, sqlData{p, []tableName{{"Modification", p.ModTable}, {"Usage", p.UsageTable}}})
	}
}

// render executes template name of engine, with the engine's shared
// definitions (the flush statement, the layout query).
func render(engine, name string, data any) ([]byte, error) {
	file := name + ".tmpl"
	t, err := template.New(file).Funcs(template.FuncMap{"header": func() string { return Header }}).
		ParseFS(templates.FS, engine+"/"+file, engine+"/flush.sql.tmpl", engine+"/layout.sql.tmpl")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, file, data); err != nil {
		return nil, fmt.Errorf("template %s/%s: %w", engine, file, err)
	}
	return buf.Bytes(), nil
}

// sqlcMu serializes sqlc runs: sqlc's command keeps package-level state.
var sqlcMu sync.Mutex

// runSQLC runs sqlc (linked in, pinned by go.mod) over the SQL files of
// files in a scratch directory and adds what it generates to files.
func runSQLC(files Files) error {
	tmp, err := os.MkdirTemp("", "invgen-sqlc-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for p, data := range files {
		if path.Ext(p) == ".go" {
			continue
		}
		dst := filepath.Join(tmp, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
	}
	sqlcMu.Lock()
	code := sqlc.Run([]string{"generate", "-f", filepath.Join(tmp, "sqlc.yaml")})
	sqlcMu.Unlock()
	if code != 0 {
		return fmt.Errorf("sqlc generate failed (exit %d); its messages are above", code)
	}
	return filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(filepath.Dir(p)) != "db" {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tmp, p)
		files[filepath.ToSlash(rel)] = data
		return nil
	})
}

// Write writes files below dir, creating directories as needed. Files whose
// content is unchanged are not touched, so generating twice changes nothing.
// It returns the paths it wrote.
func Write(dir string, files Files) ([]string, error) {
	var wrote []string
	for _, p := range files.Paths() {
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, files[p]) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return wrote, err
		}
		if err := os.WriteFile(dst, files[p], 0o644); err != nil {
			return wrote, err
		}
		wrote = append(wrote, p)
	}
	return wrote, nil
}

// Drift is one difference between generated files and the disk.
type Drift struct {
	Path string // relative to the output directory
	// Reason is "missing", "stale" (Diff is then a unified diff from the
	// disk to what the spec generates) or "orphaned" (generated once, no
	// longer: generate deletes it).
	Reason string
	Diff   string
}

// Diff compares files with what is below dir and writes nothing.
func Diff(dir string, files Files) ([]Drift, error) {
	var out []Drift
	for _, p := range files.Paths() {
		old, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			out = append(out, Drift{Path: p, Reason: "missing"})
		case err != nil:
			return nil, err
		case !bytes.Equal(old, files[p]):
			out = append(out, Drift{Path: p, Reason: "stale", Diff: unified(p, old, files[p])})
		}
	}
	orphans, err := Orphans(dir, files)
	if err != nil {
		return nil, err
	}
	for _, p := range orphans {
		out = append(out, Drift{Path: p, Reason: "orphaned"})
	}
	return out, nil
}

// FromSpec loads, validates and generates the spec at specPath: the common
// start of the generate and check commands.
func FromSpec(specPath string) (*Model, Files, error) {
	m, err := LoadModel(specPath)
	if err != nil {
		return nil, nil, err
	}
	files, err := Generate(m)
	if err != nil {
		return nil, nil, err
	}
	return m, files, nil
}

// LoadModel loads and validates the spec at specPath. Its decoding and
// validation problems come back together, as Errors sorted by position.
func LoadModel(specPath string) (*Model, error) {
	s, err := Load(specPath)
	var decodeErrs Errors
	if err != nil && (s == nil || !errors.As(err, &decodeErrs)) {
		return nil, err
	}
	m, err := NewModel(s)
	var modelErrs Errors
	if err != nil && !errors.As(err, &modelErrs) {
		return nil, err
	}
	if len(decodeErrs)+len(modelErrs) > 0 {
		c := &errs{list: append(decodeErrs, modelErrs...)}
		c.sort()
		return nil, c.list
	}
	return m, nil
}
