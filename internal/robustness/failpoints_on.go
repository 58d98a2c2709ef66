//go:build invgen_failpoints

package robustness

// failpointsBuilt: the runtime's failpoints kill the buyer processes that
// failpointsFor arms (runtime/failpoint_kill.go).
const failpointsBuilt = true
