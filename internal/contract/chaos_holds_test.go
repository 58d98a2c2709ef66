package contract

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invgen/invgen/examples/flashsale/inventory/flashsale"
	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// A holder process (the test binary run with INVGEN_CHILD=holder) takes
// holds of the hot SKU with 16 goroutines; it confirms a third of them and
// cancels a third, at once or after a random part of its time (so that
// some meet the deadline), and lets the rest expire. It reports every event on
// its own line at once, so that a SIGKILL loses no report:
//
//	hstart <key> <n> <ttl ms>   before the Hold
//	held <key> <n> <0|1>        the hold is taken (1: a replay)
//	hshort <key>                too few units
//	hvoid <key>                 the hold key was voided
//	cstart <key>                before the Confirm
//	confirmed <key>
//	cexpired <key>              the Confirm came after the deadline
//	xstart <key>                before the Cancel
//	cancelled <key> <n> <0|1>   the units given back (1: a replay)
//	err <key> <message>         any other error
//
// Environment as for a buyer process (child_test.go); INVGEN_CHILD_RETRY
// lists "h/<key>/<n>/<ttl ms>", "c/<key>" and "x/<key>": the holds,
// confirms and cancels a killed predecessor had in flight, retried first.

const (
	holdMinTTL = 100 * time.Millisecond
	holdMaxTTL = 400 * time.Millisecond
)

func childHolder() int {
	ctx := context.Background()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	pool, rdb, opts, closeAll, err := childServers(ctx)
	if err != nil {
		return fail(err)
	}
	defer closeAll()
	m, err := flashsale.New(pool, rdb, opts...)
	if err != nil {
		return fail(err)
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Printf(format+"\n", args...)
		mu.Unlock()
	}
	sayErr := func(key string, err error) { say("err %s %s", key, strings.ReplaceAll(err.Error(), "\n", " ")) }
	hold := func(key string, n int64, ttl time.Duration) bool {
		say("hstart %s %d %d", key, n, ttl.Milliseconds())
		r, err := m.Hold(ctx, "hot", n, key, ttl)
		switch {
		case err == nil:
			say("held %s %d %d", key, -r.Delta, b2i(r.Replayed))
			return true
		case errors.Is(err, invrt.ErrInsufficientStock):
			say("hshort %s", key)
		case errors.Is(err, invrt.ErrVoided):
			say("hvoid %s", key)
		default:
			sayErr(key, err)
		}
		return false
	}
	confirm := func(key string) {
		say("cstart %s", key)
		switch err := m.Confirm(ctx, "hot", key); {
		case err == nil:
			say("confirmed %s", key)
		case errors.Is(err, invrt.ErrHoldExpired):
			say("cexpired %s", key)
		default:
			sayErr(key, err)
		}
	}
	cancel := func(key string) {
		say("xstart %s", key)
		r, err := m.Cancel(ctx, "hot", key)
		if err != nil {
			sayErr(key, err)
			return
		}
		say("cancelled %s %d %d", key, r.Delta, b2i(r.Replayed))
	}
	var work []string
	if r := os.Getenv("INVGEN_CHILD_RETRY"); r != "" {
		work = strings.Split(r, ",")
	}
	id := os.Getenv("INVGEN_CHILD_ID")
	var (
		next, retry int
		wg          sync.WaitGroup
		claim       sync.Mutex
	)
	take := func(i *int) int { claim.Lock(); defer claim.Unlock(); *i++; return *i - 1 }
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := take(&retry); i < len(work); i = take(&retry) {
				f := strings.Split(work[i], "/")
				switch f[0] {
				case "h":
					n, _ := strconv.ParseInt(f[2], 10, 64)
					ms, _ := strconv.Atoi(f[3])
					hold(f[1], n, time.Duration(ms)*time.Millisecond)
				case "c":
					confirm(f[1])
				case "x":
					cancel(f[1])
				}
			}
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for {
				key := "h" + id + "-" + strconv.Itoa(take(&next))
				ttl := holdMinTTL + time.Duration(rng.Int64N(int64(holdMaxTTL-holdMinTTL)))
				if !hold(key, int64(1+rng.IntN(3)), ttl) {
					// A buyer told "sold out" looks again a little later.
					time.Sleep(time.Duration(5+rng.IntN(15)) * time.Millisecond)
					continue
				}
				fate := rng.IntN(3)
				if fate == 2 {
					continue // it expires
				}
				if rng.IntN(2) == 0 {
					// Late, half the time: some meet the deadline.
					time.Sleep(time.Duration(rng.Int64N(int64(ttl) * 6 / 5)))
				}
				if fate == 0 {
					confirm(key)
				} else {
					cancel(key)
				}
			}
		}()
	}
	wg.Wait()
	return 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// holdTally is what holder processes were told, per hold key.
