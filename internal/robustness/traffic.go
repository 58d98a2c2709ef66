package robustness

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	invrt "github.com/invgen/invgen/runtime"
)

// The kinds of steps a client takes.
const (
	OpInit       = "init"
	OpAdjust     = "adjust"
	OpGet        = "get"
	OpDecr       = "decr"
	OpIncr       = "incr"
	OpRelease    = "release"
	OpRefresh    = "refresh"
	OpRefreshAll = "refreshall"
	OpReconcile  = "reconcile"
	OpAudit      = "audit"
	OpFlush      = "flush"
	OpJanitor    = "janitor"
	// Holds (the holder clients): a hold is a purchase of its hold key, a
	// cancel a release of it; a confirm changes no stock.
	OpHold    = "hold"
	OpConfirm = "confirm"
	OpCancel  = "cancel"
)

// holdTTL is the holder clients' hold time: longer than any run, so that
// such a hold expires only if a step says otherwise (Step.TTL, a short
// hold, which the janitor of the run ends once it expired).
const holdTTL = time.Hour

// shortHold is the hold time of one hold in three, or 0: 100 to 300 ms,
// so that holds expire in the run, their units come back by the janitor,
// and confirms and cancels meet them before and after their deadline. It
// is a function of the step's place, not drawn, so that the plans of
// older seeds stay what they were.
func shortHold(client, seq int) time.Duration {
	if (client*31+seq)%3 != 0 {
		return 0
	}
	return time.Duration(100+(client*7+seq*13)%200) * time.Millisecond
}

// isChange reports whether a step kind is a change of stock with an op key.
func isChange(kind string) bool {
	return kind == OpAdjust || kind == OpDecr || kind == OpIncr || kind == OpRelease || kind == OpHold || kind == OpCancel
}

// rowKind is the kind of the ledger row a change of kind writes: a hold's
// is its purchase's, a cancel's its release's.
func rowKind(kind string) string {
	switch kind {
	case OpHold:
		return OpDecr
	case OpCancel:
		return OpRelease
	}
	return kind
}

// Step is one planned call of one client.
type Step struct {
	Client   int           `json:"c"`
	Seq      int           `json:"s"`
	Prefix   int           `json:"p"`
	Item     int           `json:"i"`
	Kind     string        `json:"k"`
	N        int64         `json:"n,omitempty"`
	Key      string        `json:"o,omitempty"`
	Deadline time.Duration `json:"d"`
	Think    time.Duration `json:"t,omitempty"`
	// TTL is the hold time of a short hold (shortHold), on its Hold and
	// on every later step of its hold key; 0 for the others (holdTTL).
	TTL time.Duration `json:"ttl,omitempty"`
}

// ID names the step.
func (s Step) ID() string { return "c" + strconv.Itoa(s.Client) + "." + strconv.Itoa(s.Seq) }

func (s Step) String() string {
	switch {
	case isChange(s.Kind) || s.Kind == OpConfirm:
		return fmt.Sprintf("%s %s/%d %s(n=%d, op=%q) deadline=%v", s.ID(), Prefixes[s.Prefix].Name, s.Item, s.Kind, s.N, s.Key, s.Deadline)
	case s.Kind == OpGet || s.Kind == OpRefresh || s.Kind == OpInit:
		return fmt.Sprintf("%s %s/%d %s deadline=%v", s.ID(), Prefixes[s.Prefix].Name, s.Item, s.Kind, s.Deadline)
	}
	return fmt.Sprintf("%s %s %s deadline=%v", s.ID(), Prefixes[s.Prefix].Name, s.Kind, s.Deadline)
}

// Call is one call as it happened: what was asked, when, and what came
// back. Return is 0 when the outcome is unknown because the process was
// killed during the call.
type Call struct {
	ID       string `json:"id"`
	Proc     string `json:"pr"`
	Step     Step   `json:"st"`
	Invoke   int64  `json:"iv"`
	Return   int64  `json:"rt"`
	Outcome  string `json:"out"`
	Delta    int64  `json:"dl"`
	Avail    int64  `json:"av"`
	Replayed bool   `json:"rp"`
	Err      string `json:"err,omitempty"`
	// InDoubt: the call's error was ErrInDoubt (its outcome is unknown).
	InDoubt bool `json:"dbt,omitempty"`
	// Limit is the client deadline the call ran under.
	Limit time.Duration `json:"lim,omitempty"`
}

