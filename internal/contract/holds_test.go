package contract

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// holder is what the Manager of a sync prefix offers for holds.
type holder interface {
	Hold(ctx context.Context, id string, n int64, holdKey string, ttl time.Duration) (invrt.Result, error)
	Confirm(ctx context.Context, id string, holdKey string) error
	Cancel(ctx context.Context, id string, holdKey string) (invrt.Result, error)
	LookupHold(ctx context.Context, id string, holdKey string) (invrt.HoldRow, bool, error)
	Held(ctx context.Context, id string) (int64, error)
	ExpireHolds(ctx context.Context) (int, error)
}

// holdFixture is the string fixture and its manager's holds, on every
// engine.
func holdFixture(t *testing.T, opts ...invrt.Option) (*fixture[string], holder) {
	t.Helper()
	f := stringFixture(t, opts...)
	h, ok := f.m.(holder)
	if !ok {
		t.Fatalf("the %s Manager of a sync prefix has no hold methods", f.engine)
	}
	return f, h
}

// held asserts the units on hold of item, as the manager and as plain SQL
// count them.
func (f *fixture[K]) assertHeld(t *testing.T, h holder, item string, want int64) {
	t.Helper()
	got, err := h.Held(context.Background(), item)
	testenv.Must(t, err, "Held")
	sqlHeld := sumSQL(t, f, "SELECT COALESCE(SUM(units),0) FROM flash_sale_inventory_hold WHERE item_id = $1 AND state = 'open'", item)
	if got != want || sqlHeld != want {
		t.Fatalf("item %s: Held says %d on hold, the hold table %d, want %d", item, got, sqlHeld, want)
	}
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", what, err, target)
	}
}

