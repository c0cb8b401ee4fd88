package clickhouse_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"fleetmeter/clickhouse"
	"fleetmeter/internal/chserver"
	"fleetmeter/internal/chserver/chtest"
)

// One server for the whole test binary; each test gets its own database.
var srv *chserver.Server

func TestMain(m *testing.M) { os.Exit(chtest.RunMain(m, &srv)) }

var dbSeq atomic.Int64

func testConfig(t testing.TB) clickhouse.Config {
	cfg := clickhouse.DefaultConfig()
	cfg.Addr = []string{srv.NativeAddr()}
	cfg.Database = fmt.Sprintf("test_%d_%d", os.Getpid(), dbSeq.Add(1))
	cfg.QueryThreads = 2
	return cfg
}

func openStore(t testing.TB) *clickhouse.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := clickhouse.Open(ctx, testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
