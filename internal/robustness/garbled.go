package robustness

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// checkGarbled makes the failure-table row of docs/contract.md on garbled
// keys an assertion: "a Redis key garbled (wrong type, a field that is not a
// number, a far-future fence, a junk journal member) ... Audit lists it as
// corrupt; Refresh(id) or the janitor with Repair rebuilds it". Traffic
// may have repaired what the faults garbled during the run, so once the
// system is at rest every garbled item is garbled again the same ways;
// Audit must then name each of them, and the janitor with Repair (the
// stream prefix, whose janitor does not repair: Refresh) must leave every
// key of it as invgen writes them. And no item of any prefix may hold a
// fence beyond the longest a refresh takes.
func (r *Run) checkGarbled(ctx context.Context) []Violation {
	var vs []Violation
	add := func(format string, args ...any) {
		vs = append(vs, Violation{"OPS", fmt.Sprintf(format, args...)})
	}
	r.mu.Lock()
	variants := map[[2]int][]int{}
	for g := range r.garbled {
		variants[g] = nil
	}
	r.mu.Unlock()
	for _, f := range r.Plan.Faults {
		g := [2]int{f.Prefix, f.Item}
		if _, ok := variants[g]; ok && f.Kind == FaultGarble && !slices.Contains(variants[g], f.Arg) {
			variants[g] = append(variants[g], f.Arg)
		}
	}
	byPrefix := map[int][]int{}
	for g, vars := range variants {
		for _, v := range vars {
			if _, err := garble(ctx, r.rdb, r.Setup.Namespace, g[0], g[1], v); err != nil {
				// A variant that does not apply on top of another (a hash
				// field of a string): the other garbling stays.
				r.logf("garble %s/%d again, variant %d: %v", Prefixes[g[0]].Name, g[1], v, err)
			}
		}
		byPrefix[g[0]] = append(byPrefix[g[0]], g[1])
	}
	for p, items := range byPrefix {
		slices.Sort(items)
		t := r.env.Targets[p]
		_, drift, _, err := t.Audit(ctx)
		if err != nil {
			add("Audit of %s with garbled items %v fails: %v", Prefixes[p].Name, items, err)
			continue
		}
		for _, i := range items {
			named := slices.ContainsFunc(drift, func(d string) bool { return strings.HasPrefix(d, ItemID(p, i)+"(") })
			if !named {
				add("Audit of %s does not name garbled item %d (%s, garbled by variants %v; docs/contract.md: Audit lists it as corrupt): drift %v",
					Prefixes[p].Name, i, ItemID(p, i), variants[[2]int{p, i}], drift)
			}
		}
		if Prefixes[p].Stream {
			for _, i := range items {
				if err := t.Refresh(ctx, i); err != nil {
					add("Refresh of garbled item %s/%d fails: %v", Prefixes[p].Name, i, err)
				}
			}
		} else {
			// Rounds of the janitor until nothing garbled is left, or the
			// longest a refresh of them may take has passed.
			for deadline := time.Now().Add(r.Plan.Config.Options.FenceTTL + r.Plan.Config.Options.Lease); ; {
				if err := t.Janitor(ctx, 200*time.Millisecond); err != nil {
					r.logf("janitor of %s: %v", Prefixes[p].Name, err)
				}
				left := slices.ContainsFunc(items, func(i int) bool { return r.garbledLeft(ctx, p, i) != "" })
				if !left || time.Now().After(deadline) || ctx.Err() != nil {
					break
				}
			}
		}
		for _, i := range items {
			if bad := r.garbledLeft(ctx, p, i); bad != "" {
				how := "the janitor with Repair"
				if Prefixes[p].Stream {
					how = "Refresh"
				}
				add("%s did not rebuild garbled item %s/%d (variants %v): %s", how, Prefixes[p].Name, i, variants[[2]int{p, i}], bad)
			}
		}
	}
	// A fence never outlives its bound, garbled or not.
	now, err := r.rdb.Time(ctx).Result()
	if err != nil {
		add("Redis TIME: %v", err)
		return vs
	}
	for p := range Prefixes {
		for i := range r.Plan.Config.Items {
			for _, k := range r.bucketKeys(p, i) {
				f, err := r.rdb.HGet(ctx, k, "f").Result()
				if err != nil {
					continue
				}
				if ms, err := strconv.ParseInt(f, 10, 64); err != nil || ms > now.Add(fenceBound).UnixMilli() {
					add("%s/%d: key %s holds a fence %q, beyond the longest a refresh takes (%v)", Prefixes[p].Name, i, k, f, fenceBound)
				}
			}
		}
	}
	return vs
}

// garbledLeft says what of the garblings of item i of prefix p is still
// in Redis, "" when nothing: every bucket a hash with numeric a and c, no
// pending count that is not a number, no fence beyond its bound, and none
// of garble's journal members.
func (r *Run) garbledLeft(ctx context.Context, p, i int) string {
	now, err := r.rdb.Time(ctx).Result()
	if err != nil {
		return err.Error()
	}
	for _, k := range r.bucketKeys(p, i) {
		if typ := r.rdb.Type(ctx, k).Val(); typ != "hash" {
			return fmt.Sprintf("key %s is a %s", k, typ)
		}
		vals, err := r.rdb.HMGet(ctx, k, "a", "c", "q", "f").Result()
		if err != nil {
			return err.Error()
		}
		for j, name := range []string{"a", "c", "q", "f"} {
			s, ok := vals[j].(string)
			if !ok {
				if j < 2 {
					return fmt.Sprintf("key %s lacks field %s", k, name)
				}
				continue
			}
			n, err := strconv.ParseInt(s, 10, 64)
			switch {
			case err != nil:
				return fmt.Sprintf("key %s holds %s=%q", k, name, s)
			case name == "f" && n > now.Add(fenceBound).UnixMilli():
				return fmt.Sprintf("key %s holds a fence until %v", k, time.UnixMilli(n).UTC())
			}
		}
	}
	id := ItemID(p, i)
	journal := Tag(r.Setup.Namespace, p, id) + "journal"
	for _, v := range []int{2, 9} {
		m := garbledMember(r.Setup.Namespace, p, i, v)
		if _, err := r.rdb.ZScore(ctx, journal, m).Result(); err == nil {
			return fmt.Sprintf("journal %s still holds %s", journal, m)
		}
	}
	return ""
}
