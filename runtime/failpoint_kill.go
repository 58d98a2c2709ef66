//go:build invgen_failpoints

package runtime

import (
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// failpoints are the points (failpoint.go) at which this process kills
// itself, and how often: INVGEN_FAILPOINTS="name=percent,…", set by the
// model-based tester for its buyer processes. A build for tests only.
var failpoints = parseFailpoints(os.Getenv("INVGEN_FAILPOINTS"))

func parseFailpoints(s string) map[string]float64 {
	out := map[string]float64{}
	for _, f := range strings.Split(s, ",") {
		name, pct, ok := strings.Cut(f, "=")
		if p, err := strconv.ParseFloat(pct, 64); ok && err == nil {
			out[name] = p
		}
	}
	return out
}

// failpoint kills the process with SIGKILL, as a crash would, with the
// chance INVGEN_FAILPOINTS gives name.
func failpoint(name string) {
	if p, ok := failpoints[name]; ok && rand.Float64()*100 < p {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
}
