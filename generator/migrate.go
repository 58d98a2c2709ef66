package generator

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Schema evolution. A prefix's key type and key length are the type of its
// ledger's item_id column. The manifest records them (a "# key" line per
// prefix); when the spec changes them, generate writes a migration of the
// prefix's tables into <package>/migrations/: a SQL file to review, in
// goose's format, that `invgen migrate` (or goose) applies. Migrations are
// written once and then belong to the team, like any migration: generate
// never rewrites or deletes them, and check does not compare them.

// MigrationsDir is the directory of a prefix's migrations, below its
// package.
const MigrationsDir = "migrations"

// keyColumn is what a migration changes: the key type and length.
type keyColumn struct {
	Key       string
	MaxKeyLen int
}

func (k keyColumn) String() string {
	if k.Key == "string" {
		return "string" + strconv.Itoa(k.MaxKeyLen)
	}
	return k.Key
}

func (k keyColumn) sqlType() string {
	switch k.Key {
	case "int64":
		return "bigint"
	case "uuid":
		return "uuid"
	}
	return fmt.Sprintf("varchar(%d)", k.MaxKeyLen)
}

// keyLines are the manifest's lines recording each prefix's key column.
func keyLines(m *Model) string {
	var b strings.Builder
	for _, p := range m.Prefixes {
		fmt.Fprintf(&b, "# key %s %s %d\n", p.Name, p.Key, p.MaxKeyLen)
	}
	return b.String()
}

// RecordedKeys reads the key columns the manifest below dir records, by
// prefix name: what the last generate wrote for. Without a manifest it
// returns none.
func RecordedKeys(dir string) (map[string]keyColumn, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]keyColumn{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 5 && f[0] == "#" && f[1] == "key" {
			n, _ := strconv.Atoi(f[4])
			out[f[2]] = keyColumn{Key: f[3], MaxKeyLen: n}
		}
	}
	return out, sc.Err()
}

// CheckMigrations refuses a spec of the mysql or sqlite engine that changes
// a prefix's key column since the last generate: invgen writes migrations
// of the key column for PostgreSQL only. Call it before writing anything.
func CheckMigrations(m *Model, recorded map[string]keyColumn) error {
	if m.Engine == "postgresql" {
		return nil
	}
	for _, p := range m.Prefixes {
		old, ok := recorded[p.Name]
		if cur := (keyColumn{Key: p.Key, MaxKeyLen: p.MaxKeyLen}); ok && old != cur {
			return fmt.Errorf("prefix %s changes its key column from %s to %s: invgen writes migrations of the key column for postgresql only; "+
				"alter item_id of its tables on %s yourself, or keep the key as it was", p.Name, old, cur, m.Engine)
		}
	}
	return nil
}

// WriteMigrations writes below dir the migration of every prefix whose key
// column differs from what was recorded (see RecordedKeys), numbered after
// the prefix's existing migrations, and returns their paths.
func WriteMigrations(m *Model, dir string, recorded map[string]keyColumn) ([]string, error) {
	var wrote []string
	for _, p := range m.Prefixes {
		old, ok := recorded[p.Name]
		cur := keyColumn{Key: p.Key, MaxKeyLen: p.MaxKeyLen}
		if !ok || old == cur {
			continue
		}
		mdir := filepath.Join(dir, filepath.FromSlash(p.Dir), MigrationsDir)
		existing, err := Migrations(dir, p)
		if err != nil {
			return wrote, err
		}
		name := fmt.Sprintf("%04d_%s_key_%s_to_%s.sql", len(existing)+1, p.Name, old, cur)
		if err := os.MkdirAll(mdir, 0o755); err != nil {
			return wrote, err
		}
		if err := os.WriteFile(filepath.Join(mdir, name), migration(m, p, old, cur), 0o644); err != nil {
			return wrote, err
		}
		wrote = append(wrote, path.Join(p.Dir, MigrationsDir, name))
	}
	return wrote, nil
}

