//go:build !invgen_failpoints

package runtime

// failpoint names a point between two steps of an operation over several
// Redis keys (the buckets of a split item), where the model-based tester
// kills the process, in a build with the tag invgen_failpoints
// (failpoint_kill.go), to check that whoever comes next finishes or undoes
// the operation. In every other build it is nothing.
func failpoint(string) {}
