package robustness

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The quiet rounds. Once the traffic has been settled and checked, each
// seed runs a few rounds of steps on items split into buckets, one step at
// a time, with nothing else in flight, so that every answer can be held to
// an exact model of the item: its stock and what each op key did. One
// fault at a time goes with a step:
//
//   - every new row of the step's ledger table refused (a trigger's error,
//     a read-only server): the change fails with nothing taken and its op
//     key is free, so a later retry of it is a new purchase and must be
//     served while the buckets hold enough together;
//   - the step run by a buyer process that is killed at one of the
//     runtime's failpoints (failpoint.go): whoever comes next (the retry,
//     Reconcile, a read) must finish or undo what the step left half done,
//     so that the buckets hold what the ledger says;
//   - the step run by a buyer process that stops at a failpoint (a pause
//     of its machine) for longer than its leases, while the parent repeats
//     the op key or buys; once the buyer is continued, the op key has
//     been executed at most once.
//
// Small stocks (one or two units a bucket) make buckets run empty, so
// that purchases fall over and gather.

// quietOp is what the model knows of an op key of a quiet round.
type quietOp struct {
	step     Step  // its first step (kind, n)
	executed bool  // its change is in the ledger
	delta    int64 // the change's delta
	at       int64 // when it was executed (unix ns, its call's return; 0 unknown)
	released bool  // a purchase whose release is in the ledger
	relAt    int64 // when the release was executed
}

// quietRound is one round on one split item.
type quietRound struct {
	r      *Run
	rng    *rand.Rand
	round  int
	p, i   int
	t      Target
	stream bool
	stock  int64
	ops    map[string]*quietOp
	keys   []string // op keys of purchases, in order
	seq    int
	vs     []Violation
}

// quietSites are the failpoints a quiet step kills or stops its buyer at:
// the steps over a split item's buckets, and a purchase's try in another
// bucket than its own (stops only: a kill there is a kill before a try).
var quietSites = append(append([]string{}, failpointSites...), "split-over")

// Quiet runs the quiet rounds and returns their violations. Without the
// failpoints build, only the refused rows remain of its faults.
func (r *Run) Quiet(ctx context.Context) []Violation {
	rng := rand.New(rand.NewPCG(r.Plan.Config.Seed, 0x901e7))
	var split [][2]int
	for p := range Prefixes {
		for i := range r.Plan.Config.Items {
			if r.bucketsOf(p, i) > 1 {
				split = append(split, [2]int{p, i})
			}
		}
	}
	if len(split) == 0 {
		return nil
	}
	var vs []Violation
	for round := range 4 {
		it := split[rng.IntN(len(split))]
		if round%2 == 0 {
			// The stream prefix every other round, when it has a split
			// item: its repeats are where a step resumed late can execute
			// twice.
			for _, s := range split {
				if Prefixes[s[0]].Stream {
					it = s
				}
			}
		}
		q := &quietRound{r: r, rng: rng, round: round, p: it[0], i: it[1], t: r.env.Targets[it[0]],
			stream: Prefixes[it[0]].Stream, ops: map[string]*quietOp{}}
		vs = append(vs, q.run(ctx)...)
		r.mu.Lock()
		r.stats["quiet-rounds"]++
		r.mu.Unlock()
	}
	return vs
}

// bucketsOf is the number of stock buckets of item i of prefix p.
func (r *Run) bucketsOf(p, i int) int {
	if b := r.Plan.Config.Buckets; len(b) > p && len(b[p]) > i {
		return b[p][i]
	}
	return 1
}

func (q *quietRound) stat(name string) {
	q.r.mu.Lock()
	q.r.stats[name]++
	q.r.mu.Unlock()
}

func (q *quietRound) name() string {
	return fmt.Sprintf("%s/%d (%d buckets), quiet round %d", Prefixes[q.p].Name, q.i, q.r.bucketsOf(q.p, q.i), q.round)
}

func (q *quietRound) violate(inv, format string, args ...any) {
	q.vs = append(q.vs, Violation{inv, q.name() + ": " + fmt.Sprintf(format, args...)})
}

