package runtime

// Version numbers for the contract between generated code and this package.
// Generated code holds two constant assertions,
//
//	const _ = invrt.EnforceVersion(N - invrt.MinVersion)
//	const _ = invrt.EnforceVersion(invrt.MaxVersion - N)
//
// where N is the version it was generated for. A runtime too old or too new
// for that code makes the constant negative, and the build fails at the line
// that says so instead of failing at run time.
const (
	// GenVersion is the version that this invgen generates code for.
	GenVersion = 3
	// MinVersion is the oldest generated code this runtime supports.
	MinVersion = 2
	// MaxVersion is the newest generated code this runtime supports.
	MaxVersion = 3
)

// EnforceVersion is used by generated code to assert at compile time that
// it is compatible with this runtime (see [GenVersion]).
//
// Version 2: generated code passes its layout store, key type, maximum key
// length and database handle, so that the runtime checks the prefix's
// layout and refuses a transaction; code of version 1 did not.
//
// Version 3: generated code of the mysql and sqlite engines wraps its
// driver's errors in DBError and runs its scripts through SQLStatements and
// NamedSQL; code of version 2 (postgresql only) still builds.
type EnforceVersion uint