// Outcomes of a call.
const (
	OutOK       = "ok"
	OutShort    = "short"    // ErrInsufficientStock
	OutLimit    = "limit"    // ErrOverLimit
	OutNotFound = "notfound" // ErrNotFound
	OutVoided   = "voided"   // ErrVoided
	OutBusy     = "busy"     // ErrBusy: a retryable no-op
	OutExists   = "exists"   // ErrAlreadyExists
	OutInvalid  = "invalid"  // ErrInvalidArgument
	OutUnknown  = "unknown"  // in doubt, deadline, network, killed: may or may not have happened
	// The refusals of holds (ErrHoldExpired, ErrHoldConfirmed,
	// ErrHoldCancelled, ErrHoldNotFound, ErrNotSupported).
	OutExpired     = "expired"
	OutConfirmed   = "confirmed"
	OutCancelled   = "cancelled"
	OutNoHold      = "nohold"
	OutUnsupported = "unsupported"
)

// refusal reports whether an outcome is a definite refusal of a change.
func refusal(out string) bool {
	return out == OutShort || out == OutLimit || out == OutNotFound || out == OutVoided
}

// Classify maps an error to an outcome.
func Classify(err error) string {
	switch {
	case err == nil:
		return OutOK
	case errors.Is(err, invrt.ErrInDoubt):
		return OutUnknown
	case errors.Is(err, invrt.ErrInsufficientStock):
		return OutShort
	case errors.Is(err, invrt.ErrOverLimit):
		return OutLimit
	case errors.Is(err, invrt.ErrNotFound):
		return OutNotFound
	case errors.Is(err, invrt.ErrVoided):
		return OutVoided
	case errors.Is(err, invrt.ErrBusy):
		return OutBusy
	case errors.Is(err, invrt.ErrAlreadyExists):
		return OutExists
	case errors.Is(err, invrt.ErrInvalidArgument):
		return OutInvalid
	case errors.Is(err, invrt.ErrHoldExpired):
		return OutExpired
	case errors.Is(err, invrt.ErrHoldConfirmed):
		return OutConfirmed
	case errors.Is(err, invrt.ErrHoldCancelled):
		return OutCancelled
	case errors.Is(err, invrt.ErrHoldNotFound):
		return OutNoHold
	case errors.Is(err, invrt.ErrNotSupported):
		return OutUnsupported
	}
	return OutUnknown
}

// Config is everything about a run that is not a step or a fault.
type Config struct {
	Seed          uint64        `json:"seed"`
	Options       Options       `json:"options"`
	Items         int           `json:"items"`
	Capacity      [][]int64     `json:"capacity"`
	Buckets       [][]int       `json:"buckets"` // stock buckets per item (InitBuckets when > 1)
	ParentClients int           `json:"parent_clients"`
	Children      int           `json:"children"`
	ChildClients  int           `json:"child_clients"`
	ParentConns   int32         `json:"parent_conns"`
	ChildConns    int32         `json:"child_conns"`
	Duration      time.Duration `json:"duration"`
	DelayP        float64       `json:"delay_p"`
	// HolderClients run in the parent after the others, with steps of
	// holds (drawHoldSteps); plans saved before holds have none.
	HolderClients int `json:"holder_clients,omitempty"`
}

// Plan is a whole run: its configuration, every client's steps and the
// fault schedule. It is a pure function of the seed; shrinking removes
// steps and faults from it.
type Plan struct {
	Config  Config   `json:"config"`
	Clients [][]Step `json:"clients"`
	Faults  []Fault  `json:"faults"`
}

// Steps counts the plan's steps.
func (p *Plan) Steps() int {
	n := 0
	for _, c := range p.Clients {
		n += len(c)
	}
	return n
}

// logUniform draws a duration between lo and hi, uniform in its logarithm.
func logUniform(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	l, h := math.Log(float64(lo)), math.Log(float64(hi))
	return time.Duration(math.Exp(l + rng.Float64()*(h-l)))
}

// drawDeadline is a client's deadline: often none to speak of, often
// short enough to end inside a step, sometimes so short that it ends
// while the call waits for a connection.
func drawDeadline(rng *rand.Rand) time.Duration {
	switch r := rng.Float64(); {
	case r < 0.50:
		return 5 * time.Second
	case r < 0.60:
		return logUniform(rng, time.Microsecond, time.Millisecond)
	case r < 0.80:
		return logUniform(rng, time.Millisecond, 50*time.Millisecond)
	default:
		return logUniform(rng, 50*time.Millisecond, 2*time.Second)
	}
}