// TestHoldLifecycle: a hold takes its units out of sale at once; Confirm
// makes it a purchase, Cancel gives its units back, each once, and each
// refuses the other afterwards. A confirmed hold is refunded by Release.
func TestHoldLifecycle(t *testing.T) {
	f, h := holdFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "sku", 5), "Init")

	r, err := h.Hold(ctx, "sku", 3, "cart-1", time.Minute)
	testenv.Must(t, err, "Hold")
	if r.Available != 2 || r.Delta != -3 || r.Replayed {
		t.Fatalf("Hold: %+v, want 2 available, delta -3", r)
	}
	f.assertConserved(t, "sku")
	f.assertHeld(t, h, "sku", 3)
	if r, err := h.Hold(ctx, "sku", 3, "cart-1", time.Minute); err != nil || !r.Replayed || r.Delta != -3 {
		t.Fatalf("repeated Hold: %+v, %v; want the first outcome, replayed", r, err)
	}
	f.assertHeld(t, h, "sku", 3)

	testenv.Must(t, h.Confirm(ctx, "sku", "cart-1"), "Confirm")
	testenv.Must(t, h.Confirm(ctx, "sku", "cart-1"), "Confirm again")
	f.assertHeld(t, h, "sku", 0)
	if got := f.assertConserved(t, "sku"); got != 2 {
		t.Fatalf("after Confirm %d available, want 2", got)
	}
	_, err = h.Cancel(ctx, "sku", "cart-1")
	wantErr(t, err, invrt.ErrHoldConfirmed, "Cancel after Confirm")
	if got := f.assertConserved(t, "sku"); got != 2 {
		t.Fatalf("a refused Cancel gave units back: %d available", got)
	}
	// The confirmed hold is a purchase: Release refunds it, once.
	if r, err := f.m.Release(ctx, "sku", "cart-1"); err != nil || r.Delta != 3 {
		t.Fatalf("Release of a confirmed hold: %+v, %v", r, err)
	}
	if r, err := f.m.Release(ctx, "sku", "cart-1"); err != nil || !r.Replayed {
		t.Fatalf("repeated Release: %+v, %v", r, err)
	}
	if got := f.assertConserved(t, "sku"); got != 5 {
		t.Fatalf("after the refund %d available, want 5", got)
	}
	// The refund's release record does not make a Cancel a success.
	_, err = h.Cancel(ctx, "sku", "cart-1")
	wantErr(t, err, invrt.ErrHoldConfirmed, "Cancel after the refund of a confirmed hold")

	testenv.Must(t, errOf(h.Hold(ctx, "sku", 2, "cart-2", time.Minute)), "Hold cart-2")
	if r, err := h.Cancel(ctx, "sku", "cart-2"); err != nil || r.Delta != 2 || r.Replayed {
		t.Fatalf("Cancel: %+v, %v", r, err)
	}
	if r, err := h.Cancel(ctx, "sku", "cart-2"); err != nil || !r.Replayed {
		t.Fatalf("repeated Cancel: %+v, %v; want replayed", r, err)
	}
	wantErr(t, h.Confirm(ctx, "sku", "cart-2"), invrt.ErrHoldCancelled, "Confirm after Cancel")
	// A Release after the Cancel gives nothing back a second time.
	if r, err := f.m.Release(ctx, "sku", "cart-2"); err != nil || !r.Replayed {
		t.Fatalf("Release after Cancel: %+v, %v; want the Cancel replayed", r, err)
	}
	f.assertHeld(t, h, "sku", 0)
	if got := f.assertConserved(t, "sku"); got != 5 {
		t.Fatalf("after Cancel %d available, want 5", got)
	}
	if row, found, err := h.LookupHold(ctx, "sku", "cart-2"); err != nil || !found || row.State != invrt.HoldCancelled || row.Units != 2 {
		t.Fatalf("LookupHold: %+v %v %v", row, found, err)
	}

	wantErr(t, h.Confirm(ctx, "sku", "nothing"), invrt.ErrHoldNotFound, "Confirm of no hold")
	wantErr(t, errOf(h.Hold(ctx, "sku", 9, "too-many", time.Minute)), invrt.ErrInsufficientStock, "Hold over stock")
	f.assertHeld(t, h, "sku", 0)
	// A purchase's op key is not a hold.
	testenv.Must(t, errOf(f.m.Decr(ctx, "sku", 1, "plain")), "Decr")
	wantErr(t, errOf(h.Hold(ctx, "sku", 1, "plain", time.Minute)), invrt.ErrInvalidArgument, "Hold of a purchase's op key")
	_, err = h.Cancel(ctx, "sku", "plain")
	wantErr(t, err, invrt.ErrHoldNotFound, "Cancel of a purchase")
	testenv.Must(t, errOf(f.m.Release(ctx, "sku", "plain")), "Release of the purchase")
	_, err = h.Cancel(ctx, "sku", "plain")
	wantErr(t, err, invrt.ErrHoldNotFound, "Cancel of a released purchase")
	testenv.Must(t, errOf(f.m.Decr(ctx, "sku", 1, "plain-2")), "Decr")
	if got := f.assertConserved(t, "sku"); got != 4 {
		t.Fatalf("%d available, want 4", got)
	}
	for _, ttl := range []time.Duration{0, -time.Second, invrt.MaxHoldTTL + time.Second} {
		wantErr(t, errOf(h.Hold(ctx, "sku", 1, "bad-ttl", ttl)), invrt.ErrInvalidArgument, fmt.Sprintf("Hold with ttl %v", ttl))
	}
}

// TestHoldLastUnit: the holder of the last unit confirms it while Get
// reports 0, and nobody else can buy it meanwhile.
func TestHoldLastUnit(t *testing.T) {
	f, h := holdFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "last", 1), "Init")
	testenv.Must(t, errOf(h.Hold(ctx, "last", 1, "h", time.Minute)), "Hold")
	if v, err := f.m.Get(ctx, "last"); err != nil || v != 0 {
		t.Fatalf("Get: %d, %v; want 0", v, err)
	}
	wantErr(t, errOf(f.m.Decr(ctx, "last", 1, "other")), invrt.ErrInsufficientStock, "Decr of a held unit")
	testenv.Must(t, h.Confirm(ctx, "last", "h"), "Confirm of the last unit")
	f.assertHeld(t, h, "last", 0)
	f.assertConserved(t, "last")
}

