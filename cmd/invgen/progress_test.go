package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/invgen/invgen/generator"
	"github.com/invgen/invgen/internal/testenv"
)

// TestProgressIsSilentForScripts: no bar on a writer that is not a
// terminal (a pipe, a file, a buffer) nor with -json.
func TestProgressIsSilentForScripts(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	testenv.Must(t, err, "create")
	defer f.Close()
	for name, p := range map[string]*progress{
		"buffer": newProgress(&bytes.Buffer{}, false, 10, "refresh", "items"),
		"file":   newProgress(f, false, 10, "refresh", "items"),
		"json":   newProgress(os.Stdout, true, 10, "refresh", "items"),
	} {
		if p != nil {
			t.Errorf("%s: a progress bar that draws; want none", name)
		}
		p.add(1) // a progress that does not draw does nothing
		p.set(5)
		p.clear()
		p.finish()
	}
	if fi, _ := f.Stat(); fi.Size() != 0 {
		t.Errorf("the file holds %d bytes of progress", fi.Size())
	}
}

// TestRefreshAllShowsItsProgress runs admin refresh -all's RefreshAll with
// its progress drawn into a buffer: done of total, as the ledger's pages
// of items are read, over a real SQLite ledger and Redis.
func TestRefreshAllShowsItsProgress(t *testing.T) {
	m, code := loadModel(filepath.Join("..", "..", "examples", "engines", "sqlite.yaml"), os.Stderr)
	if code != 0 {
		t.Fatalf("load the spec: exit %d", code)
	}
	var p *generator.Prefix
	for _, q := range m.Prefixes {
		if q.Name == "flash_sale" {
			p = q
		}
	}
	ctx := context.Background()
	ns := testenv.Namespace(t, testenv.Redis(t))
	core, closeAll, err := openCoreMode(ctx, m, p, ns, filepath.Join(t.TempDir(), "ledger.db"), testRedisURL(), dbCreate)
	testenv.Must(t, err, "open")
	defer closeAll()
	testenv.Must(t, core.CreateTables(ctx), "CreateTables")
	for i := range 3 {
		testenv.Must(t, core.Init(ctx, itemKey("sku-"+strconv.Itoa(i)), 5), "Init")
	}
	var drawn []*progress
	pctx, ip := withItemBars(ctx, func(total int64) *progress {
		p := drawProgress(&bytes.Buffer{}, total, "refresh flash_sale", "items")
		drawn = append(drawn, p)
		return p
	})
	n, err := core.RefreshAll(pctx)
	ip.finish()
	testenv.Must(t, err, "RefreshAll")
	if n != 3 {
		t.Fatalf("RefreshAll refreshed %d items; want 3", n)
	}
	if len(drawn) == 0 || ip.total != 3 || ip.done != 3 || drawn[len(drawn)-1].max() != 3 {
		t.Errorf("the progress of RefreshAll: %d bars, %d of %d items; want a bar of 3 items, all done", len(drawn), ip.done, ip.total)
	}
}

// TestProgressDraws: a bar shows its description, done of total and the
// unit, and is cleared when the work ends.
func TestProgressDraws(t *testing.T) {
	var out bytes.Buffer
	p := drawProgress(&out, 5000, "refresh flash_sale", "items")
	p.add(1000) // the first draw
	p.add(1500)
	time.Sleep(120 * time.Millisecond) // past the throttle
	p.add(1)
	s := out.String()
	if !strings.Contains(s, "refresh flash_sale") || !strings.Contains(s, "2501/5000") || !strings.Contains(s, "items/s") {
		t.Errorf("the bar drawn is %q; want the description, 2501/5000 and the rate", s)
	}
	p.finish()
	if end := out.String()[len(s):]; strings.TrimSpace(end) != "" {
		t.Errorf("finish drew %q; want the bar cleared", end)
	}
}
