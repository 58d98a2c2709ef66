package robustness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

// Faults of the ledger's side and of Redis's bookkeeping, added with the
// rows of the failure table they check (checkFailureTable).
const (
	// FaultJournalDel: Redis loses one shard's journal (an operator's DEL,
	// a key lost with a partial restore); with Arg 1 the pending op
	// records it listed go too. The operator's step afterwards is the one
	// of docs/operating.md (drift found): Refresh what Audit reports.
	FaultJournalDel = "journal-del"
	// FaultRefuse: PostgreSQL refuses every new row of one ledger table for
	// a while (a CHECK constraint added NOT VALID), as a read-only server
	// or a trigger's error does.
	FaultRefuse = "refuse"
	// FaultCut: every connection between the parent and PostgreSQL is cut
	// at once (the proxy stopped and started again), answers on their way
	// included; new connections pass at once.
	FaultCut = "pg-cut"
	// FaultJournalRecords marks each item of a shard whose lost journal
	// took pending op records with it (recorded kind): its linearizability
	// check ends there, as at a garbling.
	FaultJournalRecords = "journal-del-records"
)

// drawLedgerFaults draws the faults above, from a stream of their own so
// that the plans of older seeds stay what they were.
func drawLedgerFaults(cfg Config) []Fault {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x1ed9))
	at := func() time.Duration { return time.Duration(rng.Int64N(int64(cfg.Duration * 8 / 10))) }
	var out []Fault
	for range 2 + rng.IntN(4) {
		// A journal of the sync prefixes (the stream prefix journals
		// nothing but its adjustments), one that lists a change in
		// flight when there is one.
		out = append(out, Fault{At: at(), Kind: FaultJournalDel, Prefix: rng.IntN(3), Arg: rng.IntN(2)})
	}
	for range 2 + rng.IntN(3) {
		out = append(out, Fault{At: at(), Kind: FaultRefuse, Prefix: rng.IntN(3), Arg: rng.IntN(2),
			Dur: time.Duration(30+rng.IntN(270)) * time.Millisecond})
	}
	for range 4 + rng.IntN(8) {
		out = append(out, Fault{At: at(), Kind: FaultCut})
	}
	return out
}

// drawLocalized tells whether the parent's ledger connections get the
// server's messages in German (lc_messages): an error must be read by its
// SQLSTATE and unlocalized severity, never its words. From a stream of
// its own.
func drawLocalized(seed uint64) bool {
	return rand.New(rand.NewPCG(seed, 0x10c1)).IntN(2) == 0
}

// dropJournalScript deletes a shard journal (KEYS[1]) and, with ARGV[1]
// "1", the pending op records it listed; the shard's items (KEYS[2...])
// then no longer claim to remember every op key, as after the recovery
// of docs/operating.md. It returns how many journal members there were.
var dropJournalScript = redis.NewScript(`
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
if ARGV[1] == '1' then
  for _, m in ipairs(members) do
    local ok, rec = pcall(redis.call, 'GET', m)
    if ok and rec and string.sub(rec, 1, 2) == 'p:' then redis.call('DEL', m) end
  end
  for i = 2, #KEYS do
    if redis.call('TYPE', KEYS[i])['ok'] == 'hash' then redis.call('HDEL', KEYS[i], 'h') end
  end
end
return #members`)

// ledgerFault runs one of the faults above.
func (r *Run) ledgerFault(ctx context.Context, f Fault, wg *sync.WaitGroup, begin int64) {
	switch f.Kind {
	case FaultJournalDel:
		tag, err := r.busyJournal(ctx, f.Prefix)
		n := 0
		// The shard's item hashes, buckets included, from the plan (a KEYS
		// would stall the server).
		var items []string
		for i := range r.Plan.Config.Items {
			for _, k := range BucketKeys(r.Setup.Namespace, f.Prefix, i, r.Plan.Config.Buckets[f.Prefix][i]) {
				if strings.HasPrefix(k, tag) {
					items = append(items, k)
				}
			}
		}
		if err == nil {
			n, err = dropJournalScript.Run(ctx, r.rdb, append([]string{tag + "journal"}, items...), f.Arg).Int()
		}
		r.event(Event{Kind: f.Kind, Start: begin, End: time.Now().UnixNano(), Prefix: f.Prefix,
			Note: fmt.Sprintf("%sjournal: %d members, records too: %v, %v", tag, n, f.Arg == 1, err)})
		// The operator's step: Audit reports the items drifting, and
		// Refresh repairs them, at once, while the changes are in flight.
		for i := range r.Plan.Config.Items {
			if Tag(r.Setup.Namespace, f.Prefix, ItemID(f.Prefix, i)) != tag {
				continue
			}
			if f.Arg == 1 && err == nil {
				// Units of changes whose op records went are held for a
				// lease and a ledger timeout: a window of under-selling
				// docs/contract.md allows, where the model's stock is not Redis's.
				r.event(Event{Kind: FaultJournalRecords, Start: begin, End: time.Now().UnixNano(), Prefix: f.Prefix, Item: i})
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err := r.env.Targets[f.Prefix].Refresh(rctx, i)
				r.event(Event{Kind: FaultJournalDel + "-refresh", Start: begin, End: time.Now().UnixNano(), Prefix: f.Prefix, Item: i,
					Note: fmt.Sprint(err)})
			}()
		}
	case FaultRefuse:
		pg, ok := r.admin.(pgAdmin)
		if !ok || r.pool == nil {
			return // PostgreSQL's NOT VALID constraint; the other engines have no such fault
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tbl := Prefixes[f.Prefix].UsageTable
			if f.Arg == 1 {
				tbl = Prefixes[f.Prefix].ModTable
			}
			end := r.begin(f.Kind)
			err := pg.refuseRows(context.Background(), tbl, f.Dur)
			end(tbl + " " + fmt.Sprint(err))
		}()
	case FaultCut:
		if r.pgProxy == nil || r.pool == nil {
			return
		}
		// When an insert is on its way, looking for up to half a second.
		for until := time.Now().Add(500 * time.Millisecond); r.env.DB.InFlight() == 0 && time.Now().Before(until) && ctx.Err() == nil; {
			time.Sleep(100 * time.Microsecond)
		}
		begin = time.Now().UnixNano()
		r.pgProxy.Stop()
		err := r.pgProxy.Start()
		r.event(Event{Kind: f.Kind, Start: begin, End: time.Now().UnixNano(), Note: fmt.Sprint(err)})
	}
}

