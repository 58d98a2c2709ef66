// Package engines holds the reference spec's prefixes generated for the
// mysql (MySQL 8, MariaDB 10.11) and sqlite engines, in mysql/ and
// sqlite/. The contract tests run against them as well as against the
// PostgreSQL packages of examples/flashsale, and `make demo` sells on the
// SQLite ones when no PostgreSQL answers.
package engines

//go:generate go run github.com/invgen/invgen/cmd/invgen generate -f mysql.yaml
//go:generate go run github.com/invgen/invgen/cmd/invgen generate -f sqlite.yaml