// Migrations lists the migration files of prefix p below dir, in order.
func Migrations(dir string, p *Prefix) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, filepath.FromSlash(p.Dir), MigrationsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".sql") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// migration is the SQL that changes p's key column from old to cur, and
// back, in goose's format.
func migration(m *Model, p *Prefix, old, cur keyColumn) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "-- Written by invgen %s from %s: the item key of prefix %s changes\n", Version, filepath.Base(m.SpecPath), p.Name)
	fmt.Fprintf(&b, "-- from %s to %s. Review it before you apply it: stop the processes of the\n", old, cur)
	b.WriteString("-- old layout and drain them (invgen admin drain), apply it (invgen migrate,\n")
	b.WriteString("-- or goose; golang-migrate takes the Up part), start the new release, and\n")
	b.WriteString("-- refresh Redis from the ledger (invgen admin refresh -all). A key that does\n")
	b.WriteString("-- not fit the new type makes it fail and change nothing.\n\n")
	b.WriteString("-- +goose Up\n")
	alter(&b, p, old, cur)
	b.WriteString("\n-- +goose Down\n")
	alter(&b, p, cur, old)
	return b.Bytes()
}

// alter changes p's key column from "from" to "to". PostgreSQL truncates
// a string on an explicit cast to a shorter varchar (and ignores the
// spaces an assignment cast drops), which would make a long key another
// item's; so a change to a string key that may not fit first looks for a
// key over the new length, in bytes as the runtime counts it, and raises
// string_data_right_truncation (SQLSTATE 22001) naming it. The cast to a
// string is then an assignment, which raises rather than truncates too.
func alter(b *bytes.Buffer, p *Prefix, from, to keyColumn) {
	if to.Key == "string" && (from.Key != "string" || from.MaxKeyLen > to.MaxKeyLen) {
		fmt.Fprintf(b, "-- +goose StatementBegin\nDO $$\nDECLARE\n    k text;\nBEGIN\n")
		fmt.Fprintf(b, "    SELECT item_id::text INTO k FROM (SELECT item_id FROM %s UNION ALL SELECT item_id FROM %s) AS keys\n", p.ModTable, p.UsageTable)
		fmt.Fprintf(b, "        WHERE octet_length(item_id::text) > %d LIMIT 1;\n", to.MaxKeyLen)
		b.WriteString("    IF k IS NOT NULL THEN\n")
		fmt.Fprintf(b, "        RAISE EXCEPTION 'item key %% of prefix %s is %% bytes long, over the new max_key_len %d: nothing is changed; remove or rename the items whose keys are longer first', k, octet_length(k)\n", p.Name, to.MaxKeyLen)
		b.WriteString("            USING ERRCODE = 'string_data_right_truncation';\n    END IF;\nEND $$;\n-- +goose StatementEnd\n")
	}
	cast := "item_id::text::" + to.sqlType()
	if to.Key == "string" {
		cast = "item_id::text"
	}
	for _, t := range []string{p.ModTable, p.UsageTable} {
		fmt.Fprintf(b, "ALTER TABLE %s ALTER COLUMN item_id TYPE %s USING %s;\n", t, to.sqlType(), cast)
	}
	// The hold table's keys are among the usage table's (each hold has
	// its purchase row). A database from before holds may lack it.
	fmt.Fprintf(b, "ALTER TABLE IF EXISTS %s ALTER COLUMN item_id TYPE %s USING %s;\n", p.HoldTable, to.sqlType(), cast)
	fmt.Fprintf(b, "UPDATE %s SET key_type = '%s', max_key_len = %d, version = version + 1, updated_at = now() WHERE id = 1;\n",
		p.LayoutTable, to.Key, to.MaxKeyLen)
}

// UpSQL is the part of a migration file that applies it: what follows
// "-- +goose Up" up to "-- +goose Down".
func UpSQL(file []byte) (string, error) {
	s := string(file)
	_, up, ok := strings.Cut(s, "-- +goose Up\n")
	if !ok {
		return "", errors.New("no -- +goose Up section")
	}
	up, _, _ = strings.Cut(up, "-- +goose Down")
	return strings.TrimSpace(up), nil
}
