package runtime

import (
	"fmt"
	"strings"
	"testing"
)

// reserve.lua treats a fence beyond the longest one a refresh takes as
// corrupt; its bound must be WithFenceTTL's limit, or a fence a refresh
// may set would be repaired away (bound too low) or an absurd one waited
// for (too high).
func TestReserveFenceBoundIsMaxFenceTTL(t *testing.T) {
	want := fmt.Sprintf("local MAX_FENCE_MS = %d\n", maxFenceTTL.Milliseconds())
	if !strings.Contains(reserveSrc, want) {
		t.Fatalf("reserve.lua lacks %q: its fence bound differs from maxFenceTTL (%v)", want, maxFenceTTL)
	}
	if maxFenceArg != fmt.Sprint(maxFenceTTL.Milliseconds()) {
		t.Fatalf("fence.lua's bound %v differs from maxFenceTTL (%v)", maxFenceArg, maxFenceTTL)
	}
}