// run sets the item to a small stock and runs the round's steps.
func (q *quietRound) run(ctx context.Context) []Violation {
	have, ok := q.conserved(ctx)
	if !ok {
		q.stat("quiet-skipped")
		return nil // Redis and the ledger disagree at rest: I2 says so already
	}
	nb := q.r.bucketsOf(q.p, q.i)
	want := int64(1 + q.rng.IntN(2*nb))
	if want != have {
		adj := Step{Client: 1000 + q.round, Seq: q.next(), Prefix: q.p, Item: q.i, Kind: OpAdjust, N: want - have,
			Key: q.fresh(), Deadline: 10 * time.Second}
		if c := q.r.env.Run(ctx, adj, 0, adj.Deadline, discard); c.Outcome != OutOK {
			q.stat("quiet-skipped")
			return nil // an Adjust below the units sold is refused: not this round's business
		}
	}
	q.stock = want
	if _, ok := q.conserved(ctx); !ok {
		q.violate("I2", "after an Adjust to %d units, its buckets do not hold what the ledger says", want)
		return q.vs
	}
	for range 8 + q.rng.IntN(8) {
		if ctx.Err() != nil || len(q.vs) > 0 {
			break
		}
		q.step(ctx, q.draw())
	}
	return q.vs
}

func discard(Call, bool) {}

// track gives a purchase or a restock of a new op key its place in the
// model.
func (q *quietRound) track(s Step) {
	if (s.Kind != OpDecr && s.Kind != OpAdjust) || q.ops[s.Key] != nil {
		return
	}
	q.ops[s.Key] = &quietOp{step: s}
	if s.Kind == OpDecr {
		q.keys = append(q.keys, s.Key)
	}
}

func (q *quietRound) next() int { q.seq++; return q.seq }

func (q *quietRound) fresh() string { return "q" + strconv.Itoa(q.round) + "-" + strconv.Itoa(q.seq) }

// draw draws the next step: a purchase, a retry of an earlier one, a
// release of an earlier one, a restock or a read.
func (q *quietRound) draw() Step {
	s := Step{Client: 1000 + q.round, Seq: q.next(), Prefix: q.p, Item: q.i, Deadline: 10 * time.Second}
	earlier := func() (*quietOp, bool) {
		if len(q.keys) == 0 {
			return nil, false
		}
		// A purchase that failed with nothing taken, half the time.
		if q.rng.IntN(2) == 0 {
			for j := len(q.keys) - 1; j >= 0; j-- {
				if op := q.ops[q.keys[j]]; !op.executed {
					return op, true
				}
			}
		}
		return q.ops[q.keys[q.rng.IntN(len(q.keys))]], true
	}
	switch r := q.rng.Float64(); {
	case r < 0.40:
		s.Kind, s.N, s.Key = OpDecr, int64(1+q.rng.IntN(2)), q.fresh()
	case r < 0.62:
		if op, ok := earlier(); ok {
			s.Kind, s.N, s.Key = OpDecr, op.step.N, op.step.Key
		} else {
			s.Kind, s.N, s.Key = OpDecr, 1, q.fresh()
		}
	case r < 0.80:
		if op, ok := earlier(); ok {
			s.Kind, s.Key = OpRelease, op.step.Key
		} else {
			s.Kind = OpGet
		}
	case r < 0.92:
		s.Kind, s.N, s.Key = OpAdjust, int64(1+q.rng.IntN(2)), q.fresh()
	default:
		s.Kind = OpGet
	}
	return s
}

