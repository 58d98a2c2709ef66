package contract

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invgen/invgen/internal/testenv"
	invrt "github.com/invgen/invgen/runtime"
)

// A PostgreSQL whose messages are localized (lc_messages German) reports
// the severity of an error as "FEHLER", not "ERROR". An insert the server
// refused wrote nothing on any server: the change must be given up at once
// (the units back, the op key free to retry), never left in doubt because
// of the language of a message. Only SQLSTATE and the unlocalized severity
// may decide. (scripts/services.sh generates the de_DE.UTF-8 locale.)
func TestLocalizedServerRefusalTakesNothing(t *testing.T) {
	if testenv.Engine() != "postgresql" {
		t.Fatalf("run with INVGEN_ENGINE=postgresql: PostgreSQL's message language; the other engines report error numbers (make test skips it on the other engines)")
	}
	f := stringFixtureWith(t, func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["lc_messages"] = "de_DE.UTF-8"
	})
	ctx := ctxT(t)
	// The server speaks German, or the test proves nothing.
	_, err := f.pool.Exec(ctx, "SELECT 1/0")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Severity != "FEHLER" || pe.SeverityUnlocalized != "ERROR" {
		t.Fatalf("the server's messages are not German (%#v); install the de_DE.UTF-8 locale (make services)", err)
	}
	testenv.Must(t, f.m.Init(ctx, "sku", 10), "Init")
	for _, refusal := range []struct{ name, on, off string }{
		{"check constraint", "ALTER TABLE " + f.usageTable + " ADD CONSTRAINT refuse_all CHECK (false) NOT VALID",
			"ALTER TABLE " + f.usageTable + " DROP CONSTRAINT refuse_all"},
		{"trigger", "CREATE FUNCTION refuse_all() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'closed'; END$$; " +
			"CREATE TRIGGER refuse_all BEFORE INSERT ON " + f.usageTable + " FOR EACH ROW EXECUTE FUNCTION refuse_all()",
			"DROP TRIGGER refuse_all ON " + f.usageTable + "; DROP FUNCTION refuse_all()"},
	} {
		t.Run(refusal.name, func(t *testing.T) {
			f.exec(t, refusal.on)
			t.Cleanup(func() {
				if t.Failed() {
					f.exec(t, refusal.off)
				}
			})
			op := "o-" + refusal.name
			before, _ := f.m.Get(ctx, "sku")
			_, err := f.m.Decr(ctx, "sku", 1, op)
			if err == nil {
				t.Fatal("Decr succeeded although the server refused its row")
			}
			if errors.Is(err, invrt.ErrInDoubt) {
				t.Fatalf("Decr = %v: a refused insert was left in doubt", err)
			}
			if v, err := f.m.Get(ctx, "sku"); err != nil || v != before {
				t.Fatalf("stock %d (%v) after a refused purchase, want %d: its unit is held", v, err, before)
			}
			f.exec(t, refusal.off)
			if r, err := f.m.Decr(ctx, "sku", 1, op); err != nil || r.Replayed || r.Available != before-1 {
				t.Fatalf("retry after the refusal = %+v, %v; want a fresh purchase", r, err)
			}
			f.assertConserved(t, "sku")
		})
	}
}
