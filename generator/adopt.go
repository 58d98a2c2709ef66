package generator

import "fmt"

// Adoption names the tables of an inventory_manager deployment (the Python
// library invgen replaces) as invgen adopt keeps them: renamed, next to
// invgen's tables of the same prefix.
type Adoption struct {
	// OldMod and OldUsage are the names the old tables are kept under.
	OldMod, OldUsage string
	// CreateTime says whether the old tables have create_time (unix
	// milliseconds), which becomes created_at.
	CreateTime bool
}

// OldTables returns the names the old tables of p are kept under once
// adopted: <prefix>_im_modification_record and <prefix>_im_usage_record,
// shorter than invgen's own, so that they fit the engine's limit.
func OldTables(p *Prefix) (mod, usage string) {
	return p.Name + "_im_modification_record", p.Name + "_im_usage_record"
}

// AdoptSQL returns the statements of invgen adopt for prefix p of m, by
// name (Columns, ItemSums, Nulls, RenameOld, CopyModification, ...), with
// $n parameters as Queries writes them. table is the table ItemSums and
// Nulls read. The postgresql and mysql engines have them: the Python
// library ran on PostgreSQL and MySQL.
func AdoptSQL(m *Model, p *Prefix, a Adoption, table string) (map[string]string, error) {
	var item, created string
	switch m.Engine {
	case "postgresql":
		item, created = "o.item_id", "now()"
		if a.CreateTime {
			created = "COALESCE(to_timestamp(o.create_time / 1000.0), now())"
		}
	case "mysql":
		switch p.Key {
		case "int64":
			item = "CAST(o.item_id AS SIGNED)"
		case "uuid":
			item = "LOWER(o.item_id)"
		default:
			item = "CAST(o.item_id AS BINARY)"
		}
		created = "CURRENT_TIMESTAMP(6)"
		if a.CreateTime {
			created = "COALESCE(FROM_UNIXTIME(o.create_time / 1000), CURRENT_TIMESTAMP(6))"
		}
	default:
		return nil, fmt.Errorf("invgen adopt converts inventory_manager's tables on postgresql and mysql, not on %s", m.Engine)
	}
	data := struct {
		*Prefix
		OldMod, OldUsage, Table, OldItem, CreatedAt string
	}{p, a.OldMod, a.OldUsage, table, item, created}
	text, err := render(m.Engine, "adopt.sql", data)
	if err != nil {
		return nil, err
	}
	return namedStatements(m.Engine, text), nil
}