// TestHoldExpiresByItself: a hold nobody confirms gives its units back
// with no call on the item, within the janitor's ExpireHoldsEvery after
// its deadline; Confirm after the deadline is refused even while the
// units are still out.
func TestHoldExpiresByItself(t *testing.T) {
	f, h := holdFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "exp", 10), "Init")

	// No janitor: past its deadline the hold is expired for Confirm, its
	// units out until something ends it.
	testenv.Must(t, errOf(h.Hold(ctx, "exp", 4, "late", 50*time.Millisecond)), "Hold")
	time.Sleep(100 * time.Millisecond)
	wantErr(t, h.Confirm(ctx, "exp", "late"), invrt.ErrHoldExpired, "Confirm after the deadline")
	if v, _ := f.m.Get(ctx, "exp"); v != 6 {
		t.Fatalf("%d available before the expiry ran, want 6", v)
	}
	if n, err := h.ExpireHolds(ctx); err != nil || n != 1 {
		t.Fatalf("ExpireHolds: %d, %v; want 1", n, err)
	}
	if got := f.assertConserved(t, "exp"); got != 10 {
		t.Fatalf("after the expiry %d available, want 10", got)
	}
	wantErr(t, h.Confirm(ctx, "exp", "late"), invrt.ErrHoldExpired, "Confirm after the expiry")
	if row, _, _ := h.LookupHold(ctx, "exp", "late"); row.State != invrt.HoldExpired {
		t.Fatalf("hold state %q, want expired", row.State)
	}

	// With a janitor: measure when the units are back.
	const every = 100 * time.Millisecond
	jctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.m.RunJanitor(jctx, invrt.JanitorConfig[string]{ExpireHoldsEvery: every}) }()
	defer func() { stop(); <-done }()
	const ttl = 300 * time.Millisecond
	var worst time.Duration
	for i := range 5 {
		key := fmt.Sprintf("j-%d", i)
		testenv.Must(t, errOf(h.Hold(ctx, "exp", 2, key, ttl)), "Hold")
		row, _, err := h.LookupHold(ctx, "exp", key)
		testenv.Must(t, err, "LookupHold")
		// The deadline on the database's clock, as seen from here.
		deadline := time.Now().Add(row.Deadline.Sub(row.Now))
		for {
			if v, err := f.m.Get(ctx, "exp"); err == nil && v == 10 {
				break
			}
			if time.Since(deadline) > 5*time.Second {
				t.Fatalf("hold %s: units not back 5s after its deadline", key)
			}
			time.Sleep(5 * time.Millisecond)
		}
		late := time.Since(deadline)
		if late < -20*time.Millisecond {
			t.Fatalf("hold %s: units back %v before its deadline", key, -late)
		}
		worst = max(worst, late)
	}
	// The stated bound: ExpireHoldsEvery plus the round's own time.
	if worst > every+400*time.Millisecond {
		t.Fatalf("units came back up to %v after the deadline, over the bound %v + a round", worst, every)
	}
	t.Logf("expired holds' units back at most %v after their deadline (janitor every %v)", worst, every)
	f.assertHeld(t, h, "exp", 0)
	f.assertConserved(t, "exp")
}

