package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// safeErr is an error pgx marks as sent before anything reached the server.
type safeErr struct{}

func (safeErr) Error() string     { return "not sent" }
func (safeErr) SafeToRetry() bool { return true }

func TestDefinitelyNotWritten(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"marked safe to retry", safeErr{}, true},
		{"connect error", &pgconn.ConnectError{}, true},
		{"statement rejected", &pgconn.PgError{Severity: "ERROR", Code: "23514"}, true},
		{"wrapped statement rejected", fmt.Errorf("x: %w", &pgconn.PgError{Severity: "ERROR"}), true},
		// pgx returns a bare context error when the context ends while it
		// waits for the answer to a statement it has sent: in doubt.
		{"bare context canceled", context.Canceled, false},
		{"bare deadline exceeded", context.DeadlineExceeded, false},
		{"FATAL after the statement", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, false},
		{"German server, statement rejected", &pgconn.PgError{Severity: "FEHLER", SeverityUnlocalized: "ERROR", Code: "23514"}, true},
		{"German server, FATAL", &pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01"}, false},
		{"connection lost", io.ErrUnexpectedEOF, false},
		{"anything else", errors.New("?"), false},
	} {
		if got := definitelyNotWritten(c.err); got != c.want {
			t.Errorf("%s: definitelyNotWritten = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestParseReserve(t *testing.T) {
	r, err := parseReserve("1:99999999999999:-3:c:1:4611686018427387904:250:64")
	if err != nil || r.code != 1 || r.available != 99999999999999 || r.delta != -3 || r.state != "c" || !r.flag || r.attempt != 1<<62 || r.soldOut != 250 || r.buckets != 64 {
		t.Fatalf("parseReserve = %+v, %v", r, err)
	}
	for _, bad := range []string{"", "1:2", "1:2e+14:0:c:0:1:0", "x:0:0::0:0:0", "1:0:0:c:0:1", "1:0:0:c:0:1:x", "1:0:0:c:0:1:0", "1:0:0:c:0:1:0:x"} {
		if _, err := parseReserve(bad); err == nil {
			t.Errorf("parseReserve(%q) accepted it", bad)
		}
	}
}
