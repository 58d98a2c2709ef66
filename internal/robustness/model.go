package robustness

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The reference model of one item of a sync prefix, for porcupine. Its
// state is the item's stock and capacity and what each op key did. A
// refusal binds nothing: it changes no state, and a retry of its op key is
// a new attempt. An operation whose outcome is unknown may or may not have
// happened; a
// refusal that overlaps in time with another change of the item may have
// been caused by a change that was later undone (a reservation held for a
// moment), so it is accepted as a no-op; a refusal that overlaps nothing
// must be justified by the state. ErrBusy and ErrVoided took nothing.

// linInput is what was asked.
type linInput struct {
	Kind    string
	Key     string
	N       int64
	Overlap bool // a refusal that overlaps another change of the item
	Unknown bool // the outcome is unknown
	Call    string
	// TTL is a short hold's hold time (Step.TTL), 0 for a hold that does
	// not expire in the run; Invoke and Return bound when the call ran
	// (Return forever when unknown), to place the deadline of a short
	// hold and the calls that meet it.
	TTL            int64
	Invoke, Return int64
}

// linOutput is what came back.
type linOutput struct {
	Out      string
	Delta    int64
	Replayed bool
	Avail    int64
}

// linState is immutable: steps copy it.
type linState struct {
	avail, cap int64
	done       map[string]int64 // kind/op key -> units it moved
	holds      map[string]holdState
	// deadlines bound the deadline of each short hold: no earlier than
	// its execution's call began, no later than it returned, plus its
	// TTL. A hold without one does not expire in the run (holdTTL).
	deadlines map[string][2]int64
}

// holdState is the state of a hold in the model.
type holdState int8

const (
	noHold holdState = iota
	holdOpen
	holdConfirmed
	holdEnded   // cancelled, or ended by a release of its key
	holdExpired // ended by the janitor once its deadline passed
)

// clockSlack is how far the tester's clock and the database's, which
// decides a hold's deadline, may disagree (one machine).
const clockSlack = int64(5 * time.Millisecond)

func (s *linState) clone() *linState {
	return &linState{avail: s.avail, cap: s.cap, done: maps.Clone(s.done), holds: maps.Clone(s.holds), deadlines: maps.Clone(s.deadlines)}
}

// passed reports whether the deadline of the short hold of key may have
// passed by at (the tester's clock; the database's within clockSlack).
func (s *linState) passed(key string, at int64) bool {
	d, ok := s.deadlines[key]
	return ok && at+clockSlack >= d[0]
}

// mustHavePassed reports whether it must have passed by at.
func (s *linState) mustHavePassed(key string, at int64) bool {
	d, ok := s.deadlines[key]
	return ok && at > d[1]+clockSlack
}

// expiries is s and every state the janitor may have made of it by at:
// any of the open short holds whose deadline may have passed ended, its
// units back, unless they no longer fit the capacity (the expiry is then
// refused, as a Cancel is, and the hold stays open).
func expiries(s *linState, at int64) []*linState {
	out := []*linState{s}
	for key, h := range s.holds {
		if h != holdOpen || !s.passed(key, at) {
			continue
		}
		for _, x := range out {
			taken, ok := x.done[opID(OpDecr, key)]
			if x.holds[key] != holdOpen || !ok || x.avail-taken > x.cap {
				continue
			}
			n := x.withHold(key, holdExpired)
			n.avail -= taken
			n.done[opID(OpRelease, key)] = -taken
			out = append(out, n)
		}
	}
	return out
}

// withHold is s with the hold of key in state h.
func (s *linState) withHold(key string, h holdState) *linState {
	n := s.clone()
	if n.holds == nil {
		n.holds = map[string]holdState{}
	}
	n.holds[key] = h
	return n
}

func opID(kind, key string) string { return kind + "/" + key }

