package robustness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Report is the outcome of one run of a plan.
type Report struct {
	Seed       uint64
	Steps      int
	Calls      []Call
	Events     []Event
	Violations []Violation
	Failures   []Failure
	Stats      map[string]int
	Took       time.Duration
	// Ledgers holds, for each item an I1 or I2 of the settled state
	// names, its ledger rows as they stood then (ledger.txt).
	Ledgers []string
}

// Failed reports whether any invariant broke.
func (r *Report) Failed() bool { return len(r.Violations) > 0 }

// Invariants lists the broken invariants, sorted and without repeats.
func (r *Report) Invariants() []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range r.Violations {
		if !seen[v.Invariant] {
			seen[v.Invariant] = true
			out = append(out, v.Invariant)
		}
	}
	sort.Strings(out)
	return out
}

// Execute runs a plan from start to end: servers and managers, traffic and
// faults, settling, and every check.
func Execute(ctx context.Context, plan *Plan, setup Setup) (*Report, error) {
	begin := time.Now()
	r := &Run{Plan: plan, Setup: setup}
	defer r.Close()
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	r.Traffic(ctx)
	calls := r.hist.Calls()
	rep := &Report{Seed: plan.Config.Seed, Steps: plan.Steps(), Calls: calls}
	rep.Violations = append(rep.Violations, r.sampled...)
	rep.Violations = append(rep.Violations, r.Settle(ctx)...)
	rep.Violations = append(rep.Violations, r.CheckI2(ctx)...)
	rep.Violations = append(rep.Violations, r.CheckI3(ctx, calls)...)
	rep.Violations = append(rep.Violations, r.checkFailureTable(calls)...)
	lin, fails := r.CheckLinearizable(calls, 5*time.Second)
	rep.Violations = append(rep.Violations, lin...)
	rep.Failures = fails
	// Last: the quiet rounds write the ledger rows the checks above read.
	rep.Violations = append(rep.Violations, r.Quiet(ctx)...)
	for _, c := range calls {
		if c.Step.Kind == OpInit && c.Outcome == OutOK {
			rep.Violations = append(rep.Violations, Violation{"I3", "Init of an item that exists succeeded: " + describe(c)})
		}
		// A Hold of an op key a Decr bought is refused as invalid
		// (docs/holds.md); the model checks that it was one.
		if c.Outcome == OutInvalid && c.Step.Kind != OpHold {
			rep.Violations = append(rep.Violations, Violation{"I7", "a valid call was refused as invalid: " + describe(c)})
		}
	}
	r.mu.Lock()
	rep.Events = append(rep.Events, r.events...)
	rep.Stats = r.stats
	rep.Ledgers = r.ledgers
	r.mu.Unlock()
	for _, c := range calls {
		rep.Stats["calls"]++
		rep.Stats["out-"+c.Outcome]++
	}
	rep.Took = time.Since(begin)
	return rep, nil
}

// Summary is a few lines about the run.
func (r *Report) Summary() string {
	keys := make([]string, 0, len(r.Stats))
	for k := range r.Stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d planned steps, %d calls, %d violations, %v;", r.Seed, r.Steps, len(r.Calls), len(r.Violations), r.Took.Round(time.Millisecond))
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, r.Stats[k])
	}
	return b.String()
}

// Save writes the history (JSON lines), the events, the violations and a
// porcupine visualization of every non-linearizable item into dir.
func (r *Report) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, c := range r.Calls {
		enc.Encode(c)
	}
	f.Close()
	var b strings.Builder
	for _, e := range r.Events {
		fmt.Fprintf(&b, "%s %s..%s prefix=%d item=%d %s\n", e.Kind, time.Unix(0, e.Start).Format("15:04:05.000"),
			time.Unix(0, e.End).Format("15:04:05.000"), e.Prefix, e.Item, e.Note)
	}
	os.WriteFile(filepath.Join(dir, "events.txt"), []byte(b.String()), 0o644)
	b.Reset()
	for _, v := range r.Violations {
		b.WriteString(v.String() + "\n")
	}
	os.WriteFile(filepath.Join(dir, "violations.txt"), []byte(b.String()), 0o644)
	if len(r.Ledgers) > 0 {
		os.WriteFile(filepath.Join(dir, "ledger.txt"), []byte(strings.Join(r.Ledgers, "\n")), 0o644)
	}
	for _, fl := range r.Failures {
		if err := porcupine.VisualizePath(fl.Model, fl.Info, filepath.Join(dir, "linearizability-"+fl.Name+".html")); err != nil {
			return err
		}
	}
	return nil
}
