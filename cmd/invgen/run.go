package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/invgen/invgen/generator"
	invrt "github.com/invgen/invgen/runtime"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // drift found, or an I/O or sqlc failure
	exitUsage = 2 // bad arguments or a bad spec
)

const usage = `invgen generates typed Redis + SQL inventory packages from an inventory spec.

Usage:
  invgen init     [-f FILE]   write a commented starter spec (never overwrites)
  invgen generate [-f FILE]   write the packages the spec describes
  invgen check    [-f FILE]   exit 1 if the packages on disk differ from the spec
  invgen flush    [-f FILE]   write the stream ledger's Redis streams to SQL
  invgen migrate  [-f FILE]   create the ledger's tables, or apply their pending migrations
  invgen adopt    [-f FILE]   convert inventory_manager's tables and Redis (a dry run
                              unless -apply)
  invgen admin    [-f FILE] VERB PREFIX [ARGS]
                              list, get, init, adjust, audit, reconcile, refresh,
                              lag or drain the inventory of a prefix
  invgen version              print the version

FILE defaults to inventory.yaml. Run "invgen COMMAND -h" for a command's flags.
`

// run is the whole CLI; main only maps its result to an exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "flush":
		return runFlush(args, stdout, stderr)
	case "admin":
		return runAdmin(args, stdout, stderr)
	case "migrate":
		return runMigrate(args, stdout, stderr)
	case "adopt":
		return runAdopt(args, stdout, stderr)
	case "init", "generate", "check", "version":
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "invgen: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}

	fset := flag.NewFlagSet("invgen "+cmd, flag.ContinueOnError)
	fset.SetOutput(stderr)
	var file *string
	if cmd != "version" {
		file = fset.String("f", "inventory.yaml", "the spec `FILE`")
	}
	fset.Usage = func() {
		if cmd == "version" {
			fmt.Fprintf(stderr, "Usage: invgen version\n\n%s\n", commandDoc[cmd])
			return
		}
		fmt.Fprintf(stderr, "Usage: invgen %s [-f FILE]\n\n%s\n\nFlags:\n", cmd, commandDoc[cmd])
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fset.NArg() > 0 {
		fmt.Fprintf(stderr, "invgen %s: unexpected argument %q\n", cmd, fset.Arg(0))
		return exitUsage
	}

	switch cmd {
	case "version":
		fmt.Fprintf(stdout, "invgen %s (module %s, generated code version %d)\n", generator.Version, moduleVersion(), invrt.GenVersion)
		return exitOK
	case "init":
		return runInit(*file, stdout, stderr)
	case "generate":
		return runGenerate(*file, stdout, stderr)
	default:
		return runCheck(*file, stdout, stderr)
	}
}

var commandDoc = map[string]string{
	"version":  "Version prints the version of invgen and of the contract between generated code\nand the runtime.",
	"init":     "Init writes a commented starter spec to FILE. It refuses to overwrite a file.",
	"generate": "Generate writes, below the spec's output directory, one package per prefix\n(manager.go, schema.sql, query.sql, db/ from sqlc) and sqlc.yaml. Unchanged files\nare not touched. A bad spec writes nothing.",
	"check":    "Check exits 1 and lists every file that is stale or missing when the disk differs\nfrom what the spec generates. It writes nothing.",
}

func runInit(file string, stdout, stderr io.Writer) int {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			fmt.Fprintf(stderr, "invgen init: %s exists; not overwriting it\n", file)
		} else {
			fmt.Fprintf(stderr, "invgen init: %v\n", err)
		}
		return exitFail
	}
	_, err = f.WriteString(starterSpec)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(stderr, "invgen init: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "wrote %s; edit it, then run: invgen generate -f %s\n", file, file)
	return exitOK
}

