// Package templates holds the SQL and sqlc configuration templates that
// invgen renders for each engine, as an embedded file system. Engine-specific
// SQL lives here and nowhere in Go code.
//
// Each engine has a folder (postgresql/) with schema.sql.tmpl, query.sql.tmpl,
// flush.sql.tmpl, layout.sql.tmpl and sqlc.yaml.tmpl, executed with text/template and the
// function arg(name, position), which renders a query parameter: as
// sqlc.arg(name) for sqlc, or as $position for `invgen flush`, which runs
// the flush statement and the layout query without generated code.
package templates

import "embed"

// FS holds the templates, one folder per engine.
//
//go:embed postgresql/*.tmpl mysql/*.tmpl sqlite/*.tmpl
var FS embed.FS
