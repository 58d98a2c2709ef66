package robustness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	invrt "github.com/invgen/invgen/runtime"
)

// ChildMain is the body of a child process: a buyer runs the steps of its
// clients against managers of its own and reports every call on stdout,
// one JSON line when it starts and one when it returns, each written at
// once so that a SIGKILL loses nothing; a flusher runs the stream prefix's
// flusher. It returns the exit status.
func ChildMain(path string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 2 }
	b, err := os.ReadFile(path)
	if err != nil {
		return fail(err)
	}
	var cp childPlan
	if err := json.Unmarshal(b, &cp); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), cp.Until)
	defer cancel()
	seed := cp.Config.Seed ^ uint64(len(cp.Proc))<<8 ^ uint64(time.Now().UnixNano())
	var db *DB
	var ping func(context.Context) error
	if cp.Engine == "" || cp.Engine == "postgresql" {
		pool, err := NewPool(ctx, cp.DBURL, cp.Schema, cp.Config.ChildConns)
		if err != nil {
			return fail(err)
		}
		defer pool.Close()
		ping = pool.Ping
		db = NewDB(pool, seed, cp.Config.DelayP)
	} else {
		sqlDB, err := OpenSQL(cp.Engine, cp.DSN, "", int(cp.Config.ChildConns))
		if err != nil {
			return fail(err)
		}
		defer sqlDB.Close()
		ping = sqlDB.PingContext
		db = NewSQLDB(sqlDB, seed, cp.Config.DelayP)
	}
	rdb := NewRedis(cp.Redis, 16)
	defer rdb.Close()
	env := &Env{Proc: cp.Proc, DB: db}
	for p := range Prefixes {
		t, err := NewTarget(cp.Engine, p, db, rdb, cp.Config.Options)
		if err != nil {
			return fail(err)
		}
		env.Targets = append(env.Targets, t)
	}
	if cp.Role == "flusher" {
		err := env.Targets[3].RunFlusher(ctx, invrt.FlusherConfig{ClaimAfter: 200 * time.Millisecond, BatchSize: cp.BatchSize,
			DrainTimeout: time.Second})
		fmt.Println("flusher:", err)
		return 0
	}
	var mu sync.Mutex
	emit := func(c Call, done bool) {
		line, _ := json.Marshal(struct {
			Done bool `json:"done"`
			Call Call `json:"call"`
		}{done, c})
		line = append(line, '\n')
		mu.Lock()
		os.Stdout.Write(line)
		mu.Unlock()
	}
	if cp.Role == "step" {
		// One call of each step, no retries: a quiet round's step
		// (quiet.go), its answer checked against the model. The ledger
		// is reached first, outside the step's deadline: a process's
		// first SQLite connection compiles the library's module, which
		// takes seconds under the race detector.
		if err := ping(ctx); err != nil {
			return fail(err)
		}
		for _, steps := range cp.Clients {
			for _, s := range steps {
				env.Run(ctx, s, 0, s.Deadline, emit)
			}
		}
		return 0
	}
	var wg sync.WaitGroup
	for _, steps := range cp.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env.RunClient(ctx, cp.Config.Seed, steps, emit)
		}()
	}
	wg.Wait()
	for _, t := range env.Targets {
		t.Close(context.Background())
	}
	return 0
}