// loadModel loads and validates a spec, printing its errors.
func loadModel(file string, stderr io.Writer) (*generator.Model, int) {
	m, err := generator.LoadModel(file)
	var specErrs generator.Errors
	switch {
	case errors.As(err, &specErrs):
		for _, e := range specErrs {
			fmt.Fprintln(stderr, e)
		}
		return nil, exitUsage
	case err != nil:
		fmt.Fprintf(stderr, "invgen: %v\n", err)
		return nil, exitFail
	}
	return m, exitOK
}

// load runs the pure steps shared by generate and check.
func load(cmd, file string, stderr io.Writer) (*generator.Model, generator.Files, int) {
	m, files, err := generator.FromSpec(file)
	var specErrs generator.Errors
	switch {
	case errors.As(err, &specErrs):
		for _, e := range specErrs {
			fmt.Fprintln(stderr, e)
		}
		return nil, nil, exitUsage
	case err != nil:
		fmt.Fprintf(stderr, "invgen %s: %v\n", cmd, err)
		return nil, nil, exitFail
	}
	return m, files, exitOK
}

func runGenerate(file string, stdout, stderr io.Writer) int {
	m, files, code := load("generate", file, stderr)
	if code != exitOK {
		return code
	}
	// The key columns the last generate wrote for: a change of one calls
	// for a migration of the prefix's tables.
	recorded, err := generator.RecordedKeys(m.OutDir)
	if err == nil {
		err = generator.CheckMigrations(m, recorded)
	}
	if err != nil {
		fmt.Fprintf(stderr, "invgen generate: %v\n", err)
		return exitFail
	}
	wrote, err := generator.Write(m.OutDir, files)
	for _, p := range wrote {
		fmt.Fprintf(stdout, "wrote %s\n", display(m, p))
	}
	if err == nil {
		var migrations []string
		migrations, err = generator.WriteMigrations(m, m.OutDir, recorded)
		for _, p := range migrations {
			fmt.Fprintf(stdout, "wrote %s: a migration of the ledger's tables; review it, then apply it with invgen migrate\n", display(m, p))
		}
	}
	if err == nil {
		// What the spec no longer generates goes: a package left on disk
		// would still build, and be imported, with no spec behind it.
		var deleted []string
		deleted, err = generator.Prune(m.OutDir, files)
		for _, p := range deleted {
			fmt.Fprintf(stdout, "deleted %s\n", display(m, p))
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "invgen generate: %v\n", err)
		return exitFail
	}
	return exitOK
}

func runCheck(file string, stdout, stderr io.Writer) int {
	m, files, code := load("check", file, stderr)
	if code != exitOK {
		return code
	}
	drift, err := generator.Diff(m.OutDir, files)
	if err != nil {
		fmt.Fprintf(stderr, "invgen check: %v\n", err)
		return exitFail
	}
	for _, d := range drift {
		switch d.Reason {
		case "orphaned":
			fmt.Fprintf(stderr, "orphaned: %s (the spec no longer generates it; invgen generate deletes it)\n", display(m, d.Path))
		default:
			fmt.Fprintf(stderr, "%s: %s\n", d.Reason, display(m, d.Path))
		}
		fmt.Fprint(stderr, d.Diff)
	}
	if len(drift) > 0 {
		fmt.Fprintf(stderr, "invgen check: %d of %d generated files differ from %s; run: invgen generate -f %s\n",
			len(drift), len(files), m.SpecPath, m.SpecPath)
		return exitFail
	}
	fmt.Fprintf(stdout, "invgen check: %d generated files match %s\n", len(files), m.SpecPath)
	return exitOK
}

// display shows a generated path relative to the working directory when it
// is below it, else as an absolute path.
func display(m *generator.Model, p string) string {
	abs := filepath.Join(m.OutDir, filepath.FromSlash(p))
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, abs); err == nil && filepath.IsLocal(rel) {
			return rel
		}
	}
	return abs
}

func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == "github.com/invgen/invgen" && bi.Main.Version != "" {
			return bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/invgen/invgen" {
				return d.Version
			}
		}
	}
	return "(devel)"
}
