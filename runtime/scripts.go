package runtime

import (
	"embed"

	"github.com/redis/go-redis/v9"
)

// Scripts holds the Lua sources of the protocol (scripts/*.lua), for
// benchmarks and operators that run a step by hand. Using invgen needs none
// of them: the runtime runs its scripts itself.
//
//go:embed scripts/*.lua
var Scripts embed.FS

// One script per step of the protocol; each file documents its KEYS, ARGV
// and reply. redis.Script runs EVALSHA and falls back to EVAL on NOSCRIPT.
var (
	// settled.lua is prepended to the scripts that read or write settled
	// op records: Lua has no include.
	//go:embed scripts/settled.lua
	settledSrc string

	//go:embed scripts/reserve.lua
	reserveSrc string // run under each Core's own gate (gate.go)

	//go:embed scripts/commit.lua
	commitSrc    string
	commitScript = redis.NewScript(settledSrc + commitSrc)

	//go:embed scripts/abort.lua
	abortSrc    string
	abortScript = redis.NewScript(settledSrc + abortSrc)

	//go:embed scripts/fence.lua
	fenceSrc    string
	fenceScript = redis.NewScript(fenceSrc)

	//go:embed scripts/load.lua
	loadSrc    string
	loadScript = redis.NewScript(loadSrc)

	// written.lua is prepended to the scripts that clear an unflushed
	// stream entry once its row is written.
	//go:embed scripts/written.lua
	writtenSrc string

	//go:embed scripts/flushack.lua
	flushAckSrc    string
	flushAckScript = redis.NewScript(writtenSrc + flushAckSrc)

	//go:embed scripts/clearwritten.lua
	clearWrittenSrc    string
	clearWrittenScript = redis.NewScript(writtenSrc + clearWrittenSrc)

	//go:embed scripts/remember.lua
	rememberSrc    string
	rememberScript = redis.NewScript(settledSrc + rememberSrc)

	//go:embed scripts/flushforget.lua
	flushForgetSrc    string
	flushForgetScript = redis.NewScript(flushForgetSrc)

	//go:embed scripts/expire.lua
	expireSrc    string
	expireScript = redis.NewScript(expireSrc)

	//go:embed scripts/forward.lua
	forwardSrc    string
	forwardScript = redis.NewScript(forwardSrc)

	//go:embed scripts/rejournal.lua
	rejournalSrc    string
	rejournalScript = redis.NewScript(rejournalSrc)

	//go:embed scripts/unfence.lua
	unfenceSrc    string
	unfenceScript = redis.NewScript(unfenceSrc)
)

// Reply codes of reserve.lua.
const (
	codeReserved  = 0
	codeDuplicate = 1
	codeShort     = 2
	codeMissing   = 3
	codeBusy      = 4
	codeLimit     = 5
	codeUnknown   = 6
	codeNothing   = 7
	codeCorrupt   = 8
	codeBadOp     = 9
	codeStale     = 10
	codeBuckets   = 11
	codeForward   = 12
)

// Op record states, as reserve.lua stores them.
const (
	opPending   = "p"
	opCommitted = "c"
	opVoid      = "v"
)