// busyJournal returns the hash tag of a shard of prefix p whose journal
// lists a change in flight, looking for up to half a second, or of the
// first item's shard when none does.
func (r *Run) busyJournal(ctx context.Context, p int) (string, error) {
	first := Tag(r.Setup.Namespace, p, ItemID(p, 0))
	for until := time.Now().Add(500 * time.Millisecond); time.Now().Before(until) && ctx.Err() == nil; {
		for i := range r.Plan.Config.Items {
			tag := Tag(r.Setup.Namespace, p, ItemID(p, i))
			n, err := r.rdb.ZCard(ctx, tag+"journal").Result()
			if err != nil {
				return "", err
			}
			if n > 0 {
				return tag, nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return first, nil
}

// refuseRows makes table refuse every new row for d.
func (a pgAdmin) refuseRows(ctx context.Context, table string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d+5*time.Second)
	defer cancel()
	name := "refuse_" + strings.ReplaceAll(table, ".", "_")
	if _, err := a.pool.Exec(ctx, "ALTER TABLE "+table+" ADD CONSTRAINT "+name+" CHECK (false) NOT VALID"); err != nil {
		return err
	}
	sleep(ctx, d)
	_, err := a.pool.Exec(context.WithoutCancel(ctx), "ALTER TABLE "+table+" DROP CONSTRAINT "+name)
	return err
}

// refusedByServer reports whether err is the server's refusal of a row:
// an ERROR (by its unlocalized severity) that rolled the statement back,
// other than the unique key's (a repeat, which the runtime resolves).
func refusedByServer(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.SeverityUnlocalized == "ERROR" && pe.Code != "23505" &&
		(strings.HasPrefix(pe.Code, "23") || strings.HasPrefix(pe.Code, "P0") || pe.Code == "25006")
}

// disturbing are the faults under which a change may end in doubt for
// reasons of their own (a stalled or reset connection, a lock held, a
// pool held busy, Redis gone): the failure table's rows on a refused or
// cut insert are checked only on calls that overlap none of them, nor a
// garbling or a lost journal of their own prefix.
var disturbing = []string{FaultToxic, FaultToxicRedis, FaultLockTable, FaultPoolHold, FaultRedisRestart, FaultRedisRollback}

// disturbed reports whether call c overlaps a fault that may leave it in
// doubt for reasons of its own.
func (r *Run) disturbed(c Call) bool {
	if r.inWindow(c.Invoke, c.Return, disturbing...) {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if (e.Kind == FaultGarble || e.Kind == FaultJournalDel) && e.Prefix == c.Step.Prefix && e.Start <= c.Return && e.End >= c.Invoke {
			return true
		}
	}
	return false
}

// checkFailureTable checks rows of the failure table (docs/contract.md)
// on the parent's changes, whose ledger statements the DB wrapper sees:
//
//   - "SQL rejected the insert: an error; the units are back before it
//     returns; the op key is free to retry": a change whose insert the
//     server refused never ends in doubt;
//   - "the connection died after the insert was sent, but SQL answers the
//     settle that follows: the change is settled at once": a change whose
//     insert went out before a cut of every connection (after which new
//     connections pass at once) never ends in doubt.
//
// Only calls that overlap no other fault and were not ended by their own
// deadline are held to these rows.
func (r *Run) checkFailureTable(calls []Call) []Violation {
	db := r.env.DB
	if db == nil || db.Pool == nil {
		return nil
	}
	var vs []Violation
	held := 0 // calls held to the row on cuts
	defer func() {
		r.mu.Lock()
		r.stats["table-cut-calls"] += held
		r.mu.Unlock()
	}()
	for _, c := range calls {
		if c.Proc != "p" || !isChange(c.Step.Kind) || c.Return == 0 ||
			c.Limit == 0 || time.Duration(c.Return-c.Invoke) >= c.Limit-50*time.Millisecond || r.disturbed(c) {
			continue
		}
		ins := db.Inserts(c.ID)
		if ins.sent > 0 && r.cutBetween(ins.sent, c.Return) {
			held++
		}
		if !c.InDoubt {
			continue
		}
		switch {
		case ins.refused && !r.inWindow(c.Invoke, c.Return, FaultCut):
			vs = append(vs, Violation{"TABLE", fmt.Sprintf("%s: the server refused its row (%s), yet it ended in doubt: "+
				"the failure table says an error, the units back, the op key free", describe(c), ins.refusal)})
		case ins.sent > 0 && r.cutBetween(ins.sent, c.Return) && !r.inWindow(c.Invoke, c.Return, FaultRefuse):
			vs = append(vs, Violation{"TABLE", fmt.Sprintf("%s: its row went out before every connection was cut and SQL "+
				"answered new ones at once, yet it ended in doubt: the failure table says settled at once", describe(c))})
		}
	}
	return vs
}

// cutBetween reports whether a cut of every ledger connection happened
// between from and to (unix ns).
func (r *Run) cutBetween(from, to int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Kind == FaultCut && e.Start >= from && e.End <= to {
			return true
		}
	}
	return false
}
