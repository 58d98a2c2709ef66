package robustness

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/invgen/invgen/internal/testenv"
)

var (
	flagLong   = flag.Bool("robustness.long", false, "run longer plans and more seeds (make robustness)")
	flagSeeds  = flag.Int("robustness.seeds", 0, "number of seeds to run (default 3, or 20 with -robustness.long)")
	flagFirst  = flag.Uint64("robustness.first", 1, "first seed")
	flagSeed   = flag.Int64("robustness.seed", -1, "run only this seed")
	flagPlan   = flag.String("robustness.plan", "", "run this saved plan (plan.json of a failure) instead of a seed")
	flagShrink = flag.Duration("robustness.shrink", 0, "time to spend shrinking the first failing plan (default 30s, 3m with -robustness.long)")
)

func TestMain(m *testing.M) {
	if path := os.Getenv(ChildEnv); path != "" {
		os.Exit(ChildMain(path))
	}
	os.Exit(m.Run())
}

// setupFor gives a run a schema, a namespace and a directory of its own.
// On INVGEN_ENGINE=mysql or sqlite the ledger is a database or file of its
// own on that engine instead.
func setupFor(t *testing.T, name string) Setup {
	t.Helper()
	exe, err := os.Executable()
	testenv.Must(t, err, "executable")
	s := Setup{
		Namespace: "rb" + name,
		Dir:       t.TempDir(),
		Exe:       exe,
		Logf:      func(string, ...any) {},
	}
	if e := testenv.Engine(); e != "postgresql" {
		s.Engine, s.DSN = e, testenv.SQLDSN(t, e)
		return s
	}
	s.DBURL, s.Schema = testenv.DatabaseURL(), testenv.Schema(testenv.Pool(t))
	return s
}

// TestRobustness runs random plans of every operation against the four
// example prefixes, from goroutines and child processes, with faults, and
// checks the contract's invariants and linearizability. A failure prints
// the seed, the violations with the calls involved, and the shortest
// failing plan the shrinker found, and saves the history.
func TestRobustness(t *testing.T) {
	if !failpointsBuilt {
		// Buyers then die only by the plan's kills, never between two
		// steps of a change over a split item's buckets.
		if os.Getenv("CI") == "true" {
			t.Fatalf("build with -tags invgen_failpoints (make test does) so that buyers are killed at the runtime's failpoints")
		}
		t.Log("failpoints off: build with -tags invgen_failpoints to kill buyers at the runtime's failpoints")
	}
	if *flagPlan != "" {
		b, err := os.ReadFile(*flagPlan)
		testenv.Must(t, err, "read plan")
		var plan Plan
		testenv.Must(t, json.Unmarshal(b, &plan), "parse plan")
		runPlan(t, &plan)
		return
	}
	seeds := *flagSeeds
	if seeds == 0 {
		seeds = 3
		if *flagLong {
			seeds = 20
		}
	}
	var list []uint64
	if *flagSeed >= 0 {
		list = []uint64{uint64(*flagSeed)}
	} else {
		for i := range seeds {
			list = append(list, *flagFirst+uint64(i))
		}
	}
	for _, seed := range list {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runPlan(t, NewPlan(seed, *flagLong))
		})
	}
}

func runPlan(t *testing.T, plan *Plan) {
	ctx := testenv.Context(t, 5*time.Minute)
	rep, err := Execute(ctx, plan, setupFor(t, fmt.Sprint(plan.Config.Seed)))
	testenv.Must(t, err, "run")
	t.Log(rep.Summary())
	if !rep.Failed() {
		return
	}
	dir, _ := os.MkdirTemp("", "invgen-robustness-")
	rep.Save(dir)
	savePlan(dir, plan)
	t.Errorf("seed %d: %d violations (%s); history, events and visualizations in %s\n  reproduce: go test ./internal/robustness -run 'TestRobustness/seed=%d$' -robustness.seed=%d -v%s",
		plan.Config.Seed, len(rep.Violations), strings.Join(rep.Invariants(), ","), dir, plan.Config.Seed, plan.Config.Seed, longFlag())
	for i, v := range rep.Violations {
		if i == 30 {
			t.Errorf("... %d more in %s", len(rep.Violations)-30, filepath.Join(dir, "violations.txt"))
			break
		}
		t.Errorf("%s", v)
	}
	if shrunkOnce {
		return // one shrink per invocation keeps a failing `go test` short
	}
	shrunkOnce = true
	budget := *flagShrink
	if budget == 0 {
		budget = 30 * time.Second
		if *flagLong {
			budget = 3 * time.Minute
		}
	}
	small, srep := shrink(t, plan, rep, budget)
	if srep != nil {
		sdir := filepath.Join(dir, "shrunk")
		srep.Save(sdir)
		path := savePlan(sdir, small)
		t.Errorf("shrunk to %d steps and %d faults (from %d and %d), still failing with %s; plan in %s (run it with -robustness.plan=%s)",
			small.Steps(), len(small.Faults), plan.Steps(), len(plan.Faults), strings.Join(srep.Invariants(), ","), path, path)
		var lines []string
		for c, steps := range small.Clients {
			for _, s := range steps {
				lines = append(lines, fmt.Sprintf("client %d: %s", c, s))
			}
		}
		for _, f := range small.Faults {
			lines = append(lines, "fault "+f.String())
		}
		if len(lines) > 120 {
			lines = append(lines[:120], fmt.Sprintf("... %d more in the plan file", len(lines)-120))
		}
		t.Logf("shortest failing plan found:\n%s", strings.Join(lines, "\n"))
		for i, v := range srep.Violations {
			if i == 10 {
				break
			}
			t.Logf("shrunk run: %s", v)
		}
	}
}

