//go:build !invgen_failpoints

package robustness

// failpointsBuilt: without the tag invgen_failpoints the runtime's
// failpoints do nothing, and no buyer dies at one.
const failpointsBuilt = false