// TestHoldExpiryPassesAHoldInFlight: a holder dies after its hold's rows
// are committed and before Redis heard of it, so that its purchase stays
// in flight in Redis for its lease (3 s here). Past the deadlines the
// janitor ends the other holds within its bound while that one waits: a
// hold in flight does not hold up the expiry of the rest. Once its lease
// has passed and Reconcile settled its purchase, it expires too.
func TestHoldExpiryPassesAHoldInFlight(t *testing.T) {
	f, h := holdFixture(t, invrt.WithBusyWait(2*time.Second))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "due", 20), "Init")
	settled, err := invrt.Scripts.ReadFile("scripts/settled.lua")
	testenv.Must(t, err, "read settled.lua")
	commitSrc, err := invrt.Scripts.ReadFile("scripts/commit.lua")
	testenv.Must(t, err, "read commit.lua")
	commit := redis.NewScript(string(settled) + string(commitSrc)).Hash()
	k := &killer{at: func(cmd redis.Cmder) bool { return runs(cmd, commit) }}
	const lease = 3 * time.Second
	_, _ = k.process(t, f, false, invrt.WithLease(lease)).(holder).Hold(ctx, "due", 2, "stuck", 20*time.Millisecond)
	for end := time.Now().Add(time.Second); !k.dead.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the Hold never reached its commit") // which may come after its answer
		}
	}
	const ttl = 100 * time.Millisecond
	for i := range 5 {
		testenv.Must(t, errOf(h.Hold(ctx, "due", 1, fmt.Sprint("h", i), ttl)), "Hold %d", i)
	}
	row, _, err := h.LookupHold(ctx, "due", "h4")
	testenv.Must(t, err, "LookupHold")
	deadline := time.Now().Add(row.Deadline.Sub(row.Now))

	const every = 50 * time.Millisecond
	jctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- f.m.RunJanitor(jctx, invrt.JanitorConfig[string]{ExpireHoldsEvery: every, ReconcileEvery: every})
	}()
	stopJanitor := sync.OnceFunc(func() { stop(); <-done })
	defer stopJanitor()
	for i := 0; i < 5; {
		if r, _, err := h.LookupHold(ctx, "due", fmt.Sprint("h", i)); err == nil && r.State == invrt.HoldExpired {
			i++
			continue
		}
		if late := time.Since(deadline); late > every+400*time.Millisecond {
			t.Fatalf("hold h%d still not expired %v after its deadline, while another hold's purchase is in flight", i, late)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r, _, _ := h.LookupHold(ctx, "due", "stuck"); r.State != invrt.HoldOpen && time.Since(deadline) < lease-time.Second {
		t.Fatalf("the hold in flight is %q, want it open until its purchase settles", r.State)
	}
	for end := time.Now().Add(lease + 2*time.Second); ; time.Sleep(10 * time.Millisecond) {
		if r, _, _ := h.LookupHold(ctx, "due", "stuck"); r.State == invrt.HoldExpired {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the hold whose purchase was in flight did not expire once its lease had passed and Reconcile ran")
		}
	}
	// The hold's state and its release row commit together; the units
	// reach Redis in the release's last step, just after (it may finish
	// in the background once the janitor stops).
	stopJanitor()
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if n, err := f.m.Get(ctx, "due"); err == nil && n == 20 {
			break
		}
	}
	if got := f.assertConserved(t, "due"); got != 20 {
		t.Fatalf("%d available once every hold expired, want 20", got)
	}
	f.assertHeld(t, h, "due", 0)
}

// TestHoldSurvivesRedisLoss: Redis forgets everything while holds are
// open. The ledger knows them: after a refresh the stock still counts them
// out, Confirm works, and an expiry still gives the others back.
func TestHoldSurvivesRedisLoss(t *testing.T) {
	f, h := holdFixture(t)
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "keep", 10), "Init")
	testenv.Must(t, errOf(h.Hold(ctx, "keep", 3, "pay", time.Minute)), "Hold pay")
	testenv.Must(t, errOf(h.Hold(ctx, "keep", 2, "leave", 200*time.Millisecond)), "Hold leave")
	f.quiesce(t)
	testenv.Must(t, testenv.DeleteKeys(ctx, f.rdb, f.ns), "lose Redis")
	if _, err := f.m.RefreshAll(ctx); err != nil {
		t.Fatalf("RefreshAll: %v", err)
	}
	if got := f.assertConserved(t, "keep"); got != 5 {
		t.Fatalf("after the loss %d available, want 5 (5 units on hold)", got)
	}
	testenv.Must(t, h.Confirm(ctx, "keep", "pay"), "Confirm after the loss")
	time.Sleep(250 * time.Millisecond)
	if n, err := h.ExpireHolds(ctx); err != nil || n != 1 {
		t.Fatalf("ExpireHolds after the loss: %d, %v", n, err)
	}
	if got := f.assertConserved(t, "keep"); got != 7 {
		t.Fatalf("%d available, want 7", got)
	}
	f.assertHeld(t, h, "keep", 0)
}