// apply runs a change that is not a replay; ok is false when the state
// does not allow it. want, if set, is the delta the call reported.
func apply(s *linState, in linInput, want *int64) (*linState, bool) {
	switch in.Kind {
	case OpHold:
		// A purchase of the hold key, with its hold.
		if n, ok := apply(s, linInput{Kind: OpDecr, Key: in.Key, N: in.N}, want); ok {
			n = n.withHold(in.Key, holdOpen)
			if in.TTL > 0 {
				if n.deadlines == nil {
					n.deadlines = map[string][2]int64{}
				}
				n.deadlines[in.Key] = [2]int64{in.Invoke + in.TTL, sat(in.Return, in.TTL)}
			}
			return n, true
		}
		return nil, false
	case OpCancel:
		// A release of the hold key, of an open hold only.
		if s.holds[in.Key] != holdOpen {
			return nil, false
		}
		return apply(s, linInput{Kind: OpRelease, Key: in.Key}, want)
	}
	if _, seen := s.done[opID(in.Kind, in.Key)]; seen {
		return nil, false
	}
	var d, dcap int64
	switch in.Kind {
	case OpDecr:
		if s.avail < in.N {
			return nil, false
		}
		d = -in.N
	case OpIncr:
		if s.avail+in.N > s.cap {
			return nil, false
		}
		d = in.N
	case OpAdjust:
		if s.avail+in.N < 0 {
			return nil, false
		}
		d, dcap = in.N, in.N
	case OpRelease:
		taken, ok := s.done[opID(OpDecr, in.Key)]
		if !ok || s.avail+(-taken) > s.cap {
			return nil, false
		}
		d = -taken
	default:
		return nil, false
	}
	if want != nil && *want != d {
		return nil, false
	}
	n := s.clone()
	n.avail += d
	n.cap += dcap
	n.done[opID(in.Kind, in.Key)] = d
	if in.Kind == OpRelease && n.holds[in.Key] == holdOpen {
		// A release of an open hold's key ends the hold, as a cancel.
		n.holds[in.Key] = holdEnded
	}
	return n, true
}

// confirm is the step of a Confirm: its answer must fit the hold's state
// and, for a short hold, its deadline: the database confirms only an open
// hold whose deadline has not passed when the statement runs.
func confirm(s *linState, in linInput, out linOutput) []any {
	h := s.holds[in.Key]
	inTime := !s.mustHavePassed(in.Key, in.Invoke)
	late := s.passed(in.Key, in.Return)
	switch {
	case in.Unknown && h == holdOpen && inTime:
		return []any{s, s.withHold(in.Key, holdConfirmed)}
	case in.Unknown:
		return []any{s}
	}
	switch out.Out {
	case OutOK:
		if h == holdConfirmed || h == holdOpen && inTime {
			return []any{s.withHold(in.Key, holdConfirmed)}
		}
	case OutExpired:
		// Past its deadline: ended by the janitor, or by a Cancel that
		// came late, or open still, its units not given back yet.
		if h == holdExpired || (h == holdOpen || h == holdEnded) && late {
			return []any{s}
		}
	case OutCancelled:
		if h == holdEnded {
			return []any{s}
		}
	case OutNoHold:
		if h == noHold {
			return []any{s}
		}
	case OutBusy, OutInvalid, OutUnsupported:
		return []any{s}
	}
	return nil
}

// justified reports whether the state explains a refusal.
func justified(s *linState, in linInput, out string) bool {
	taken, took := s.done[opID(OpDecr, in.Key)]
	switch {
	case in.Kind == OpHold && out == OutShort:
		return s.avail < in.N
	case in.Kind == OpCancel && out == OutNotFound:
		return !took
	case in.Kind == OpCancel && out == OutLimit:
		// An Incr may have returned units up to the capacity, the held
		// ones counted as sold: the hold's units no longer fit, as for a
		// Release, and the hold stays open.
		return took && s.holds[in.Key] == holdOpen && s.avail-taken > s.cap
	case in.Kind == OpDecr && out == OutShort:
		return s.avail < in.N
	case in.Kind == OpIncr && out == OutLimit:
		return s.avail+in.N > s.cap
	case in.Kind == OpAdjust && out == OutShort:
		return s.avail+in.N < 0
	case in.Kind == OpRelease && out == OutNotFound:
		return !took
	case in.Kind == OpRelease && out == OutLimit:
		return took && s.avail-taken > s.cap
	}
	return false
}

func linStep(state, input, output any) []any {
	in := input.(linInput)
	var res []any
	for _, s := range expiries(state.(*linState), in.Return) {
		res = append(res, linStep1(s, in, output.(linOutput))...)
	}
	return res
}