// NewPlan generates the plan of a seed. long makes the run longer.
func NewPlan(seed uint64, long bool) *Plan {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	cfg := Config{
		Seed:          seed,
		Items:         3,
		ParentClients: 6,
		Children:      2,
		ChildClients:  3,
		ParentConns:   int32(1 + rng.IntN(2)),
		ChildConns:    int32(2 + rng.IntN(3)),
		Duration:      4 * time.Second,
		DelayP:        0.1,
		Options: Options{
			Lease:       time.Second,
			OpTTL:       logUniform(rng, 50*time.Millisecond, 500*time.Millisecond),
			FenceTTL:    logUniform(rng, 150*time.Millisecond, 3*time.Second),
			BusyWait:    500 * time.Millisecond,
			LedgerLimit: time.Second,
		},
	}
	if long {
		cfg.Duration = 8 * time.Second
	}
	cfg.Capacity = make([][]int64, len(Prefixes))
	for p := range Prefixes {
		for range cfg.Items {
			cfg.Capacity[p] = append(cfg.Capacity[p], int64(5+rng.IntN(30)))
		}
	}
	// Half the items split into 2 to 4 buckets, from a stream of their own
	// so that the plans of older seeds stay what they were.
	brng := rand.New(rand.NewPCG(seed, 0xb0c7))
	cfg.Buckets = make([][]int, len(Prefixes))
	for p := range Prefixes {
		for range cfg.Items {
			n := 1
			if brng.IntN(2) == 0 {
				n = min(2+brng.IntN(3), Prefixes[p].Shards)
			}
			cfg.Buckets[p] = append(cfg.Buckets[p], n)
		}
	}
	plan := &Plan{Config: cfg}
	clients := cfg.ParentClients + cfg.Children*cfg.ChildClients
	plan.Clients = make([][]Step, clients)
	// Steps are drawn round-robin over the clients, so "an earlier step"
	// is well defined across clients and processes.
	var all []Step
	perClient := 500
	for seq := range perClient {
		for c := range clients {
			s := drawStep(rng, cfg, c, seq, plan.Clients[c], all)
			plan.Clients[c] = append(plan.Clients[c], s)
			all = append(all, s)
		}
	}
	plan.Faults = drawFaults(rng, cfg)
	// The holder clients' steps come from a stream of their own, so that
	// the other clients' steps and the faults stay what they were for
	// every seed.
	plan.Config.HolderClients = 2
	hrng := rand.New(rand.NewPCG(seed, 0x401d))
	for c := range plan.Config.HolderClients {
		plan.Clients = append(plan.Clients, drawHoldSteps(hrng, cfg, clients+c, perClient/2))
	}
	return plan
}

// drawHoldSteps draws a holder client's steps on the sync prefixes:
// holds, their confirms and cancels, retries of them, releases (a refund
// or a cancel) and purchases of hold keys, and reads.
func drawHoldSteps(rng *rand.Rand, cfg Config, client, n int) []Step {
	var steps []Step
	var holds []Step
	for seq := range n {
		s := Step{Client: client, Seq: seq, Prefix: rng.IntN(len(Prefixes) - 1), Item: rng.IntN(cfg.Items),
			Deadline: drawDeadline(rng), Think: time.Duration(rng.IntN(6000)) * time.Microsecond}
		earlier := func() (Step, bool) {
			if len(holds) == 0 {
				return Step{}, false
			}
			j := len(holds) - 1 - int(math.Abs(rng.NormFloat64())*float64(min(len(holds), 20)))
			if j < 0 {
				j = rng.IntN(len(holds))
			}
			return holds[j], true
		}
		kind := OpHold
		switch r := rng.Float64(); {
		case r < 0.35:
		case r < 0.55:
			kind = OpConfirm
		case r < 0.72:
			kind = OpCancel
		case r < 0.80:
			kind = OpRelease
		case r < 0.88:
			kind = "retry"
		case r < 0.92:
			kind = OpDecr
		default:
			kind = OpGet
		}
		e, ok := earlier()
		switch {
		case kind == OpGet:
			s.Kind = OpGet
		case kind == OpHold || !ok:
			s.Kind, s.N, s.Key = OpHold, int64(1+rng.IntN(3)), "h"+strconv.Itoa(client)+"-"+strconv.Itoa(seq)
			s.TTL = shortHold(client, seq)
			holds = append(holds, s)
		case kind == "retry":
			s.Prefix, s.Item, s.Kind, s.N, s.Key, s.TTL = e.Prefix, e.Item, e.Kind, e.N, e.Key, e.TTL
		default:
			s.Prefix, s.Item, s.Kind, s.N, s.Key, s.TTL = e.Prefix, e.Item, kind, e.N, e.Key, e.TTL
		}
		steps = append(steps, s)
	}
	return steps
}