type holdTally struct {
	held                        map[string]int64 // units of a hold taken
	confirmed, cancelled, ended map[string]bool  // ended: Confirm found it expired
	inflight                    []string         // INVGEN_CHILD_RETRY of the next process
	retried, events             int
}

// take reads the report of one killed holder process.
func (h *holdTally) take(t *testing.T, k int, report []event) {
	t.Helper()
	open := map[string]string{} // key → its retry, while a call on it is in flight
	wasInflight := map[string]bool{}
	for _, w := range h.inflight {
		wasInflight[strings.Split(w, "/")[1]] = true
	}
	for _, ev := range report {
		h.events++
		f := strings.Fields(ev.msg)
		if wasInflight[ev.op] && !strings.HasSuffix(ev.kind, "start") {
			h.retried++
		}
		switch ev.kind {
		case "hstart":
			if len(f) == 2 {
				open[ev.op] = "h/" + ev.op + "/" + f[0] + "/" + f[1]
			}
		case "cstart":
			open[ev.op] = "c/" + ev.op
		case "xstart":
			open[ev.op] = "x/" + ev.op
		case "held":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil || len(f) != 2 {
				continue // cut by the kill: still in flight
			}
			if was, ok := h.held[ev.op]; ok && was != n {
				t.Errorf("hold %s was told %d units, then %d", ev.op, was, n)
			}
			h.held[ev.op] = n
			delete(open, ev.op)
		case "cancelled":
			if len(f) != 2 {
				continue
			}
			h.cancelled[ev.op] = true
			delete(open, ev.op)
		case "confirmed":
			h.confirmed[ev.op] = true
			delete(open, ev.op)
		case "cexpired":
			h.ended[ev.op] = true
			delete(open, ev.op)
		case "hshort", "hvoid":
			delete(open, ev.op)
		case "err":
			if !strings.Contains(ev.msg, "busy") {
				t.Errorf("holder %d: %s: %s", k, ev.op, ev.msg)
			}
			delete(open, ev.op)
		}
	}
	h.inflight = h.inflight[:0]
	for _, w := range open {
		h.inflight = append(h.inflight, w)
	}
}

// TestChaosHoldKill: holder processes are killed with SIGKILL at random
// moments, again and again, with holds, confirms and cancels in flight;
// each successor first retries what its predecessor had in flight, and a
// janitor in this process expires the holds nobody ends. Afterwards no
// hold is open, each ended once (a confirmed hold with no release row, a
// cancelled or expired one with exactly one that gives back its units),
// every answer a holder got is what the ledger holds, the stock is the
// capacity less the confirmed units, Redis equals the ledger, and every
// expired hold's units came back within the bound.
func TestChaosHoldKill(t *testing.T) {
	f, _ := holdFixture(t)
	kills := scale(6, 40)
	const stock = 150 // holds run it out: the last units go back and forth
	const every = 50 * time.Millisecond
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "hot", stock), "Init")
	jctx, stopJanitor := context.WithCancel(ctx)
	janitorDone := make(chan struct{})
	go func() {
		defer close(janitorDone)
		_ = f.m.RunJanitor(jctx, invrt.JanitorConfig[string]{ReconcileEvery: 100 * time.Millisecond, ExpireHoldsEvery: every})
	}()
	stop := func() { stopJanitor(); <-janitorDone }
	defer stop()

	h := &holdTally{held: map[string]int64{}, confirmed: map[string]bool{}, cancelled: map[string]bool{}, ended: map[string]bool{}}
	rng := rand.New(rand.NewPCG(3, 4))
	for k := 0; k < kills || h.retried == 0 && k < kills+10; k++ {
		out := killChild(ctx, t, f, rng, 50, 400, "INVGEN_CHILD=holder",
			fmt.Sprintf("INVGEN_CHILD_ID=k%d", k), "INVGEN_CHILD_LEASE="+chaosLease.String(),
			"INVGEN_CHILD_RETRY="+strings.Join(h.inflight, ","))
		h.take(t, k, parseEvents(&out.buf))
	}
	if h.retried == 0 {
		t.Error("no call in flight at a kill was retried")
	}

	// Every hold's deadline passes, the janitor ends what nobody did.
	deadline := time.Now().Add(holdMaxTTL + chaosLease + 5*time.Second)
	for sumSQL(t, f, "SELECT count(*) FROM flash_sale_inventory_hold WHERE state = 'open'") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d holds still open 5 s after every deadline passed, with a janitor expiring every %v",
				sumSQL(t, f, "SELECT count(*) FROM flash_sale_inventory_hold WHERE state = 'open'"), every)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()

	holds := readHolds(t, f)
	var confirmedUnits int64
	states := map[invrt.HoldState]int{}
	for key, r := range holds {
		states[r.state]++
		switch {
		case r.bought != 1:
			t.Errorf("hold %s (%s): %d committed purchase rows of its %d units, want 1", key, r.state, r.bought, r.units)
		case r.state == invrt.HoldConfirmed && r.released != 0:
			t.Errorf("confirmed hold %s has a release row", key)
		case r.state != invrt.HoldConfirmed && r.released != 1:
			t.Errorf("%s hold %s: %d release rows giving back its %d units, want 1", r.state, key, r.released, r.units)
		}
		if r.state == invrt.HoldConfirmed {
			confirmedUnits += r.units
		}
	}
	told := func(what string, keys map[string]bool, ok func(invrt.HoldState) bool) {
		for key := range keys {
			if r, found := holds[key]; !found || !ok(r.state) {
				t.Errorf("a holder was told %s %s; the ledger's hold: %+v (found %v)", what, key, r, found)
			}
		}
	}
	told("confirmed", h.confirmed, func(s invrt.HoldState) bool { return s == invrt.HoldConfirmed })
	told("cancelled", h.cancelled, func(s invrt.HoldState) bool { return s == invrt.HoldCancelled || s == invrt.HoldExpired })
	told("expired", h.ended, func(s invrt.HoldState) bool { return s == invrt.HoldExpired })
	tl := newTally()
	for key, n := range h.held {
		if r, found := holds[key]; !found || r.units != n {
			t.Errorf("a holder was told it holds %d units under %s; the ledger's hold: %+v (found %v)", n, key, r, found)
		}
		tl.ok(key, n)
	}
	tl.attempts.Store(int64(h.events))
	tl.faults.Store(int64(kills))
	if _, avail := f.ledger(t, "hot"); avail != stock-confirmedUnits {
		t.Errorf("the ledger holds %d available; the capacity %d less the %d confirmed units is %d", avail, stock, confirmedUnits, stock-confirmedUnits)
	}
	// The bound of JanitorConfig.ExpireHoldsEvery: a round's own time
	// includes settling a hold whose holder died before its purchase was
	// committed in Redis (a lease, then Reconcile).
	lag := time.Duration(sumSQL(t, f, `SELECT COALESCE(MAX((extract(epoch FROM resolved_at) * 1000)::bigint - deadline_ms), 0)
		FROM flash_sale_inventory_hold WHERE state = 'expired'`)) * time.Millisecond
	if bound := every + chaosLease + 100*time.Millisecond + 2*time.Second; lag > bound {
		t.Errorf("an expired hold ended %v after its deadline, over %v", lag, bound)
	}
	t.Logf("holds: %d taken (%v), %d calls retried after a kill; expired holds ended at most %v after their deadline",
		len(holds), states, h.retried, lag)
	verify(t, f, f.m, tl, "kill -9 holds", stock)
}