// TestHoldsRace: buyers hold, confirm, cancel and release at random from
// many goroutines while the expiry runs beside them, with short deadlines
// so that confirms, cancels and expiries meet at the deadline. Every hold
// resolves once, as its callers were told: a Confirm that succeeded is a
// confirmed hold, a Cancel that succeeded a cancelled or expired one, and
// no unit is created or lost (Redis == ledger, available + out ==
// capacity, with out counted from the answers).
func TestHoldsRace(t *testing.T) {
	f, h := holdFixture(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	ctx := ctxT(t)
	const stock = 40
	testenv.Must(t, f.m.Init(ctx, "hot", stock), "Init")

	type told struct {
		held, confirmed, cancelled, refunded bool
	}
	var mu sync.Mutex
	holds := map[string]*told{}
	note := func(key string, set func(*told)) {
		mu.Lock()
		defer mu.Unlock()
		if holds[key] == nil {
			holds[key] = &told{}
		}
		set(holds[key])
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := h.ExpireHolds(ctx); err != nil && !errors.Is(err, invrt.ErrBusy) {
				t.Errorf("ExpireHolds: %v", err)
			}
		}
	}()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range 40 {
				key := fmt.Sprintf("w%d-%d", w, i)
				ttl := time.Duration(20+rng.IntN(60)) * time.Millisecond
				if _, err := h.Hold(ctx, "hot", int64(1+rng.IntN(3)), key, ttl); err != nil {
					if !errors.Is(err, invrt.ErrInsufficientStock) {
						t.Errorf("Hold %s: %v", key, err)
					}
					continue
				}
				note(key, func(x *told) { x.held = true })
				time.Sleep(time.Duration(rng.IntN(70)) * time.Millisecond)
				// Confirm and Cancel race on one hold half the time.
				var inner sync.WaitGroup
				if rng.IntN(2) == 0 {
					inner.Add(1)
					go func() {
						defer inner.Done()
						if _, err := h.Cancel(ctx, "hot", key); err == nil {
							note(key, func(x *told) { x.cancelled = true })
						} else if !errors.Is(err, invrt.ErrHoldConfirmed) && !errors.Is(err, invrt.ErrBusy) {
							t.Errorf("Cancel %s: %v", key, err)
						}
					}()
				}
				if rng.IntN(3) > 0 {
					err := h.Confirm(ctx, "hot", key)
					switch {
					case err == nil:
						note(key, func(x *told) { x.confirmed = true })
					case errors.Is(err, invrt.ErrHoldExpired), errors.Is(err, invrt.ErrHoldCancelled):
					default:
						t.Errorf("Confirm %s: %v", key, err)
					}
				}
				inner.Wait()
				mu.Lock()
				refund := holds[key].confirmed && rng.IntN(4) == 0
				mu.Unlock()
				if refund {
					if _, err := f.m.Release(ctx, "hot", key); err != nil {
						t.Errorf("Release %s: %v", key, err)
					} else {
						note(key, func(x *told) { x.refunded = true })
					}
				}
			}
		}()
	}
	time.Sleep(10 * time.Millisecond)
	wg.Add(1)
	go func() { // stop the expiry once the buyers are done
		defer wg.Done()
		for {
			mu.Lock()
			n := len(holds)
			mu.Unlock()
			time.Sleep(200 * time.Millisecond)
			mu.Lock()
			same := n == len(holds)
			mu.Unlock()
			if same {
				close(stop)
				return
			}
		}
	}()
	wg.Wait()
	time.Sleep(100 * time.Millisecond)
	if _, err := h.ExpireHolds(ctx); err != nil {
		t.Fatalf("ExpireHolds: %v", err)
	}
	f.quiesce(t)
	f.assertHeld(t, h, "hot", 0)
	var out int64
	for key, x := range holds {
		row, found, err := h.LookupHold(ctx, "hot", key)
		testenv.Must(t, err, "LookupHold")
		switch {
		case !found:
			t.Fatalf("hold %s was told held and has no hold", key)
		case x.confirmed && x.cancelled:
			t.Fatalf("hold %s: both Confirm and Cancel succeeded", key)
		case x.confirmed && row.State != invrt.HoldConfirmed:
			t.Fatalf("hold %s: Confirm succeeded, the ledger says %s", key, row.State)
		case x.cancelled && row.State != invrt.HoldCancelled && row.State != invrt.HoldExpired:
			t.Fatalf("hold %s: Cancel succeeded, the ledger says %s", key, row.State)
		case row.State == invrt.HoldOpen:
			t.Fatalf("hold %s is still open after every deadline and expiry", key)
		}
		if row.State == invrt.HoldConfirmed && !x.refunded {
			out += row.Units
		}
	}
	got := f.assertConserved(t, "hot")
	if got+out != stock {
		t.Fatalf("%d available and %d sold for good, of %d: units created or lost", got, out, stock)
	}
	t.Logf("%d holds, %d units sold for good", len(holds), out)
}

