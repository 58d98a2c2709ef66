package contract

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// Audit reports drift between Redis and the ledger and changes nothing.
func TestAudit(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	for _, id := range []string{"a", "b", "c"} {
		testenv.Must(t, f.m.Init(ctx, id, 10), "Init")
	}
	_, err := f.m.Decr(ctx, "a", 4, "o1")
	testenv.Must(t, err, "Decr")
	if rep, err := f.m.Audit(ctx); err != nil || rep.Items != 3 || len(rep.Drift) != 0 || rep.Expired != 0 {
		t.Fatalf("audit of a healthy prefix = %+v, %v", rep, err)
	}
	keys := itemKeysOf(t, f)
	f.rdb.HSet(ctx, keys["b"], "a", 99)
	f.rdb.Del(ctx, keys["c"])
	before := f.snapshot(t)
	rep, err := f.m.Audit(ctx)
	testenv.Must(t, err, "Audit")
	want := []invrt.Drift[string]{{Item: "b", Redis: 99, Ledger: 10}, {Item: "c", Missing: true, Ledger: 10}}
	if len(rep.Drift) != 2 || rep.Drift[0] != want[0] || rep.Drift[1] != want[1] {
		t.Fatalf("drift = %+v, want %+v", rep.Drift, want)
	}
	if after := f.snapshot(t); after != before {
		t.Fatalf("Audit changed something:\n%s\n%s", before, after)
	}
}

// itemKeysOf maps item ids to their Redis hash keys, found by scanning.
func itemKeysOf(t *testing.T, f *fixture[string]) map[string]string {
	t.Helper()
	keys, err := testenv.Keys(context.Background(), f.rdb, f.ns)
	testenv.Must(t, err, "keys")
	out := map[string]string{}
	for _, k := range keys {
		if i := bytes.Index([]byte(k), []byte("}:item:")); i > 0 {
			out[k[i+len("}:item:"):]] = k
		}
	}
	return out
}

// The janitor settles what a killed process left, and audits and repairs
// drift, on its schedule.
func TestJanitor(t *testing.T) {
	f := stringFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", 1_000_000), "Init")
	testenv.Must(t, f.m.Init(ctx, "cold", 10), "Init")

	// A buyer dies mid-traffic, leaving journal entries behind.
	exe, err := os.Executable()
	testenv.Must(t, err, "executable")
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), "INVGEN_CHILD=buyer", "INVGEN_CHILD_NS="+f.ns,
		"INVGEN_CHILD_SCHEMA="+testenv.Schema(f.pool), "INVGEN_CHILD_ID=j",
		"INVGEN_CHILD_ATTEMPTS=1000000000", "INVGEN_CHILD_LEASE=200ms")
	out := &startedBuffer{started: make(chan struct{})}
	cmd.Stdout = out
	testenv.Must(t, cmd.Start(), "start buyer")
	// Killed while it buys, however long it took to start on a busy
	// machine: killed before its first purchase, it left nothing to settle.
	select {
	case <-out.started:
	case <-time.After(10 * time.Second):
	}
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	// And someone garbles a cold item.
	f.rdb.HSet(ctx, itemKeysOf(t, f)["cold"], "a", 7)

	jctx, stop := context.WithCancel(ctx)
	reports := make(chan invrt.JanitorReport[string], 100)
	done := make(chan error)
	go func() {
		done <- f.m.RunJanitor(jctx, invrt.JanitorConfig[string]{
			ReconcileEvery: 100 * time.Millisecond,
			AuditEvery:     250 * time.Millisecond,
			Repair:         true,
			OnReport:       func(r invrt.JanitorReport[string]) { reports <- r },
		})
	}()
	var reconciled, repaired int
	deadline := time.After(10 * time.Second)
	for reconciled == 0 || repaired == 0 {
		select {
		case r := <-reports:
			if r.Err != nil {
				t.Fatalf("janitor round: %v", r.Err)
			}
			if r.Reconcile != nil {
				reconciled += r.Reconcile.Seen
			}
			repaired += r.Repaired
		case <-deadline:
			t.Fatalf("janitor settled %d entries and repaired %d items in 10s", reconciled, repaired)
		}
	}
	stop()
	if err := <-done; err != context.Canceled {
		t.Fatalf("RunJanitor returned %v, want context.Canceled", err)
	}
	f.assertConserved(t, "hot")
	if got := f.assertConserved(t, "cold"); got != 10 {
		t.Fatalf("cold = %d after repair, want 10", got)
	}
	if rep, err := f.m.Audit(ctx); err != nil || len(rep.Drift) != 0 || rep.Expired != 0 {
		t.Fatalf("audit after the janitor = %+v, %v", rep, err)
	}
}