// step runs s with a fault drawn for it and checks the outcome.
func (q *quietRound) step(ctx context.Context, s Step) {
	q.stat("quiet-steps")
	q.track(s)
	// The stream prefix writes no row in the call: instead of refused
	// rows, more pauses, where its repeats meet.
	refuse, kill, pause := 0.20, 0.35, 0.47
	if q.stream {
		refuse, kill, pause = 0, 0.18, 0.45
	}
	f := q.rng.Float64()
	switch {
	case !isChange(s.Kind):
	case f < refuse && s.Kind != OpAdjust:
		q.refused(ctx, s)
		return
	case f < kill && failpointsBuilt:
		q.killed(ctx, s, failpointSites[q.rng.IntN(len(failpointSites))])
		return
	case f < pause && failpointsBuilt:
		site := quietSites[q.rng.IntN(len(quietSites))]
		if s.Kind == OpDecr && q.rng.IntN(10) < 7 {
			site = "split-over"
		}
		q.paused(ctx, s, site)
		return
	}
	c := q.r.env.Run(ctx, s, 0, s.Deadline, discard)
	if c.Outcome == OutBusy && isChange(s.Kind) {
		// ErrBusy is a no-op to retry. The runtime's own background
		// work may fence the item for longer than the busy wait on a
		// slow ledger (a rebalance after an earlier step fell over:
		// seen with one pool connection and delayed statements, every
		// bucket fenced by one token, no change pending). A fence that
		// outlives its bound makes the retry busy again.
		q.stat("quiet-busy-retries")
		sleep(ctx, q.r.Plan.Config.Options.FenceTTL+100*time.Millisecond)
		s.Seq = q.next()
		c = q.r.env.Run(ctx, s, 0, s.Deadline, discard)
	}
	q.expect(ctx, c, false)
}

// refused runs s while its ledger table refuses every new row.
func (q *quietRound) refused(ctx context.Context, s Step) {
	q.stat("quiet-refused")
	undo, err := q.r.admin.refuseInserts(ctx, Prefixes[q.p].UsageTable)
	if err != nil {
		q.violate("OPS", "cannot make the ledger refuse rows: %v", err)
		return
	}
	c := q.r.env.Run(ctx, s, 0, s.Deadline, discard)
	if err := undo(); err != nil {
		q.violate("OPS", "cannot lift the refusal of rows: %v", err)
		return
	}
	q.expect(ctx, c, true)
	if s.Kind == OpDecr && failedClean(c) && q.rng.IntN(2) == 0 {
		// A client retries an error at once, half the time.
		retry := s
		retry.Seq = q.next()
		q.stat("quiet-refused-retries")
		q.step(ctx, retry)
	}
}

// expect checks the call of a step that ran alone against the model,
// applies it to the model, and checks that the buckets hold what the
// ledger says and the ledger what the model says. refused: every new row
// of its table was refused.
func (q *quietRound) expect(ctx context.Context, c Call, refused bool) {
	s := c.Step
	op := q.ops[s.Key]
	bad := func(inv, want string) {
		q.violate(inv, "%s; want %s (the model: %d units%s)%s", describe(c), want, q.stock, q.opState(op), q.busyState(ctx, c))
	}
	within := func(at int64) bool { // the stream's idempotency holds within the op TTL
		return !q.stream || c.Return < at+int64(q.r.Plan.Config.Options.OpTTL)-int64(5*time.Millisecond)
	}
	switch s.Kind {
	case OpGet:
		if c.Outcome != OutOK || c.Avail != q.stock {
			bad("I3", fmt.Sprintf("%d available", q.stock))
		}
	case OpAdjust:
		switch {
		case op.executed:
			if c.Outcome != OutOK || c.Delta != op.delta {
				bad("I3", "the replay of the restock")
			}
		case c.Outcome != OutOK || c.Delta != s.N:
			bad("I3", "the restock done")
		default:
			op.executed, op.delta, op.at = true, c.Delta, c.Return
			q.stock += s.N
		}
	case OpDecr:
		replay := c.Outcome == OutOK && c.Replayed && c.Delta == op.delta
		switch {
		case op.executed && (replay || refused && failedClean(c)):
			// Under a ledger that refuses every row, a repeat whose
			// record Redis forgot cannot be confirmed: an error then.
		case op.executed && within(op.at):
			bad("I3", fmt.Sprintf("the replay of its purchase (delta %d)", op.delta))
		case op.executed:
			// Redis may have forgotten it (the op TTL): a repeat the
			// flusher corrects, or a replay.
			if c.Outcome != OutOK {
				bad("I3", "a replay, or a repeat the flusher corrects")
			}
		case q.stock < s.N:
			if c.Outcome != OutShort && !(refused && failedClean(c)) {
				bad("I1", "ErrInsufficientStock")
			}
		case refused:
			if !failedClean(c) {
				bad("TABLE", "an error that is neither in doubt nor a refusal: its row was refused, and the buckets hold enough")
			}
		case c.Outcome != OutOK || c.Replayed || c.Delta != -s.N:
			// ErrInsufficientStock here is an under-sell: the buckets
			// hold enough together.
			bad("I3", fmt.Sprintf("the purchase served: the buckets hold %d units together", q.stock))
		default:
			op.executed, op.delta, op.at = true, c.Delta, c.Return
			q.stock -= s.N
		}
	case OpRelease:
		switch {
		case op == nil || !op.executed:
			if c.Outcome != OutNotFound && !(refused && failedClean(c)) {
				bad("I3", "ErrNotFound: the purchase took nothing")
			}
		case op.released && (c.Outcome == OutOK && c.Replayed && c.Delta == -op.delta || refused && failedClean(c)):
		case op.released && within(op.relAt):
			bad("I3", "the replay of its release")
		case op.released:
			if c.Outcome != OutOK {
				bad("I3", "a replay of its release")
			}
		case refused:
			if !failedClean(c) {
				bad("TABLE", "an error that is neither in doubt nor a refusal: its row was refused")
			}
		case c.Outcome != OutOK || c.Replayed || c.Delta != -op.delta:
			bad("I3", fmt.Sprintf("the release of its %d units", -op.delta))
		default:
			op.released, op.relAt = true, c.Return
			q.stock -= op.delta
		}
	}
	if len(q.vs) > 0 || !isChange(s.Kind) {
		return
	}
	if have, ok := q.conserved(ctx); !ok {
		q.violate("I2", "after %s its buckets do not hold what the ledger says", describe(c))
	} else if have != q.stock {
		q.violate("I3", "after %s the ledger holds %d units, the model %d", describe(c), have, q.stock)
	}
}

