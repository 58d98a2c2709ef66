package main

// starterSpec is what invgen init writes.
const starterSpec = `# inventory.yaml — an invgen spec. Regenerate with: go generate ./...
# Reference of every option: https://github.com/invgen/invgen/blob/main/docs/spec.md

# Spec format version (required).
version: 1

# Where the packages are written, relative to this file (inside a Go module).
output: internal/inventory

# The ledger's database: postgresql, mysql (MySQL, MariaDB) or sqlite.
engine: postgresql

redis:
  # First segment of every Redis key.
  namespace: inv

defaults:
  # sync: a purchase returns after its ledger row is committed.
  ledger: sync
  # Redis hash-tag shards per prefix (1..1024).
  shards: 16

# One entry per sale, coupon pool or product line.
prefixes:
  - name: flash_sale    # [a-z][a-z0-9_]*: tables flash_sale_inventory_*_record
    key: string         # string | int64 | uuid
    max_key_len: 64     # string keys only
`