func errOf(_ invrt.Result, err error) error { return err }

// lockHold keeps the row of a hold from being changed until unlock, in
// each engine's way: PostgreSQL locks the hold table, MySQL the row (FOR
// UPDATE), SQLite the database file (BEGIN IMMEDIATE), each in a
// transaction of its own connection.
func (f *fixture[K]) lockHold(t *testing.T, item, holdKey string) (unlock func()) {
	t.Helper()
	ctx := context.Background()
	if f.db == nil {
		tx, err := f.pool.Begin(ctx)
		testenv.Must(t, err, "begin")
		_, err = tx.Exec(ctx, "LOCK TABLE flash_sale_inventory_hold IN ACCESS EXCLUSIVE MODE")
		testenv.Must(t, err, "lock")
		return func() { testenv.Must(t, tx.Rollback(ctx), "unlock") }
	}
	conn, err := f.db.Conn(ctx)
	testenv.Must(t, err, "conn")
	if f.engine == "sqlite" {
		_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
		testenv.Must(t, err, "lock")
		return func() {
			_, err := conn.ExecContext(ctx, "ROLLBACK")
			testenv.Must(t, err, "unlock")
			conn.Close()
		}
	}
	tx, err := conn.BeginTx(ctx, nil)
	testenv.Must(t, err, "begin")
	var n int64
	err = tx.QueryRowContext(ctx, "SELECT units FROM flash_sale_inventory_hold WHERE item_id = ? AND hold_key = ? FOR UPDATE", item, holdKey).Scan(&n)
	testenv.Must(t, err, "lock")
	return func() {
		testenv.Must(t, tx.Rollback(), "unlock")
		conn.Close()
	}
}

