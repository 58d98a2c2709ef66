// Command invgen generates typed Redis + SQL inventory packages from an
// inventory spec.
//
//	invgen init     [-f FILE]   write a commented starter spec
//	invgen generate [-f FILE]   write the packages the spec describes
//	invgen check    [-f FILE]   exit 1 if the packages on disk differ from the spec
//	invgen flush    [-f FILE]   write the stream ledger's Redis streams to SQL
//	invgen migrate  [-f FILE]   create the ledger's tables, or apply their pending migrations
//	invgen adopt    [-f FILE]   convert inventory_manager's tables and Redis
//	invgen admin    [-f FILE] VERB PREFIX [ARGS]
//	                            look at and repair the inventory of a prefix
//	invgen version              print the version
//
// FILE defaults to ./inventory.yaml. A spec error is printed as
// FILE:LINE:COL: message and exits 2, writing nothing; so do bad
// arguments, such as a -namespace the runtime refuses or a -db of another
// form than the spec's engine takes (admin and migrate). No command but
// migrate creates a SQLite ledger file that is not there.
//
// In a Go module, add to any Go file next to the spec:
//
//	//go:generate go run github.com/invgen/invgen/cmd/invgen generate
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