// failedClean reports whether c failed with nothing done, as a change
// whose ledger row was refused must: an error, neither in doubt nor a
// refusal (the stock, the op key) that a later retry may not get.
func failedClean(c Call) bool {
	return c.Outcome != OutOK && !c.InDoubt && !refusal(c.Outcome)
}

func (q *quietRound) opState(op *quietOp) string {
	if op == nil {
		return ""
	}
	return fmt.Sprintf("; its op key: executed %v delta %d released %v", op.executed, op.delta, op.released)
}

// conserved flushes the stream prefix and reconciles, then reads the item
// until its buckets hold what the ledger says, for up to a second (a
// rebalance in flight ends sooner). It returns the ledger's stock and
// whether they agreed.
func (q *quietRound) conserved(ctx context.Context) (int64, bool) {
	var have int64
	for try := 0; try < 10; try++ {
		if q.stream {
			q.t.Flush(ctx)
		}
		q.t.Reconcile(ctx)
		q.t.Get(ctx, q.i)
		a, err := q.r.stockOf(ctx, q.r.bucketKeys(q.p, q.i))
		s, serr := q.r.sums(ctx, q.p, ItemID(q.p, q.i))
		have = s.cap + s.usage
		if err == nil && serr == nil && a == have {
			return have, true
		}
		sleep(ctx, 100*time.Millisecond)
	}
	return have, false
}

// inChild runs s in a buyer process of its own with the failpoints fp,
// and returns the process, its output and a channel closed when it ends.
func (q *quietRound) inChild(s Step, fp string) (*childProc, error) {
	cmd, out, done, err := q.r.spawn(childPlan{Role: "step", Proc: fmt.Sprintf("q%d.%d", q.round, s.Seq),
		Until: time.Now().Add(2 * time.Minute), Clients: map[int][]Step{s.Client: {s}}, Failpoints: fp})
	if err != nil {
		return nil, err
	}
	return &childProc{cmd.Process.Pid, cmd, out, done}, nil
}

type childProc struct {
	pid  int
	cmd  interface{ Wait() error }
	out  *bytes.Buffer
	done chan struct{}
}

// call is the child's call of s once it has ended: Return 0 if it was
// killed during it. A child that has not ended within a minute is killed.
func (k *childProc) call(s Step) (Call, bool) {
	select {
	case <-k.done:
	case <-time.After(time.Minute):
		syscall.Kill(k.pid, syscall.SIGKILL)
		<-k.done
		return Call{}, false
	}
	var c Call
	found := false
	parseCalls(k.out.Bytes(), func(cc Call, _ bool) {
		if cc.Step.ID() == s.ID() {
			c, found = cc, true
		}
	})
	return c, found
}

