package chserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// The config keeps to keys ClickHouse 18.16 knows (no max_server_memory_usage, no
// <clickhouse> root: current servers still read <yandex>). Caches are small because this
// server shares a laptop or a CI box; timezone is UTC so DateTime text is UTC.
var configTmpl = template.Must(template.New("config").Parse(`<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>{{.Dir}}/logs/clickhouse-server.log</log>
        <errorlog>{{.Dir}}/logs/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{{.TCP}}</tcp_port>
    <http_port>{{.HTTP}}</http_port>
    <interserver_http_port>{{.Interserver}}</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <path>{{.Dir}}/data/</path>
    <tmp_path>{{.Dir}}/tmp/</tmp_path>
    <user_files_path>{{.Dir}}/user_files/</user_files_path>
    <format_schema_path>{{.Dir}}/format_schemas/</format_schema_path>
    <users_config>{{.Dir}}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_connections>1024</max_connections>
    <max_concurrent_queries>100</max_concurrent_queries>
    <keep_alive_timeout>3</keep_alive_timeout>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
</yandex>
`))

// usersTmpl has one user, default; with a password, only its SHA-256 is written.
var usersTmpl = template.Must(template.New("users").Parse(`<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            {{if .}}<password_sha256_hex>{{.}}</password_sha256_hex>{{else}}<password></password>{{end}}
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`))

func writeConfig(dir, password string, tcp, http, interserver int) error {
	var b bytes.Buffer
	err := configTmpl.Execute(&b, struct {
		Dir                    string
		TCP, HTTP, Interserver int
	}{dir, tcp, http, interserver})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), b.Bytes(), 0o600); err != nil {
		return err
	}
	hash := ""
	if password != "" {
		sum := sha256.Sum256([]byte(password))
		hash = hex.EncodeToString(sum[:])
	}
	b.Reset()
	if err := usersTmpl.Execute(&b, hash); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "users.xml"), b.Bytes(), 0o600)
}

func ping(ctx context.Context, addr, password string) error {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Username: "default", Password: password},
		DialTimeout: time.Second,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return conn.Ping(ctx)
}

// logTail returns the last lines of the server's error log and captured stdout/stderr.
func (s *Server) logTail() string {
	var b strings.Builder
	for _, name := range []string{"clickhouse-server.err.log", "stdout.log"} {
		data, err := os.ReadFile(filepath.Join(s.dir, "logs", name))
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		b.WriteString("== " + name + " ==\n")
		b.WriteString(strings.Join(lines, "\n"))
		b.WriteString("\n")
	}
	if b.Len() == 0 {
		return "(no log output)"
	}
	return b.String()
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
