//go:build !invgen_failpoints

package runtime

// failpoint names a point between two steps of an operation over several
// Redis keys (the buckets of a split item, a purchase's try in another
// bucket than its own), where the model-based tester kills or pauses the
// process, in a build with the tag invgen_failpoints (failpoint_kill.go),
// to check that whoever comes next finishes or undoes the operation, and
// that a step resumed late does nothing another has taken over. In every
// other build it is nothing.
func failpoint(string) {}