// stopped reports whether process pid is stopped (SIGSTOP).
func stopped(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'T'
}

// lapse waits until the leases and fences of a process that died or
// stopped have passed.
func (q *quietRound) lapse(ctx context.Context) {
	o := q.r.Plan.Config.Options
	sleep(ctx, max(o.Lease, o.FenceTTL)+200*time.Millisecond)
}

// killed runs s in a buyer process that dies at failpoint site. Whoever
// comes next, the retry or Reconcile and a read, must leave the buckets
// holding what the ledger says.
func (q *quietRound) killed(ctx context.Context, s Step, site string) {
	k, err := q.inChild(s, site+"=100")
	if err != nil {
		q.violate("OPS", "cannot start a buyer: %v", err)
		return
	}
	c, found := k.call(s)
	if !found {
		q.violate("OPS", "the buyer of %s reported nothing: %s", s, strings.TrimSpace(k.out.String()))
		return
	}
	if c.Return != 0 {
		q.expect(ctx, c, false) // it never reached the failpoint
		return
	}
	q.stat("quiet-killed")
	q.lapse(ctx)
	next := "Reconcile and a read"
	if q.rng.IntN(2) == 0 {
		// The retry of the buyer's successor.
		done, inLedger := q.inLedger(ctx, s)
		retry := s
		retry.Seq = q.next()
		if inLedger {
			q.resolve(s, done)
		}
		q.expect(ctx, q.r.env.Run(ctx, retry, 0, retry.Deadline, discard), false)
		if len(q.vs) > 0 {
			q.vs[len(q.vs)-1].Msg += fmt.Sprintf(" (the retry of a call whose buyer died at %s)", site)
		}
		return
	}
	if _, ok := q.conserved(ctx); !ok {
		q.violate("I2", "after a buyer died at %s in %s, then %s, its buckets do not hold what the ledger says: a step over them was left half done",
			site, s, next)
		return
	}
	q.resync(ctx, s)
}