// TestHoldCancelInDoubtEndsTheHold: a Cancel whose ledger statement is
// stuck (the hold locked) past the ledger timeout returns ErrInDoubt
// and stays in the journal; Reconcile, once its lease has passed, settles
// it by ending the hold, as the Cancel asked. A void release row there
// would leave the hold open for good, its units out of sale.
func TestHoldCancelInDoubtEndsTheHold(t *testing.T) {
	f, h := holdFixture(t, invrt.WithLedgerTimeout(300*time.Millisecond), invrt.WithLease(500*time.Millisecond))
	ctx := ctxT(t)
	testenv.Must(t, f.m.Init(ctx, "doubt", 5), "Init")
	testenv.Must(t, errOf(h.Hold(ctx, "doubt", 2, "h", time.Minute)), "Hold")
	f.quiesce(t)

	unlock := f.lockHold(t, "doubt", "h")
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := h.Cancel(cctx, "doubt", "h")
	cancel()
	wantErr(t, err, invrt.ErrInDoubt, "Cancel while the hold is locked")
	time.Sleep(800 * time.Millisecond) // the ledger timeout, the settle's tries, the lease
	unlock()
	time.Sleep(200 * time.Millisecond)
	if _, err := f.m.Reconcile(ctx); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if voids := sumSQL(t, f, "SELECT COUNT(*) FROM flash_sale_inventory_usage_record WHERE op_key = 'h' AND kind = 'release' AND state = 'void'"); voids != 0 {
		t.Fatalf("a void release row of the hold: it would keep the hold open for good")
	}
	if row, _, _ := h.LookupHold(ctx, "doubt", "h"); f.engine == "sqlite" && row.State == invrt.HoldOpen {
		// SQLite: the Cancel's statement waited on the file's lock past
		// the ledger timeout and was interrupted, so it is known not to
		// have happened (nothing written): the hold is open, and a new
		// Cancel ends it.
		if r, err := h.Cancel(ctx, "doubt", "h"); err != nil || r.Replayed || r.Delta != 2 {
			t.Fatalf("Cancel after a Cancel known not to have happened: %+v, %v", r, err)
		}
	}
	f.assertHeld(t, h, "doubt", 0)
	if row, _, _ := h.LookupHold(ctx, "doubt", "h"); row.State != invrt.HoldCancelled {
		t.Fatalf("hold state %q after Reconcile, want cancelled", row.State)
	}
	if got := f.assertConserved(t, "doubt"); got != 5 {
		t.Fatalf("%d available after Reconcile, want 5", got)
	}
	if r, err := h.Cancel(ctx, "doubt", "h"); err != nil || !r.Replayed {
		t.Fatalf("Cancel after Reconcile: %+v, %v; want the outcome replayed", r, err)
	}
}

// TestHoldsOfASplitItem: holds of an item split into stock buckets take
// from the buckets as purchases do, and Cancel, Confirm and the expiry
// keep the books exact.
func TestHoldsOfASplitItem(t *testing.T) {
	f, h := holdFixture(t)
	ctx := ctxT(t)
	initBuckets(t, f, "split", 12, 4)
	for i := range 5 {
		testenv.Must(t, errOf(h.Hold(ctx, "split", 2, fmt.Sprintf("s-%d", i), time.Minute)), "Hold")
	}
	testenv.Must(t, errOf(h.Hold(ctx, "split", 2, "short", 50*time.Millisecond)), "Hold short")
	wantErr(t, errOf(h.Hold(ctx, "split", 1, "none-left", time.Minute)), invrt.ErrInsufficientStock, "Hold of a sold-out split item")
	f.assertHeld(t, h, "split", 12)
	testenv.Must(t, h.Confirm(ctx, "split", "s-0"), "Confirm")
	if r, err := h.Cancel(ctx, "split", "s-1"); err != nil || r.Delta != 2 {
		t.Fatalf("Cancel: %+v, %v", r, err)
	}
	_, err := h.Cancel(ctx, "split", "s-0")
	wantErr(t, err, invrt.ErrHoldConfirmed, "Cancel of a confirmed hold")
	time.Sleep(100 * time.Millisecond)
	if n, err := h.ExpireHolds(ctx); err != nil || n != 1 {
		t.Fatalf("ExpireHolds: %d, %v; want 1", n, err)
	}
	f.assertHeld(t, h, "split", 6)
	if got := f.assertConserved(t, "split"); got != 4 {
		t.Fatalf("%d available, want 4 (12 less 2 confirmed and 6 held)", got)
	}
}
