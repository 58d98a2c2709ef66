//go:build invgen_failpoints

package runtime

import (
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// failpoints are the points (failpoint.go) at which this process kills or
// stops itself, and how often: INVGEN_FAILPOINTS="name=percent,…", where a
// percent followed by ":stop" stops the process (SIGSTOP, as a long pause
// of the machine would) instead of killing it, until it is continued, once
// per process. Set by the model-based tester for its buyer processes. A
// build for tests only.
var failpoints = parseFailpoints(os.Getenv("INVGEN_FAILPOINTS"))

type failpointAction struct {
	percent float64
	stop    bool
	stopped atomic.Bool // a stop point stops the process once
}

func parseFailpoints(s string) map[string]*failpointAction {
	out := map[string]*failpointAction{}
	for _, f := range strings.Split(s, ",") {
		name, spec, ok := strings.Cut(f, "=")
		pct, how, _ := strings.Cut(spec, ":")
		if p, err := strconv.ParseFloat(pct, 64); ok && err == nil {
			out[name] = &failpointAction{percent: p, stop: how == "stop"}
		}
	}
	return out
}

// failpoint kills the process with SIGKILL, as a crash would, or stops it
// with SIGSTOP, with the chance INVGEN_FAILPOINTS gives name. A stop
// returns once the process is continued (SIGCONT): the signal takes the
// process down asynchronously, and the step after the point must not go
// out before.
func failpoint(name string) {
	a, ok := failpoints[name]
	if !ok || rand.Float64()*100 >= a.percent {
		return
	}
	if !a.stop {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is asynchronous too: nothing more goes out
	}
	if a.stopped.Swap(true) {
		return
	}
	cont := make(chan os.Signal, 1)
	signal.Notify(cont, syscall.SIGCONT)
	defer signal.Stop(cont)
	syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	<-cont
}
