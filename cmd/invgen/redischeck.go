package main

import (
	"fmt"
	"text/tabwriter"

	invrt "github.com/invgen/invgen/runtime"
)

// redisRow is one Redis server as `invgen admin redis` shows it: its
// eviction policy and persistence, and what they guarantee for the
// prefix's ledger mode.
type redisRow struct {
	invrt.RedisConfig
	Persistence string `json:"persistence"`
	Verdict     string `json:"verdict"`
	Guarantee   string `json:"guarantee"`
}

// redisCheck is the verb redis: every server the prefix uses (each
// master of a cluster), what its configuration guarantees, and exit 3
// when one may evict keys (the managers refuse it with ErrUnsafeRedis).
func (a admin) redisCheck() ([]redisRow, error) {
	cfgs, err := a.core.RedisConfigs(a.ctx)
	if err != nil {
		return nil, err
	}
	stream := a.p.Ledger == "stream"
	rows := make([]redisRow, len(cfgs))
	evicting := 0
	for i, c := range cfgs {
		v := invrt.RedisSafe
		switch {
		case !c.Checked:
			v = invrt.RedisUnchecked
		case c.Evicts():
			v = invrt.RedisRefused
			evicting++
		}
		rows[i] = redisRow{RedisConfig: c, Persistence: c.Persistence(), Verdict: string(v), Guarantee: c.Guarantee(stream)}
	}
	err = a.print(rows, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "server\tmaxmemory\tpolicy\tpersistence\tsave\tverdict\n")
		for _, r := range rows {
			policy, save := r.Policy, r.Save
			if !r.Checked {
				policy, save = "?", "?"
			}
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%q\t%s\n", r.Server, r.MaxMemory, policy, r.Persistence, save, r.Verdict)
		}
		w.Flush()
		mode := "sync"
		if stream {
			mode = "stream"
		}
		fmt.Fprintf(w, "\n%s ledger:\n", mode)
		for _, r := range rows {
			fmt.Fprintf(w, "  %s: %s\n", r.Server, r.Guarantee)
			if !r.Checked {
				fmt.Fprintf(w, "  %s: not checked: %s\n", r.Server, r.Unchecked)
			}
		}
	})
	if err == nil && evicting > 0 {
		err = fmt.Errorf("%w: %d Redis servers may evict keys (maxmemory-policy is not noeviction): the managers refuse them with ErrUnsafeRedis; set maxmemory-policy noeviction", errFound, evicting)
	}
	return rows, err
}
