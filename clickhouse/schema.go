package clickhouse

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Version is a ClickHouse server version as SELECT version() reports it.
type Version struct{ Major, Minor, Patch int }

// ParseVersion reads "18.16.1" or "26.7.2.1".
func ParseVersion(s string) (Version, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 2 {
		return Version{}, fmt.Errorf("parse clickhouse version %q: want major.minor[.patch]", s)
	}
	var v Version
	for i, dst := range []*int{&v.Major, &v.Minor, &v.Patch} {
		if i >= len(parts) {
			break
		}
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return Version{}, fmt.Errorf("parse clickhouse version %q: %w", s, err)
		}
		*dst = n
	}
	return v, nil
}

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Features are the schema choices that depend on the server.
type Features struct {
	// LowCardinality(String) for low-cardinality text (tenant, source, zone, ...). 18.16
	// has it only behind allow_experimental_low_cardinality_type; it is plain from 19.x
	// on, and 20.1 is a version where that is certain.
	LowCardinality bool
	// AddColumnIfNotExists: ALTER TABLE ... ADD COLUMN IF NOT EXISTS (not in 18.16; there a
	// re-run migration's "column already exists" is taken as done, see Migrate).
	AddColumnIfNotExists bool
}

// FeaturesFor picks the features a server version has.
func FeaturesFor(v Version) Features {
	return Features{LowCardinality: v.AtLeast(20, 1), AddColumnIfNotExists: v.AtLeast(20, 1)}
}

// Schema is what the migrations are rendered for.
type Schema struct {
	Database string
	Cluster  string // empty: single node
	Features Features
}

// Migration is one numbered schema step.
type Migration struct {
	Version    uint32
	Name       string
	Statements []string
}

var migrationName = regexp.MustCompile(`^(\d+)_[a-z0-9_]+\.sql$`)

// Migrations renders the embedded migrations for s, in order.
func (s Schema) Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	seen := map[uint32]string{}
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", e.Name())
		}
		n, err := strconv.ParseUint(m[1], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		if prev, ok := seen[uint32(n)]; ok {
			return nil, fmt.Errorf("migration %s: version %d already used by %s", e.Name(), n, prev)
		}
		seen[uint32(n)] = e.Name()
		text, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		sql, err := s.render(e.Name(), string(text))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: uint32(n), Name: e.Name(), Statements: SplitStatements(sql)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Bootstrap creates the database and the migrations table. In a cluster all nodes share
// one migrations table: one ZooKeeper path, no {shard}.
func (s Schema) Bootstrap() []string {
	engine := "MergeTree()"
	if s.Cluster != "" {
		engine = fmt.Sprintf("ReplicatedMergeTree('/clickhouse/tables/all/%s/schema_migrations', '{shard}-{replica}')", s.Database)
	}
	return []string{
		fmt.Sprintf("CREATE DATABASE IF NOT EXISTS %s %s", s.Database, s.onCluster()),
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.schema_migrations %s (version UInt32, applied DateTime) ENGINE = %s ORDER BY version",
			s.Database, s.onCluster(), engine),
	}
}

// Render returns the bootstrap and all migrations as one SQL script (statements end with ';' at the end of
// a line), e.g. for an operator to apply by hand or to check with ch-modern-check.
func (s Schema) Render() (string, error) {
	ms, err := s.Migrations()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, st := range s.Bootstrap() {
		b.WriteString(st)
		b.WriteString(";\n\n")
	}
	for _, m := range ms {
		fmt.Fprintf(&b, "-- migration %d: %s\n", m.Version, m.Name)
		for _, st := range m.Statements {
			b.WriteString(st)
			b.WriteString(";\n\n")
		}
		fmt.Fprintf(&b, "INSERT INTO %s.schema_migrations (version, applied) SELECT %d, now();\n\n", s.Database, m.Version)
	}
	return b.String(), nil
}

// In the clustered schema each table is a Replicated*MergeTree named <table>_local on
// every node, behind a Distributed table under the plain name, so queries and inserts use
// the same names either way.
func (s Schema) render(name, text string) (string, error) {
	clustered := s.Cluster != ""
	local := func(t string) string {
		if clustered {
			return s.Database + "." + t + "_local"
		}
		return s.Database + "." + t
	}
	funcs := template.FuncMap{
		"name":  func(t string) string { return s.Database + "." + t },
		"local": local,
		"lc": func() string {
			if s.Features.LowCardinality {
				return "LowCardinality(String)"
			}
			return "String"
		},
		"onCluster": func() string { return s.onCluster() },
		"clustered": func() bool { return clustered },
		"addColumn": func() string {
			if s.Features.AddColumnIfNotExists {
				return "ADD COLUMN IF NOT EXISTS"
			}
			return "ADD COLUMN"
		},
		"engine": func(kind, table, ver string) string {
			if !clustered {
				return kind + "(" + ver + ")"
			}
			args := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s_local', '{replica}'", s.Database, table)
			if ver != "" {
				args += ", " + ver
			}
			return "Replicated" + kind + "(" + args + ")"
		},
		"distributed": func(table, shardKey string) string {
			if !clustered {
				return ""
			}
			return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s %s AS %s\nENGINE = Distributed(%s, %s, %s_local, %s);",
				s.Database, table, s.onCluster(), local(table), s.Cluster, s.Database, table, shardKey)
		},
	}
	t, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("migration %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, nil); err != nil {
		return "", fmt.Errorf("migration %s: %w", name, err)
	}
	return b.String(), nil
}

func (s Schema) onCluster() string {
	if s.Cluster == "" {
		return ""
	}
	return "ON CLUSTER " + s.Cluster
}

// SplitStatements cuts a script at ';' ending a line and drops comment-only lines (the
// convention ch-modern-check uses too).
func SplitStatements(script string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if st := strings.TrimSpace(cur.String()); st != "" {
			out = append(out, st)
		}
		cur.Reset()
	}
	for line := range strings.SplitSeq(script, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") {
			continue
		}
		if strings.HasSuffix(trimmed, ";") {
			cur.WriteString(strings.TrimSuffix(strings.TrimRight(line, " \t\r"), ";"))
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return out
}
