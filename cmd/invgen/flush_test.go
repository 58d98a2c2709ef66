package main

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/invgen/invgen/examples/flashsale/inventory/drop"
	"github.com/invgen/invgen/internal/testenv"
)

// invgen flush writes what stream-mode purchases left in Redis to the
// ledger, with the statement the spec's templates render, and a second run
// writes nothing more.
func TestFlushCommand(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	pool := testenv.Pool(t)
	m, err := drop.New(pool, rdb, drop.WithNamespace(ns))
	testenv.Must(t, err, "New")
	testenv.Must(t, m.CreateTables(ctx), "CreateTables")
	testenv.Must(t, m.Init(ctx, "hot", 100), "Init")
	for _, op := range []string{"o1", "o2", "o3"} {
		_, err := m.Decr(ctx, "hot", 2, op)
		testenv.Must(t, err, "Decr")
	}
	_, err = m.Release(ctx, "hot", "o2")
	testenv.Must(t, err, "Release")

	u, err := url.Parse(testenv.DatabaseURL())
	testenv.Must(t, err, "db url")
	q := u.Query()
	q.Set("search_path", testenv.Schema(pool))
	u.RawQuery = q.Encode()
	args := []string{"flush", "-f", "../../inventory.yaml", "-once", "-namespace", ns, "-redis", testenv.RedisURL(), "-db", u.String()}

	r := invgen(t, args...).want(t, exitOK)
	if !strings.Contains(r.stdout, "drop: wrote 4 entries") {
		t.Fatalf("stdout %q, want 4 entries written", r.stdout)
	}
	r = invgen(t, args...).want(t, exitOK)
	if !strings.Contains(r.stdout, "drop: wrote 0 entries") {
		t.Fatalf("second run: stdout %q, want nothing written", r.stdout)
	}
	var rows, sum int64
	testenv.Must(t, pool.QueryRow(context.Background(),
		"SELECT count(*), COALESCE(SUM(delta), 0) FROM "+drop.UsageTable+" WHERE state = 'committed'").Scan(&rows, &sum), "ledger")
	if rows != 4 || sum != -4 {
		t.Fatalf("ledger: %d rows summing to %d; want 4 rows, -4", rows, sum)
	}
	if got, _ := m.Get(ctx, "hot"); got != 100+sum {
		t.Fatalf("Redis %d, ledger %d", got, 100+sum)
	}
}

func TestFlushCommandNeedsAStreamPrefix(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	writeFile(t, "go.mod", "module example.com/x\n\ngo 1.26\n")
	writeFile(t, "inventory.yaml", "version: 1\noutput: out\nprefixes:\n  - name: a\n    key: string\n")
	r := invgen(t, "flush", "-once").want(t, exitUsage)
	if !strings.Contains(r.stderr, "no prefix of inventory.yaml uses ledger: stream") {
		t.Fatalf("stderr %q", r.stderr)
	}
}