// paused runs s in a buyer process that stops at failpoint site for longer
// than its leases; meanwhile the parent repeats the op key or buys, then
// the buyer is continued. The op key is executed at most once.
func (q *quietRound) paused(ctx context.Context, s Step, site string) {
	k, err := q.inChild(s, site+"=100:stop")
	if err != nil {
		q.violate("OPS", "cannot start a buyer: %v", err)
		return
	}
	for until := time.Now().Add(time.Minute); ; {
		select {
		case <-k.done:
			if c, found := k.call(s); !found || c.Return == 0 {
				q.violate("OPS", "the buyer of %s ended without an answer: %s", s, strings.TrimSpace(k.out.String()))
			} else {
				q.expect(ctx, c, false) // it never reached the failpoint
			}
			return
		default:
		}
		if stopped(k.pid) {
			break
		}
		if time.Now().After(until) {
			syscall.Kill(k.pid, syscall.SIGKILL)
			<-k.done
			q.violate("OPS", "the buyer of %s neither stopped nor ended", s)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	q.stat("quiet-paused")
	if q.stream && site == "split-over" {
		q.stat("quiet-paused-stream-split-over")
	}
	q.lapse(ctx)
	// Meanwhile: a restock two times in three, of one or two units a
	// bucket (units where the stopped purchase found none, and more where
	// it is going), then a repeat of the op key or a purchase.
	var meanwhile []Step
	if q.rng.IntN(3) > 0 {
		nb := q.r.bucketsOf(q.p, q.i)
		meanwhile = append(meanwhile, Step{Client: s.Client, Seq: q.next(), Prefix: q.p, Item: q.i, Kind: OpAdjust,
			N: int64(nb * (1 + q.rng.IntN(2))), Key: q.fresh(), Deadline: s.Deadline})
	}
	other := Step{Client: s.Client, Seq: q.next(), Prefix: q.p, Item: q.i, Kind: OpDecr, N: 1, Key: q.fresh(), Deadline: s.Deadline}
	if s.Key != "" && q.rng.IntN(10) < 7 {
		other.Kind, other.N, other.Key = s.Kind, s.N, s.Key
		q.stat("quiet-paused-repeats")
	}
	meanwhile = append(meanwhile, other)
	var c2 Call
	for _, m := range meanwhile {
		q.track(m)
		c2 = q.r.env.Run(ctx, m, 0, m.Deadline, discard)
	}
	syscall.Kill(k.pid, syscall.SIGCONT)
	c1, found := k.call(s)
	if !found {
		q.violate("OPS", "the buyer of %s, continued, did not answer within a minute: %s", s, strings.TrimSpace(k.out.String()))
		return
	}
	// One op key, one execution: always on the sync prefixes (the
	// ledger's unique key), within the op TTL on the stream prefix. A
	// purchase stopped at split-over had reserved nothing (its own bucket
	// refused it), so it executes, if at all, after it was continued:
	// within c1.Return - c2.Invoke of the repeat's execution.
	if other.Key == s.Key && c1.Outcome == OutOK && !c1.Replayed && c2.Outcome == OutOK && !c2.Replayed &&
		(!q.stream || site == "split-over" && c1.Return-c2.Invoke < int64(q.r.Plan.Config.Options.OpTTL-5*time.Millisecond)) {
		q.violate("I3", "an op key executed twice: %s stopped at %s beyond its leases, then continued; meanwhile %s", describe(c1), site, describe(c2))
		return
	}
	if _, ok := q.conserved(ctx); !ok {
		q.violate("I2", "after a buyer stopped at %s in %s beyond its leases, then continued, its buckets do not hold what the ledger says", site, s)
		return
	}
	q.resync(ctx, append(meanwhile, s)...)
}

// inLedger reads the committed row of s's change, flushing the stream
// first: its delta, and whether there is one.
func (q *quietRound) inLedger(ctx context.Context, s Step) (int64, bool) {
	if q.stream {
		q.t.Flush(ctx)
	}
	table := Prefixes[q.p].UsageTable
	if s.Kind == OpAdjust {
		table = Prefixes[q.p].ModTable
	}
	var delta int64
	found := false
	q.r.admin.rows(ctx, table, func(id, kind, op string, rw row) {
		if id == ItemID(q.p, q.i) && kind == s.Kind && op == s.Key && rw.state == "committed" {
			delta, found = rw.delta, true
		}
	})
	return delta, found
}

// resolve records in the model that s's change is in the ledger with
// delta (a call whose answer was lost).
func (q *quietRound) resolve(s Step, delta int64) {
	switch op := q.ops[s.Key]; s.Kind {
	case OpDecr, OpAdjust:
		if !op.executed {
			op.executed, op.delta, op.at = true, delta, 0
			q.stock += delta
		}
	case OpRelease:
		if op != nil && !op.released {
			op.released, op.relAt = true, 0
			q.stock += delta
		}
	}
}

// resync learns from the ledger what calls whose answers were lost or
// went unchecked did, and checks the model's stock against it.
func (q *quietRound) resync(ctx context.Context, steps ...Step) {
	var names []string
	for _, s := range steps {
		if delta, ok := q.inLedger(ctx, s); ok {
			q.resolve(s, delta)
		}
		names = append(names, s.String())
	}
	if have, ok := q.conserved(ctx); ok && have != q.stock {
		q.violate("I3", "after %s, whose answers were lost or unchecked, the ledger holds %d units, the model %d",
			strings.Join(names, " and "), have, q.stock)
	}
}

// busyState is what Redis holds of the item when c was answered ErrBusy
// with nothing else in flight: its buckets, with their fences, and their
// journals, at Redis's time.
func (q *quietRound) busyState(ctx context.Context, c Call) string {
	if c.Outcome != OutBusy {
		return ""
	}
	keys := q.r.bucketKeys(q.p, q.i)
	var b strings.Builder
	fmt.Fprintf(&b, "; at %d ms Redis holds %s", q.r.rdb.Time(ctx).Val().UnixMilli(), q.r.dump(ctx, keys))
	for _, k := range keys {
		j := k[:strings.Index(k, "}:")+2] + "journal"
		fmt.Fprintf(&b, "; %s %v", j[strings.Index(j, "{"):], q.r.rdb.ZRangeWithScores(ctx, j, 0, -1).Val())
	}
	return b.String()
}
