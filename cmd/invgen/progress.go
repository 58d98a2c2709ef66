package main

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows how far long work has come (admin refresh -all, admin
// drain, adopt -apply, migrate): done of total, the rate and the time
// left. It draws only when out is a terminal and the command prints no
// JSON, so that what scripts read stays as it was; the bar is cleared
// when the work ends. A nil *progress, or one that does not draw, does
// nothing.
type progress struct{ bar *progressbar.ProgressBar }

// newProgress returns the progress of work of total units (items,
// changes, migrations: unit names them) written to out, or one that does
// not draw.
func newProgress(out io.Writer, asJSON bool, total int64, what, unit string) *progress {
	if !draws(out, asJSON) || total <= 0 {
		return nil
	}
	return drawProgress(out, total, what, unit)
}

// draws reports whether progress is drawn on out: a terminal, and no JSON.
func draws(out io.Writer, asJSON bool) bool {
	f, ok := out.(*os.File)
	return !asJSON && ok && term.IsTerminal(int(f.Fd()))
}

// drawProgress is the progress of newProgress, drawn on w whatever it is.
func drawProgress(w io.Writer, total int64, what, unit string) *progress {
	return &progress{progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionClearOnFinish(),
	)}
}

// add counts n more units done.
func (p *progress) add(n int) {
	if p != nil {
		p.bar.Add(n)
	}
}

// set says that n units are done.
func (p *progress) set(n int64) {
	if p != nil {
		p.bar.Set64(min(n, p.bar.GetMax64()))
	}
}

// max is the total, 0 for a progress that does not draw.
func (p *progress) max() int64 {
	if p == nil {
		return 0
	}
	return p.bar.GetMax64()
}

// clear takes the bar off the terminal until it is drawn again, so that
// a line can be printed.
func (p *progress) clear() {
	if p != nil {
		p.bar.Clear()
	}
}

// finish ends the bar and clears it.
func (p *progress) finish() {
	if p != nil {
		p.bar.Finish()
	}
}

// itemProgress is the progress of a RefreshAll, drawn as the ledger's
// pages of items are read (sqlLedger.Items): the first page counts the
// items and starts the bar.
type itemProgress struct {
	start       func(total int64) *progress // newProgress's, to out
	bar         *progress
	done, total int64 // of the latest pass
}

type itemProgressKey struct{}

// withItemProgress returns ctx whose ledger pages of items show on out,
// as newProgress draws, under the description what. Where nothing is
// drawn it returns ctx as it is and a nil itemProgress, so that the
// ledger does not count the items for nobody.
func withItemProgress(ctx context.Context, out io.Writer, asJSON bool, what string) (context.Context, *itemProgress) {
	if !draws(out, asJSON) {
		return ctx, nil
	}
	return withItemBars(ctx, func(total int64) *progress { return newProgress(out, asJSON, total, what, "items") })
}

// withItemBars returns ctx whose ledger pages of items count into the
// bars that start makes, one per pass.
func withItemBars(ctx context.Context, start func(total int64) *progress) (context.Context, *itemProgress) {
	ip := &itemProgress{start: start}
	return context.WithValue(ctx, itemProgressKey{}, ip), ip
}

// itemProgressOf is the itemProgress of ctx, or nil.
func itemProgressOf(ctx context.Context) *itemProgress {
	ip, _ := ctx.Value(itemProgressKey{}).(*itemProgress)
	return ip
}

// page counts a page of n items; the first page of a pass (first) starts
// the bar again, over the count that total gives.
func (ip *itemProgress) page(first bool, total func() (int64, error), n int) {
	if first {
		ip.bar.finish()
		ip.bar, ip.done, ip.total = nil, 0, 0
		if t, err := total(); err == nil {
			ip.bar, ip.total = ip.start(t), t
		}
	}
	ip.done += int64(n)
	ip.bar.add(n)
}

// finish ends the bar; a nil itemProgress does nothing.
func (ip *itemProgress) finish() {
	if ip != nil {
		ip.bar.finish()
	}
}
