package main

// The packages in ./inventory are generated from the root spec. Regenerate
// them with `go generate ./...` (or `make generate`).
//go:generate go run github.com/invgen/invgen/cmd/invgen generate -f ../../inventory.yaml
