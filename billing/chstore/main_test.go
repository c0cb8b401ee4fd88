package chstore_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"fleetmeter/billing"
	"fleetmeter/billing/chstore"
	"fleetmeter/clickhouse"
	"fleetmeter/internal/chserver"
	"fleetmeter/internal/chserver/chtest"
	"fleetmeter/record"
)

// One real ClickHouse for the test binary; each test gets its own database.
var srv *chserver.Server

func TestMain(m *testing.M) { os.Exit(chtest.RunMain(m, &srv)) }

var dbSeq atomic.Int64

func open(t testing.TB) (*clickhouse.Store, *chstore.Store) {
	t.Helper()
	cfg := clickhouse.DefaultConfig()
	cfg.Addr = []string{srv.NativeAddr()}
	cfg.Database = fmt.Sprintf("billing_%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, chstore.New(st.Conn(), cfg.Database)
}

var testKey = []byte("0123456789abcdef0123456789abcdef-test")

func signer(t testing.TB) *billing.Signer {
	s, err := billing.NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// usage returns a usage record of tenant's device in period (YYYY-MM), day d.
func usage(tenant, device, id, period string, day int, bytes uint64, amount record.Micros, rated int64) record.Rated {
	start, _ := time.Parse("2006-01-02", fmt.Sprintf("%s-%02d", period, day))
	ms := start.UnixMilli() + int64(len(id))*1000
	return record.Rated{
		Usage: record.Usage{EventID: id, Tenant: tenant, Device: device, Source: "mqtt", StartTime: ms, EndTime: ms,
			ReceivedTime: ms, BytesUp: bytes, BytesDown: bytes / 2, PLMN: "262-01"},
		RecordID: id, Charge: record.ChargeUsage, Zone: "home", Mobility: "stationary", Tariff: "t1",
		TariffVersion: "1", Currency: "EUR", Amount: amount, RatedTime: rated,
	}
}

func fee(tenant, device, period string, amount record.Micros, rated int64) record.Rated {
	start, _ := time.Parse("2006-01", period)
	id := "fee:" + tenant + ":" + device + ":" + period
	return record.Rated{
		Usage:    record.Usage{EventID: id, Tenant: tenant, Device: device, StartTime: start.UnixMilli(), EndTime: start.AddDate(0, 1, 0).UnixMilli()},
		RecordID: id, Charge: record.ChargeDeviceFee, Tariff: "t1", TariffVersion: "1", Currency: "EUR", Amount: amount, RatedTime: rated,
	}
}

func adj(tenant, period string, amount record.Micros, rated int64) record.Rated {
	start, _ := time.Parse("2006-01", period)
	id := "adj:" + tenant + ":" + period
	return record.Rated{
		Usage:    record.Usage{EventID: id, Tenant: tenant, StartTime: start.UnixMilli(), EndTime: start.AddDate(0, 1, 0).UnixMilli()},
		RecordID: id, Charge: record.ChargeAdjustment, Tariff: "t1", TariffVersion: "1", Currency: "EUR", Amount: amount, RatedTime: rated,
	}
}
