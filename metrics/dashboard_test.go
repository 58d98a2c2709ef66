package metrics_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/invgen/invgen/metrics"
	invrt "github.com/invgen/invgen/runtime"
)

// dashboard is the part of a Grafana dashboard's JSON model the test reads.
type dashboard struct {
	Panels []struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

var (
	// metricRe is a metric name in a query; selectorRe a name with its
	// label matchers; matcherRe one matcher; byRe an aggregation's labels.
	metricRe   = regexp.MustCompile(`\binvgen_[a-z_]+\b`)
	selectorRe = regexp.MustCompile(`\b(invgen_[a-z_]+)\{([^}]*)\}`)
	matcherRe  = regexp.MustCompile(`^\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*$`)
	byRe       = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// TestDashboardNamesExportedMetrics checks the Grafana dashboard against
// what the package exports: every panel has a query, every metric a query
// names is one the Observer registers (a histogram's _bucket, _sum and
// _count series included), and every label a query selects or groups by
// is one of its metrics' labels.
func TestDashboardNamesExportedMetrics(t *testing.T) {
	exported := exportedLabels(t)
	b, err := os.ReadFile("grafana/invgen.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/invgen.json: %v", err)
	}
	var queries []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries = append(queries, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			queries = append(queries, v.Definition)
		}
	}
	if len(queries) < 10 {
		t.Fatalf("the dashboard has %d queries; want one per panel", len(queries))
	}
	for _, q := range queries {
		names := metricRe.FindAllString(q, -1)
		if len(names) == 0 {
			t.Errorf("query %q names no invgen metric", q)
		}
		labels := map[string]bool{}
		for _, n := range names {
			ls, ok := exported[n]
			if !ok {
				t.Errorf("query %q names %s, which the package does not export", q, n)
				continue
			}
			for _, l := range ls {
				labels[l] = true
			}
		}
		for _, m := range selectorRe.FindAllStringSubmatch(q, -1) {
			for _, matcher := range splitMatchers(m[2]) {
				mm := matcherRe.FindStringSubmatch(matcher)
				if mm == nil {
					t.Errorf("query %q: cannot read the matcher %q", q, matcher)
				} else if !slices.Contains(exported[m[1]], mm[1]) {
					t.Errorf("query %q selects label %q, which %s does not have", q, mm[1], m[1])
				}
			}
		}
		for _, m := range byRe.FindAllStringSubmatch(q, -1) {
			for _, l := range strings.Split(m[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !labels[l] {
					t.Errorf("query %q groups by %q, which none of its metrics has", q, l)
				}
			}
		}
	}
}

// splitMatchers splits a selector's matchers at the commas outside quotes.
func splitMatchers(s string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if strings.TrimSpace(s[start:]) != "" {
		out = append(out, s[start:])
	}
	return out
}

// exportedLabels returns the series names the package exports, each with
// its labels: it drives an Observer through every method so that each
// family has a series, and gathers them.
func exportedLabels(t *testing.T) map[string][]string {
	t.Helper()
	reg := prometheus.NewRegistry()
	obs, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	_, done := obs.Begin(context.Background(), "p", invrt.Op(invrt.KindDecr))
	done(invrt.Outcome{Took: time.Millisecond})
	obs.LedgerWrite("p", invrt.KindDecr, time.Millisecond, nil)
	obs.Reconciled("p", invrt.ReconcileReport{Confirmed: 1})
	obs.Audited("p", 1, 0, 0)
	obs.RedisChecked("p", invrt.RedisConfig{Server: "s"}, invrt.RedisEvictionAllowed)
	err = obs.Watch("p", func(context.Context) (int64, error) { return 0, nil },
		func(context.Context) (invrt.FlushLag, error) { return invrt.FlushLag{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, mf := range mfs {
		var labels []string
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			labels = append(labels, lp.GetName())
		}
		name := mf.GetName()
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			out[name+"_bucket"] = append(slices.Clone(labels), "le")
			out[name+"_sum"], out[name+"_count"] = labels, labels
			continue
		}
		out[name] = labels
	}
	if len(out) < 12 {
		t.Fatalf("gathered %d series names; the Observer's methods did not all record", len(out))
	}
	return out
}