// holdRow is a hold of the hot SKU and the ledger rows of its key.
type holdRow struct {
	state            invrt.HoldState
	units            int64
	bought, released int64 // committed rows of its purchase and its release, of its units
}

func readHolds(t *testing.T, f *fixture[string]) map[string]holdRow {
	t.Helper()
	rows, err := f.pool.Query(ctxT(t), `SELECT h.hold_key, h.state, h.units,
		(SELECT count(*) FROM `+f.usageTable+` u WHERE u.item_id = h.item_id AND u.kind = 'decr' AND u.op_key = h.hold_key
		   AND u.state = 'committed' AND u.delta = -h.units),
		(SELECT count(*) FROM `+f.usageTable+` u WHERE u.item_id = h.item_id AND u.kind = 'release' AND u.op_key = h.hold_key
		   AND u.state = 'committed')
		FROM flash_sale_inventory_hold h WHERE h.item_id = 'hot'`)
	testenv.Must(t, err, "read the holds")
	defer rows.Close()
	out := map[string]holdRow{}
	for rows.Next() {
		var key, state string
		var r holdRow
		testenv.Must(t, rows.Scan(&key, &state, &r.units, &r.bought, &r.released), "scan a hold")
		r.state = invrt.HoldState(state)
		out[key] = r
	}
	testenv.Must(t, rows.Err(), "holds")
	// Each end on the right side of the deadline, on the database's clock.
	if n := sumSQL(t, f, `SELECT count(*) FROM flash_sale_inventory_hold
		WHERE (extract(epoch FROM resolved_at) * 1000)::bigint >= deadline_ms + 1 AND state IN ('confirmed', 'cancelled')
		   OR (extract(epoch FROM resolved_at) * 1000)::bigint < deadline_ms AND state = 'expired'`); n != 0 {
		t.Errorf("%d holds confirmed or cancelled after their deadline, or expired before it", n)
	}
	// A release row must give back exactly the hold's units.
	if n := sumSQL(t, f, `SELECT count(*) FROM `+f.usageTable+` u JOIN flash_sale_inventory_hold h
		ON h.item_id = u.item_id AND h.hold_key = u.op_key
		WHERE u.kind = 'release' AND u.state = 'committed' AND u.delta <> h.units`); n != 0 {
		t.Errorf("%d release rows give back other than their hold's units", n)
	}
	return out
}
