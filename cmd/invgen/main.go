// Command invgen generates typed Redis + SQL inventory packages from an
// inventory spec.
//
//	invgen init     [-f FILE]   write a commented starter spec
//	invgen generate [-f FILE]   write the packages the spec describes
//	invgen check    [-f FILE]   exit 1 if the packages on disk differ from the spec
//	invgen flush    [-f FILE]   write the stream ledger's Redis streams to SQL
//	invgen version              print the version
//
// FILE defaults to ./inventory.yaml. A spec error is printed as
// FILE:LINE:COL: message and exits 2, writing nothing.
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
