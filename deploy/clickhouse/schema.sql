-- Generated from clickhouse/migrations by `go test ./clickhouse -run Deploy -update`; do not edit.
-- Clustered schema: database fleetmeter, cluster fleetmeter (see README.md).

CREATE DATABASE IF NOT EXISTS fleetmeter ON CLUSTER fleetmeter;

CREATE TABLE IF NOT EXISTS fleetmeter.schema_migrations ON CLUSTER fleetmeter (version UInt32, applied DateTime) ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/fleetmeter/schema_migrations', '{shard}-{replica}') ORDER BY version;

-- migration 1: 0001_rated_usage.sql
CREATE TABLE IF NOT EXISTS fleetmeter.rated_usage_local ON CLUSTER fleetmeter
(
    event_id         String,
    tenant           LowCardinality(String),
    device           String,
    source           LowCardinality(String),
    start_time       DateTime,
    end_time         DateTime,
    received_time    DateTime,
    bytes_up         UInt64,
    bytes_down       UInt64,
    duration_ms      UInt64,
    events           UInt64,
    rating_group     UInt32,
    plmn             LowCardinality(String),
    cell             String,
    lat              Nullable(Float64),
    lon              Nullable(Float64),
    rat              LowCardinality(String),
    slice_sst        Nullable(UInt8),
    slice_sd         LowCardinality(String),
    record_id        String,
    charge           LowCardinality(String),
    zone             LowCardinality(String),
    mobility         LowCardinality(String),
    tariff           LowCardinality(String),
    tariff_version   LowCardinality(String),
    offer            LowCardinality(String),
    active_devices   UInt64,
    currency         LowCardinality(String),
    amount_micros    Int64,
    amount           Decimal(18, 6) DEFAULT toDecimal64(amount_micros, 0) * toDecimal64('0.000001', 6),
    rated_time       DateTime,
    start_time_ms    UInt64,
    end_time_ms      UInt64,
    received_time_ms UInt64,
    rated_time_ms    UInt64,
    keep_first       UInt64 DEFAULT bitNot(rated_time_ms)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/fleetmeter/rated_usage_local', '{replica}', keep_first)
PARTITION BY toYYYYMM(start_time)
ORDER BY (tenant, record_id);

CREATE TABLE IF NOT EXISTS fleetmeter.rated_usage ON CLUSTER fleetmeter AS fleetmeter.rated_usage_local
ENGINE = Distributed(fleetmeter, fleetmeter, rated_usage_local, cityHash64(tenant, record_id));

INSERT INTO fleetmeter.schema_migrations (version, applied) SELECT 1, now();

-- migration 2: 0002_rejected_usage.sql
CREATE TABLE IF NOT EXISTS fleetmeter.rejected_usage_local ON CLUSTER fleetmeter
(
    source           LowCardinality(String),
    tenant           LowCardinality(String),
    device           String,
    reason           LowCardinality(String),
    detail           String,
    raw              String,
    received_time    DateTime,
    received_time_ms UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/fleetmeter/rejected_usage_local', '{replica}')
PARTITION BY toYYYYMM(received_time)
ORDER BY (tenant, reason, received_time, received_time_ms, source, device, cityHash64(raw));

CREATE TABLE IF NOT EXISTS fleetmeter.rejected_usage ON CLUSTER fleetmeter AS fleetmeter.rejected_usage_local
ENGINE = Distributed(fleetmeter, fleetmeter, rejected_usage_local, cityHash64(tenant, device));

INSERT INTO fleetmeter.schema_migrations (version, applied) SELECT 2, now();

-- migration 3: 0003_rollups.sql
CREATE TABLE IF NOT EXISTS fleetmeter.rated_daily_device_local ON CLUSTER fleetmeter
(
    tenant      LowCardinality(String),
    day         Date,
    zone        LowCardinality(String),
    mobility    LowCardinality(String),
    device      String,
    charge      LowCardinality(String),
    currency    LowCardinality(String),
    records     UInt64,
    bytes_up    UInt64,
    bytes_down  UInt64,
    duration_ms UInt64,
    events      UInt64,
    amount      Decimal(18, 6)
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/fleetmeter/rated_daily_device_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, day, zone, mobility, device, charge, currency);

CREATE TABLE IF NOT EXISTS fleetmeter.rated_daily_device ON CLUSTER fleetmeter AS fleetmeter.rated_daily_device_local
ENGINE = Distributed(fleetmeter, fleetmeter, rated_daily_device_local, cityHash64(tenant, device));

CREATE MATERIALIZED VIEW IF NOT EXISTS fleetmeter.rated_daily_device_mv ON CLUSTER fleetmeter
TO fleetmeter.rated_daily_device_local
AS SELECT
    tenant,
    toDate(start_time) AS day,
    zone,
    mobility,
    device,
    charge,
    currency,
    count() AS records,
    sum(bytes_up) AS bytes_up,
    sum(bytes_down) AS bytes_down,
    sum(duration_ms) AS duration_ms,
    sum(events) AS events,
    toDecimal64(sum(amount), 6) AS amount
FROM fleetmeter.rated_usage_local
GROUP BY tenant, day, zone, mobility, device, charge, currency;

CREATE TABLE IF NOT EXISTS fleetmeter.rated_daily_tenant_local ON CLUSTER fleetmeter
(
    tenant      LowCardinality(String),
    day         Date,
    zone        LowCardinality(String),
    mobility    LowCardinality(String),
    charge      LowCardinality(String),
    currency    LowCardinality(String),
    records     UInt64,
    bytes_up    UInt64,
    bytes_down  UInt64,
    duration_ms UInt64,
    events      UInt64,
    amount      Decimal(18, 6)
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/fleetmeter/rated_daily_tenant_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, day, zone, mobility, charge, currency);

CREATE TABLE IF NOT EXISTS fleetmeter.rated_daily_tenant ON CLUSTER fleetmeter AS fleetmeter.rated_daily_tenant_local
ENGINE = Distributed(fleetmeter, fleetmeter, rated_daily_tenant_local, cityHash64(tenant));

CREATE MATERIALIZED VIEW IF NOT EXISTS fleetmeter.rated_daily_tenant_mv ON CLUSTER fleetmeter
TO fleetmeter.rated_daily_tenant_local
AS SELECT
    tenant,
    toDate(start_time) AS day,
    zone,
    mobility,
    charge,
    currency,
    count() AS records,
    sum(bytes_up) AS bytes_up,
    sum(bytes_down) AS bytes_down,
    sum(duration_ms) AS duration_ms,
    sum(events) AS events,
    toDecimal64(sum(amount), 6) AS amount
FROM fleetmeter.rated_usage_local
GROUP BY tenant, day, zone, mobility, charge, currency;

INSERT INTO fleetmeter.schema_migrations (version, applied) SELECT 3, now();

-- migration 4: 0004_rejected_raw.sql
ALTER TABLE fleetmeter.rejected_usage_local ON CLUSTER fleetmeter ADD COLUMN IF NOT EXISTS raw_len UInt64 DEFAULT length(raw) AFTER raw;

ALTER TABLE fleetmeter.rejected_usage_local ON CLUSTER fleetmeter ADD COLUMN IF NOT EXISTS raw_sha256 String DEFAULT '' AFTER raw_len;

ALTER TABLE fleetmeter.rejected_usage ON CLUSTER fleetmeter ADD COLUMN IF NOT EXISTS raw_len UInt64 DEFAULT length(raw) AFTER raw;

ALTER TABLE fleetmeter.rejected_usage ON CLUSTER fleetmeter ADD COLUMN IF NOT EXISTS raw_sha256 String DEFAULT '' AFTER raw_len;

INSERT INTO fleetmeter.schema_migrations (version, applied) SELECT 4, now();

-- migration 5: 0005_billing.sql
CREATE TABLE IF NOT EXISTS fleetmeter.rated_seen_local ON CLUSTER fleetmeter
(
    tenant        String,
    record_id     String,
    charge        String,
    period        String,
    start_time_ms UInt64,
    seen          DateTime,
    keep          UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/fleetmeter/rated_seen_local', '{replica}', keep)
PARTITION BY tuple()
ORDER BY (tenant, record_id);

CREATE TABLE IF NOT EXISTS fleetmeter.rated_seen ON CLUSTER fleetmeter AS fleetmeter.rated_seen_local
ENGINE = Distributed(fleetmeter, fleetmeter, rated_seen_local, cityHash64(tenant, record_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS fleetmeter.rated_seen_mv ON CLUSTER fleetmeter
TO fleetmeter.rated_seen_local
AS SELECT
    tenant,
    record_id,
    charge,
    if(charge IN ('device_fee', 'adjustment'), substring(record_id, length(record_id) - 6, 7), '') AS period,
    start_time_ms,
    now() AS seen,
    toUInt64(4294967295 - toUInt32(now())) AS keep
FROM fleetmeter.rated_usage_local;

CREATE TABLE IF NOT EXISTS fleetmeter.billing_documents_local ON CLUSTER fleetmeter
(
    tenant       String,
    period       String,
    seq          UInt32,
    number       String,
    watermark    DateTime,
    finalized_ms UInt64,
    body         String,
    keep         UInt64 DEFAULT bitNot(finalized_ms)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/fleetmeter/billing_documents_local', '{replica}', keep)
PARTITION BY tuple()
ORDER BY (tenant, period, seq);

CREATE TABLE IF NOT EXISTS fleetmeter.billing_documents ON CLUSTER fleetmeter AS fleetmeter.billing_documents_local
ENGINE = Distributed(fleetmeter, fleetmeter, billing_documents_local, cityHash64(tenant));

INSERT INTO fleetmeter.schema_migrations (version, applied) SELECT 5, now();