// drawStep draws one step. Op keys are reused on purpose: retries of the
// same call, the same op key with another n, another kind or another item,
// releases of earlier purchases, from this client or any other.
func drawStep(rng *rand.Rand, cfg Config, client, seq int, mine, all []Step) Step {
	s := Step{Client: client, Seq: seq, Prefix: rng.IntN(len(Prefixes)), Item: rng.IntN(cfg.Items),
		Deadline: drawDeadline(rng), Think: time.Duration(rng.IntN(4000)) * time.Microsecond}
	if rng.IntN(4) == 0 {
		// The stream prefix gets more traffic: its repeats must meet in the
		// flusher's batches, behind a paused flusher.
		s.Prefix = len(Prefixes) - 1
	}
	fresh := func() string { return "k" + strconv.Itoa(client) + "-" + strconv.Itoa(seq) }
	// earlier picks an earlier change step: mostly this client's own
	// recent ones, sometimes anyone's.
	earlier := func(kind string) (Step, bool) {
		pool := mine
		if rng.IntN(3) == 0 {
			pool = all
		}
		for range 8 {
			if len(pool) == 0 {
				return Step{}, false
			}
			// Mostly recent steps: retries come soon, or after a while.
			j := len(pool) - 1 - int(math.Abs(rng.NormFloat64())*float64(min(len(pool), 60)))
			if j < 0 {
				j = rng.IntN(len(pool))
			}
			e := pool[j]
			if isChange(e.Kind) && (kind == "" || e.Kind == kind) {
				return e, true
			}
		}
		return Step{}, false
	}
	r := rng.Float64()
	switch {
	case r < 0.30:
		s.Kind, s.N, s.Key = OpDecr, int64(1+rng.IntN(3)), fresh()
	case r < 0.45:
		// A client's retry of an earlier call, exactly.
		if e, ok := earlier(""); ok {
			s.Prefix, s.Item, s.Kind, s.N, s.Key = e.Prefix, e.Item, e.Kind, e.N, e.Key
		} else {
			s.Kind, s.N, s.Key = OpDecr, 1, fresh()
		}
	case r < 0.55:
		// The same purchase op key with another quantity.
		if e, ok := earlier(OpDecr); ok {
			s.Prefix, s.Item, s.Kind, s.Key = e.Prefix, e.Item, OpDecr, e.Key
			s.N = max(e.N, 1)%3 + 1 + int64(rng.IntN(2))
		} else {
			s.Kind, s.N, s.Key = OpDecr, 2, fresh()
		}
	case r < 0.60:
		// An op key reused on another item or for another kind.
		if e, ok := earlier(""); ok {
			s.Key = e.Key
			switch rng.IntN(3) {
			case 0:
				s.Prefix, s.Kind, s.N = e.Prefix, OpIncr, int64(1+rng.IntN(2))
			case 1:
				s.Prefix, s.Kind, s.N = e.Prefix, OpDecr, max(e.N, 1)
				s.Item = (e.Item + 1) % cfg.Items
			default:
				s.Prefix, s.Item, s.Kind, s.N = e.Prefix, e.Item, OpAdjust, int64(1+rng.IntN(3))
			}
		} else {
			s.Kind, s.N, s.Key = OpIncr, 1, fresh()
		}
	case r < 0.73:
		if e, ok := earlier(OpDecr); ok {
			s.Prefix, s.Item, s.Kind, s.Key = e.Prefix, e.Item, OpRelease, e.Key
		} else {
			s.Kind, s.Key = OpRelease, fresh()
		}
	case r < 0.78:
		s.Kind, s.N, s.Key = OpIncr, int64(1+rng.IntN(2)), fresh()
	case r < 0.81:
		s.Kind, s.Key = OpAdjust, fresh()
		s.N = int64(1 + rng.IntN(4))
		if rng.IntN(3) == 0 {
			s.N = -s.N
		}
	case r < 0.87:
		s.Kind = OpGet
	case r < 0.885:
		s.Kind = OpInit
	case r < 0.905:
		s.Kind = OpRefresh
	case r < 0.915:
		s.Kind = OpRefreshAll
	case r < 0.94:
		s.Kind = OpReconcile
	case r < 0.96:
		s.Kind = OpAudit
	case r < 0.985:
		s.Kind, s.Prefix = OpFlush, 3
	default:
		s.Kind = OpJanitor
	}
	return s
}

