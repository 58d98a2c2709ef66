// Package templates holds the SQL and sqlc configuration templates that
// invgen renders for each engine, as an embedded file system. Engine-specific
// SQL lives here and nowhere in Go code.
//
// Each engine has a folder (postgresql/) with schema.sql.tmpl, query.sql.tmpl
// and sqlc.yaml.tmpl. The generator executes them with text/template.
package templates

import "embed"

// FS holds the templates, one folder per engine.
//
//go:embed postgresql/*.tmpl
var FS embed.FS
