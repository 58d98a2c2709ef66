// Package generator turns an inventory spec (inventory.yaml) into the files
// of its typed inventory packages.
//
// It works in pure steps, then one writer:
//
//	Load      read and decode the YAML, keeping every position
//	Validate  check the spec; every problem is FILE:LINE:COL: message
//	NewModel  compute every Go identifier, SQL name and path once
//	Generate  render manager.go (jennifer), schema.sql and query.sql
//	          (templates), sqlc.yaml, and run sqlc, into a Files map
//	Write     write a Files map to disk (only files that differ)
//	Diff      compare a Files map with the disk, writing nothing
//
// The CLI's generate and check commands are Write and Diff over the same
// Generate, so what check accepts is exactly what generate writes.
package generator