// Env is what a process needs to run steps: the four managers.
type Env struct {
	Proc    string
	Targets []Target
	DB      *DB
}

// Run executes one step and returns the call.
func (e *Env) Run(ctx context.Context, s Step, attempt int, deadline time.Duration, emit func(c Call, done bool)) Call {
	c := Call{ID: e.Proc + "/" + s.ID() + "r" + strconv.Itoa(attempt), Proc: e.Proc, Step: s, Limit: deadline}
	t := e.Targets[s.Prefix]
	cctx, cancel := context.WithTimeout(WithCall(ctx, c.ID), deadline)
	defer cancel()
	c.Invoke = time.Now().UnixNano()
	emit(c, false)
	var (
		r   invrt.Result
		err error
	)
	switch s.Kind {
	case OpInit:
		err = t.Init(cctx, s.Item, 1)
	case OpAdjust:
		r, err = t.Adjust(cctx, s.Item, s.N, s.Key)
	case OpGet:
		r.Available, err = t.Get(cctx, s.Item)
	case OpDecr:
		r, err = t.Decr(cctx, s.Item, s.N, s.Key)
	case OpIncr:
		r, err = t.Incr(cctx, s.Item, s.N, s.Key)
	case OpRelease:
		r, err = t.Release(cctx, s.Item, s.Key)
	case OpHold:
		ttl := holdTTL
		if s.TTL > 0 {
			ttl = s.TTL
		}
		r, err = t.Hold(cctx, s.Item, s.N, s.Key, ttl)
	case OpConfirm:
		err = t.Confirm(cctx, s.Item, s.Key)
	case OpCancel:
		r, err = t.Cancel(cctx, s.Item, s.Key)
	case OpRefresh:
		err = t.Refresh(cctx, s.Item)
	case OpRefreshAll:
		_, err = t.RefreshAll(cctx)
	case OpReconcile:
		_, err = t.Reconcile(cctx)
	case OpAudit:
		_, _, _, err = t.Audit(cctx)
	case OpFlush:
		_, err = t.Flush(cctx)
	case OpJanitor:
		err = t.Janitor(cctx, min(deadline, 60*time.Millisecond))
	}
	c.Return = time.Now().UnixNano()
	c.Outcome = Classify(err)
	c.Delta, c.Avail, c.Replayed = r.Delta, r.Available, r.Replayed
	c.InDoubt = errors.Is(err, invrt.ErrInDoubt)
	if err != nil {
		c.Err = strings.ReplaceAll(err.Error(), "\n", " ")
	}
	emit(c, true)
	return c
}

// RunClient runs a client's steps in order until ctx ends. A call whose
// outcome is unknown or busy is retried as clients with retries do: at
// once or a little later, with a new deadline, up to three times.
func (e *Env) RunClient(ctx context.Context, seed uint64, steps []Step, emit func(c Call, done bool)) {
	if len(steps) == 0 {
		return
	}
	rng := rand.New(rand.NewPCG(seed, uint64(steps[0].Client)))
	for _, s := range steps {
		if ctx.Err() != nil {
			return
		}
		sleep(ctx, s.Think)
		c := e.Run(ctx, s, 0, s.Deadline, emit)
		for attempt := 1; attempt <= 3 && (c.Outcome == OutUnknown || c.Outcome == OutBusy) && ctx.Err() == nil; attempt++ {
			if rng.IntN(3) == 0 {
				break
			}
			sleep(ctx, time.Duration(rng.IntN(20))*time.Millisecond)
			c = e.Run(ctx, s, attempt, drawDeadline(rng), emit)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// History collects calls; safe for concurrent use.
type History struct {
	mu    sync.Mutex
	calls map[string]*Call
	order []string
}

// NewHistory returns an empty history.
func NewHistory() *History { return &History{calls: map[string]*Call{}} }

// Add records an invocation (done false) or a completion.
func (h *History) Add(c Call, done bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.calls[c.ID]; ok {
		*old = c
		return
	}
	cc := c
	h.calls[c.ID] = &cc
	h.order = append(h.order, c.ID)
}

// Calls returns every call in invocation order of recording. Calls that
// never returned get the outcome unknown.
func (h *History) Calls() []Call {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Call, 0, len(h.order))
	for _, id := range h.order {
		c := *h.calls[id]
		if c.Return == 0 {
			c.Outcome = OutUnknown
			if c.Err == "" {
				c.Err = "no answer: the process was killed"
			}
		}
		out = append(out, c)
	}
	return out
}