// linStep1 is the step of one call from s, the janitor done meanwhile.
func linStep1(s *linState, in linInput, out linOutput) []any {
	if in.Kind == OpConfirm {
		return confirm(s, in, out)
	}
	if in.Unknown {
		res := []any{s}
		if n, ok := apply(s, in, nil); ok {
			res = append(res, n)
		}
		return res
	}
	if in.Kind == OpGet {
		if out.Out != OutOK || (out.Avail >= 0 && out.Avail <= s.avail) {
			return []any{s}
		}
		return nil
	}
	switch out.Out {
	case OutOK:
		if out.Replayed {
			_, ok := s.done[opID(rowKind(in.Kind), in.Key)]
			switch {
			case in.Kind == OpHold && s.holds[in.Key] == noHold,
				in.Kind == OpCancel && s.holds[in.Key] != holdEnded && s.holds[in.Key] != holdExpired:
				return nil
			case ok:
				return []any{s}
			}
			return nil
		}
		// A retry may complete an earlier reservation of the op key whose
		// lease passed (docs/contract.md: it completes the purchase); it answers
		// that reservation's delta, with Replayed false.
		if d, ok := s.done[opID(rowKind(in.Kind), in.Key)]; ok {
			if d == out.Delta && (in.Kind != OpHold || s.holds[in.Key] != noHold) {
				return []any{s}
			}
			return nil
		}
		d := out.Delta
		n := abs(d)
		if in.Kind == OpAdjust {
			n = d
		}
		ran := in // a short hold keeps its deadline
		ran.N = n
		if n, ok := apply(s, ran, &d); ok {
			return []any{n}
		}
		return nil
	case OutShort, OutLimit, OutNotFound:
		if in.Overlap || justified(s, in, out.Out) {
			return []any{s}
		}
		return nil
	case OutConfirmed:
		if in.Kind == OpCancel && s.holds[in.Key] == holdConfirmed {
			return []any{s}
		}
		return nil
	case OutNoHold:
		// A cancel of a key with no hold (a purchase's, or a hold that
		// was refused).
		if in.Kind == OpCancel && s.holds[in.Key] == noHold {
			return []any{s}
		}
		return nil
	case OutExpired, OutCancelled:
		return nil // only Confirm answers them
	case OutInvalid:
		// A Hold of an op key that a Decr bought (not a hold).
		if _, bought := s.done[opID(OpDecr, in.Key)]; in.Kind == OpHold && bought && s.holds[in.Key] == noHold {
			return []any{s}
		}
		if in.Kind == OpHold {
			return nil
		}
	}
	return []any{s} // busy, voided and other errors that took nothing
}

func linEqual(a, b any) bool {
	x, y := a.(*linState), b.(*linState)
	return x.avail == y.avail && x.cap == y.cap && maps.Equal(x.done, y.done) && equalHolds(x.holds, y.holds) &&
		maps.Equal(x.deadlines, y.deadlines)
}

// sat is a + b, or a when a is forever (an unknown return).
func sat(a, b int64) int64 {
	if a >= forever-b {
		return forever
	}
	return a + b
}

// equalHolds compares hold maps, a missing key and noHold alike.
func equalHolds(a, b map[string]holdState) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

func describeState(state any) string {
	s := state.(*linState)
	keys := make([]string, 0, len(s.done))
	for k, v := range s.done {
		keys = append(keys, fmt.Sprintf("%s:%d", k, v))
	}
	for k, h := range s.holds {
		keys = append(keys, fmt.Sprintf("hold/%s:%s", k, [...]string{"none", "open", "confirmed", "ended"}[h]))
	}
	sort.Strings(keys)
	return fmt.Sprintf("avail=%d cap=%d done=[%s]", s.avail, s.cap, strings.Join(keys, " "))
}

func describeOp(input, output any) string {
	in := input.(linInput)
	out := output.(linOutput)
	res := out.Out
	switch {
	case in.Unknown:
		res = "unknown"
	case out.Out == OutOK && in.Kind == OpGet:
		res = fmt.Sprintf("%d", out.Avail)
	case out.Out == OutOK:
		res = fmt.Sprintf("ok delta=%d replayed=%v", out.Delta, out.Replayed)
	}
	ov := ""
	if in.Overlap {
		ov = " (overlapped)"
	}
	return fmt.Sprintf("%s %s(op=%s n=%d) -> %s%s", in.Call, in.Kind, in.Key, in.N, res, ov)
}

// itemModel is the model of one item that starts with capacity init.
func itemModel(init int64) porcupine.Model {
	nm := &porcupine.NondeterministicModel{
		Init: func() []any {
			return []any{&linState{avail: init, cap: init, done: map[string]int64{}}}
		},
		Step:              linStep,
		Equal:             linEqual,
		Hash:              func(s any) uint64 { x := s.(*linState); return uint64(x.avail*1_000_003 + x.cap + int64(len(x.done))) },
		DescribeOperation: describeOp,
		DescribeState:     describeState,
	}
	return nm.ToModel()
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}
