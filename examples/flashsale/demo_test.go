package main

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/invgen/invgen/metrics"
)

// TestDemo runs `make demo`'s sale, with fewer buyers, on both of its
// ledgers: every phase (the hot SKU, holds, the stream ledger) must end
// with Redis and the ledger agreeing and nothing oversold.
func TestDemo(t *testing.T) {
	for _, onSQLite := range []bool{false, true} {
		name := "postgresql"
		if onSQLite {
			name = "sqlite"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			obs, err := metrics.New(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			if err := run(ctx, obs, 2000, 200, onSQLite); err != nil {
				t.Fatalf("the demo on %s: %v", name, err)
			}
		})
	}
}