var shrunkOnce bool

func longFlag() string {
	if *flagLong {
		return " -robustness.long"
	}
	return ""
}

func savePlan(dir string, plan *Plan) string {
	b, _ := json.MarshalIndent(plan, "", " ")
	path := filepath.Join(dir, "plan.json")
	os.WriteFile(path, b, 0o644)
	return path
}

// shrink re-runs the plan with steps and faults removed, keeping each
// removal after which the run still breaks one of the same invariants,
// until the budget is spent. Runs are not deterministic (timing), so a
// removal that loses the failure is simply not kept.
func shrink(t *testing.T, plan *Plan, rep *Report, budget time.Duration) (*Plan, *Report) {
	want := rep.Invariants()
	deadline := time.Now().Add(budget)
	still := func(p *Plan) *Report {
		if time.Now().Add(p.Config.Duration + 5*time.Second).After(deadline) {
			return nil
		}
		ctx := testenv.Context(t, 2*time.Minute)
		r, err := Execute(ctx, p, setupFor(t, fmt.Sprintf("%ds%d", p.Config.Seed, time.Now().UnixNano()%1e6)))
		if err != nil || !r.Failed() {
			return nil
		}
		for _, inv := range r.Invariants() {
			if slices.Contains(want, inv) {
				return r
			}
		}
		return nil
	}
	// First cut every client to the steps it reached.
	reached := map[string]bool{}
	for _, c := range rep.Calls {
		reached[c.Step.ID()] = true
	}
	best := clonePlan(plan)
	for c, steps := range best.Clients {
		n := 0
		for i, s := range steps {
			if reached[s.ID()] {
				n = i + 1
			}
		}
		best.Clients[c] = steps[:n]
	}
	var bestRep *Report
	// Then drop chunks of steps (and of faults), halving the chunk.
	for chunk := 0.5; chunk >= 0.05 && time.Now().Before(deadline); chunk /= 2 {
		for start := 0.0; start < 1 && time.Now().Before(deadline); start += chunk {
			cand := clonePlan(best)
			for c, steps := range cand.Clients {
				lo, hi := int(start*float64(len(steps))), int((start+chunk)*float64(len(steps)))
				cand.Clients[c] = append(steps[:lo:lo], steps[hi:]...)
			}
			lo, hi := int(start*float64(len(cand.Faults))), int((start+chunk)*float64(len(cand.Faults)))
			cand.Faults = append(cand.Faults[:lo:lo], cand.Faults[hi:]...)
			if r := still(cand); r != nil {
				best, bestRep = cand, r
				t.Logf("shrink: %d steps, %d faults still fail (%s)", best.Steps(), len(best.Faults), strings.Join(r.Invariants(), ","))
			}
		}
	}
	if bestRep == nil {
		return nil, nil
	}
	return best, bestRep
}

func clonePlan(p *Plan) *Plan {
	b, _ := json.Marshal(p)
	var out Plan
	json.Unmarshal(b, &out)
	return &out
}

// TestTwoLayouts records what happens when two builds with different Redis
// layouts (here: two namespaces) run one prefix over the same tables. The
// library is meant to refuse the second; until it does, the test logs what
// each side sees and the ledger's verdict, and fails only on a crash of
// the tester itself.
func TestTwoLayouts(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	pool := testenv.Pool(t)
	rdb := testenv.Redis(t)
	db := NewDB(pool, 1, 0)
	opts := Options{Lease: time.Second, OpTTL: time.Hour, FenceTTL: 3 * time.Second,
		BusyWait: 500 * time.Millisecond, LedgerLimit: time.Second}
	opts.Namespace = testenv.Namespace(t, rdb)
	a, err := NewTarget("", 0, db, rdb, opts)
	testenv.Must(t, err, "first manager")
	testenv.Must(t, a.CreateTables(ctx), "CreateTables")
	opts.Namespace = testenv.Namespace(t, rdb)
	b, err := NewTarget("", 0, db, rdb, opts)
	if err != nil {
		t.Logf("two layouts: the second manager is refused at New: %v", err)
		return
	}
	if err := b.CreateTables(ctx); err != nil {
		t.Logf("two layouts: the second manager is refused at CreateTables: %v", err)
		return
	}
	testenv.Must(t, a.Init(ctx, 0, 8), "Init")
	var sold int64
	for i := range 8 {
		for j, m := range []Target{a, b} {
			r, err := m.Decr(ctx, 0, 1, fmt.Sprintf("o%d-%d", j, i))
			if err == nil {
				sold -= r.Delta
			} else if Classify(err) != OutShort {
				t.Logf("two layouts: manager %d refuses: %v", j, err)
				return
			}
		}
	}
	s, err := (&Run{admin: pgAdmin{pool}}).sums(ctx, 0, ItemID(0, 0))
	testenv.Must(t, err, "ledger")
	t.Logf("two layouts (not refused yet): 8 units, both managers sold %d together; the ledger holds capacity %d and %d available: %d units oversold",
		sold, s.cap, s.cap+s.usage, max(0, sold-s.cap))
}
