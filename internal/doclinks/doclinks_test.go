// Package doclinks checks that the documentation's links resolve: every
// relative link of README.md and docs/*.md names a file that exists, and
// every anchor names a heading of its file, as GitHub makes anchors from
// headings. Links to http, https and mailto addresses, and links inside
// fenced code blocks, are not checked. It needs no services.
package doclinks

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// root is the repository's root, from this package's directory.
const root = "../.."

// TestLinks checks every link of README.md and docs/*.md.
func TestLinks(t *testing.T) {
	files := []string{filepath.Join(root, "README.md")}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no docs/*.md found")
	}
	files = append(files, docs...)
	c := newChecker()
	n := 0
	for _, f := range files {
		problems, links, err := c.check(f)
		if err != nil {
			t.Fatal(err)
		}
		n += links
		for _, p := range problems {
			rel, _ := filepath.Rel(root, f)
			t.Errorf("%s:%d: link %q: %s", filepath.ToSlash(rel), p.line, p.target, p.msg)
		}
	}
	t.Logf("%d files, %d relative links", len(files), n)
}

// TestChecker runs the checker on documents written for the test, so that
// a checker that finds nothing cannot pass TestLinks.
func TestChecker(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("other.md", "# Other page\n\n## A `code` heading: with (punctuation)\n\n## Repeat\n\n## Repeat\n")
	doc := write("doc.md", strings.Join([]string{
		"# Title",
		"",
		"[ok](other.md) [ok](other.md#other-page) [ok](other.md#a-code-heading-with-punctuation)",
		"[ok](other.md#repeat-1) [ok](#title) [ok](#section) [ok](https://example.com/x.md#nope)",
		"[missing file](gone.md)",
		"[missing anchor](other.md#repeat-2)",
		"[missing here](#nowhere)",
		"`[in code](gone.md)`",
		"```",
		"[in a fence](gone.md)",
		"```",
		"[split",
		"text](other.md#nope)",
		"",
		"## Section",
	}, "\n"))
	problems, _, err := newChecker().check(doc)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range problems {
		got = append(got, fmt.Sprintf("%d %s", p.line, p.target))
	}
	want := []string{"5 gone.md", "6 other.md#repeat-2", "7 #nowhere", "12 other.md#nope"}
	if !slices.Equal(got, want) {
		t.Errorf("problems %q, want %q", got, want)
	}
}

// TestSlug checks the anchors made from headings.
func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"The contract":                            "the-contract",
		"Moving from inventory_manager":           "moving-from-inventory_manager",
		"The ledger database: `-db`":              "the-ledger-database--db",
		"Max key length and key type: migrations": "max-key-length-and-key-type-migrations",
		"Shards (for example 16 → 4)":             "shards-for-example-16--4",
		"See [the spec](spec.md) now":             "see-the-spec-now",
		"**Bold** and *emphasis*":                 "bold-and-emphasis",
		"Ümlaut café":                             "ümlaut-café",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

// problem is a link that does not resolve.
type problem struct {
	line   int
	target string
	msg    string
}

// checker checks links, and keeps the anchors of each file it read.
type checker struct {
	anchors map[string]map[string]bool
}

func newChecker() *checker { return &checker{anchors: map[string]map[string]bool{}} }

var (
	// linkRE is an inline link or image: [text](target) or
	// [text](target "title"). The text may span lines.
	linkRE = regexp.MustCompile(`!?\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	// refRE is a link reference definition: [label]: target.
	refRE = regexp.MustCompile(`(?m)^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$`)
	// headingRE is an ATX heading.
	headingRE = regexp.MustCompile(`^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$`)
	// setextRE is the underline of a setext heading.
	setextRE = regexp.MustCompile(`^ {0,3}(=+|-+)[ \t]*$`)
	// fenceRE opens or closes a fenced code block.
	fenceRE = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})")
)

// check returns the links of file that do not resolve, and how many
// relative links it has.
func (c *checker) check(file string) ([]problem, int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, 0, err
	}
	text := prose(string(data))
	var problems []problem
	links := 0
	report := func(at int, target string) {
		if skipped(target) {
			return
		}
		links++
		line := 1 + strings.Count(text[:at], "\n")
		if msg := c.resolve(file, target); msg != "" {
			problems = append(problems, problem{line, target, msg})
		}
	}
	for _, m := range linkRE.FindAllStringSubmatchIndex(text, -1) {
		report(m[0], text[m[4]:m[5]])
	}
	for _, m := range refRE.FindAllStringSubmatchIndex(text, -1) {
		report(m[0], text[m[2]:m[3]])
	}
	return problems, links, nil
}

// skipped reports whether target is an address the test does not check.
func skipped(target string) bool {
	lower := strings.ToLower(target)
	for _, scheme := range []string{"http:", "https:", "mailto:"} {
		if strings.HasPrefix(lower, scheme) {
			return true
		}
	}
	return false
}

// resolve returns what is wrong with target, a link of file, or "".
func (c *checker) resolve(file, target string) string {
	path, anchor, _ := strings.Cut(target, "#")
	path, err := url.PathUnescape(path)
	if err != nil {
		return fmt.Sprintf("bad escape: %v", err)
	}
	if anchor, err = url.PathUnescape(anchor); err != nil {
		return fmt.Sprintf("bad escape: %v", err)
	}
	dest := file
	if path != "" {
		if strings.HasPrefix(path, "/") {
			return "an absolute path; links must be relative to the linking file"
		}
		dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
		if _, err := os.Stat(dest); err != nil {
			return fmt.Sprintf("%s does not exist", path)
		}
	}
	if anchor == "" {
		return ""
	}
	if !strings.HasSuffix(dest, ".md") {
		return fmt.Sprintf("an anchor into %s, which is not a markdown file", filepath.Base(dest))
	}
	anchors, err := c.anchorsOf(dest)
	if err != nil {
		return err.Error()
	}
	if !anchors[anchor] {
		return fmt.Sprintf("%s has no heading with anchor #%s", filepath.Base(dest), anchor)
	}
	return ""
}

// anchorsOf returns the anchors of file's headings.
func (c *checker) anchorsOf(file string) (map[string]bool, error) {
	if a, ok := c.anchors[file]; ok {
		return a, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	a := map[string]bool{}
	seen := map[string]int{}
	add := func(heading string) {
		s := slug(heading)
		if n, dup := seen[s]; dup {
			seen[s] = n + 1
			s = fmt.Sprintf("%s-%d", s, n+1)
		} else {
			seen[s] = 0
		}
		a[s] = true
	}
	lines := strings.Split(unfenced(string(data)), "\n")
	for i, line := range lines {
		if m := headingRE.FindStringSubmatch(line); m != nil {
			add(m[2])
			continue
		}
		// A setext heading: a paragraph's last line, underlined. A line
		// of dashes after a blank line is a thematic break instead.
		if i > 0 && setextRE.MatchString(line) {
			prev := strings.TrimSpace(lines[i-1])
			if prev != "" && !headingRE.MatchString(lines[i-1]) && !strings.HasPrefix(prev, "|") {
				add(prev)
			}
		}
	}
	c.anchors[file] = a
	return a, nil
}

var (
	inlineLinkRE = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	tagRE        = regexp.MustCompile(`<[^>]+>`)
)

// slug is the anchor GitHub makes of a heading: its text as rendered
// (links and images by their text, no tags), lower-cased, without the
// characters that are not letters, digits, spaces, hyphens or
// underscores, and with each space a hyphen. Duplicates get -1, -2, ...
// from anchorsOf.
func slug(heading string) string {
	text := inlineLinkRE.ReplaceAllString(heading, "$1")
	text = tagRE.ReplaceAllString(text, "")
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// prose returns text with the content of fenced code blocks and of code
// spans blanked out, so that a link shown as code is not taken for a link.
// Newlines are kept, so offsets give the same line numbers.
func prose(text string) string { return blankCodeSpans(unfenced(text)) }

// unfenced returns text with the lines of fenced code blocks, fences
// included, made empty.
func unfenced(text string) string {
	lines := strings.Split(text, "\n")
	fence := ""
	for i, line := range lines {
		m := fenceRE.FindStringSubmatch(line)
		switch {
		case fence == "" && m != nil:
			fence = m[1]
		case fence == "":
			continue
		case m != nil && m[1][0] == fence[0] && len(m[1]) >= len(fence) && strings.TrimSpace(line) == m[1]:
			fence = ""
		}
		lines[i] = ""
	}
	return strings.Join(lines, "\n")
}

// blankCodeSpans replaces the content of each code span (a run of
// backticks up to the next run of the same length) with spaces, keeping
// its newlines.
func blankCodeSpans(text string) string {
	b := []byte(text)
	for i := 0; i < len(b); {
		if b[i] != '`' {
			i++
			continue
		}
		j := i
		for j < len(b) && b[j] == '`' {
			j++
		}
		run := j - i
		end := -1
		for k := j; k < len(b); {
			if b[k] != '`' {
				k++
				continue
			}
			l := k
			for l < len(b) && b[l] == '`' {
				l++
			}
			if l-k == run {
				end = k
				break
			}
			k = l
		}
		if end < 0 {
			i = j
			continue
		}
		for k := j; k < end; k++ {
			if b[k] != '\n' {
				b[k] = ' '
			}
		}
		i = end + run
	}
	return string(b)
}
