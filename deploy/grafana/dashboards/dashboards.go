// Package dashboards embeds the Grafana dashboards of this folder (provisioned as files;
// Grafana reads only the *.json) and reads the part of them that tests check: panels,
// their data sources and queries.
package dashboards

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
)

//go:embed *.json
var files embed.FS

// Dashboard is the part of a Grafana dashboard's JSON the tests read.
type Dashboard struct {
	File   string  `json:"-"`
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []Panel `json:"panels"`
	// Templating holds the dashboard's variables.
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Variable is a dashboard variable; a query variable asks its data source for its values.
type Variable struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Datasource *Datasource `json:"datasource"`
	Query      string      `json:"query"`
}

// Panel is a dashboard panel; a row holds its panels when collapsed.
type Panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *Datasource `json:"datasource"`
	GridPos    struct {
		X int `json:"x"`
		Y int `json:"y"`
		W int `json:"w"`
		H int `json:"h"`
	} `json:"gridPos"`
	Targets []Target `json:"targets"`
	Panels  []Panel  `json:"panels"`
}

// Datasource names a data source by uid.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Target is one query of a panel: PromQL in Expr, or ClickHouse SQL in RawSQL.
type Target struct {
	RefID      string      `json:"refId"`
	Datasource *Datasource `json:"datasource"`
	Expr       string      `json:"expr"`
	RawSQL     string      `json:"rawSql"`
}

// Data source uids the dashboards use; the Grafana provisioning defines them.
const (
	Prometheus = "prometheus"
	ClickHouse = "clickhouse"
)

// DatasourceUID is the uid of the target's data source, else its panel's.
func (q Target) DatasourceUID(p Panel) string {
	if q.Datasource != nil {
		return q.Datasource.UID
	}
	if p.Datasource != nil {
		return p.Datasource.UID
	}
	return ""
}

// AllPanels lists the panels, those inside collapsed rows included.
func (d Dashboard) AllPanels() []Panel {
	var out []Panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// Query is one panel query on one data source.
type Query struct {
	Dashboard, Panel, RefID string
	Text                    string // PromQL or SQL
}

// Queries lists every query on the data source of uid, the variables' first, then the
// panels' in order.
func (d Dashboard) Queries(uid string) []Query {
	var out []Query
	for _, v := range d.Templating.List {
		if v.Type == "query" && v.Datasource != nil && v.Datasource.UID == uid {
			out = append(out, Query{Dashboard: d.Title, Panel: "variable " + v.Name, Text: v.Query})
		}
	}
	for _, p := range d.AllPanels() {
		for _, q := range p.Targets {
			if q.DatasourceUID(p) != uid {
				continue
			}
			text := q.Expr
			if uid == ClickHouse {
				text = q.RawSQL
			}
			out = append(out, Query{Dashboard: d.Title, Panel: p.Title, RefID: q.RefID, Text: text})
		}
	}
	return out
}

// All reads every dashboard of the folder.
func All() ([]Dashboard, error) {
	names, err := fs.Glob(files, "*.json")
	if err != nil {
		return nil, err
	}
	var out []Dashboard
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		d := Dashboard{File: n}
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, d)
	}
	return out, nil
}
