-- Daily rollups fed by materialized views on rated_usage: per tenant, day, zone,
-- mobility and device (rated_daily_device), and the same without device
-- (rated_daily_tenant) for fleet-wide dashboards. charge and currency are part of the key
-- because adding fees to usage, or euros to dollars, means nothing.
--
-- Duplicates: a view sees every inserted block, including an INSERT retried after it had
-- landed, and SummingMergeTree adds what it sees. So a rollup counts redelivered records
-- again: it is for analytics, where a crash-time retry is noise. Billing never reads it;
-- billing reads rated_usage with duplicates collapsed (query.go). `records` next to
-- rated_usage's deduplicated count shows whether a day holds duplicates.
-- Rows of one key collapse only on merge: reads GROUP BY the key and sum (query.go).
CREATE TABLE IF NOT EXISTS {{local "rated_daily_device"}} {{onCluster}}
(
    tenant      {{lc}},
    day         Date,
    zone        {{lc}},
    mobility    {{lc}},
    device      String,
    charge      {{lc}},
    currency    {{lc}},
    records     UInt64,
    bytes_up    UInt64,
    bytes_down  UInt64,
    duration_ms UInt64,
    events      UInt64,
    amount      Decimal(18, 6)
)
ENGINE = {{engine "SummingMergeTree" "rated_daily_device" ""}}
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, day, zone, mobility, device, charge, currency);
{{distributed "rated_daily_device" "cityHash64(tenant, device)"}}
-- sum(Decimal(18,6)) is Decimal(38,6): cast back to the column type.
CREATE MATERIALIZED VIEW IF NOT EXISTS {{name "rated_daily_device_mv"}} {{onCluster}}
TO {{local "rated_daily_device"}}
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
FROM {{local "rated_usage"}}
GROUP BY tenant, day, zone, mobility, device, charge, currency;
CREATE TABLE IF NOT EXISTS {{local "rated_daily_tenant"}} {{onCluster}}
(
    tenant      {{lc}},
    day         Date,
    zone        {{lc}},
    mobility    {{lc}},
    charge      {{lc}},
    currency    {{lc}},
    records     UInt64,
    bytes_up    UInt64,
    bytes_down  UInt64,
    duration_ms UInt64,
    events      UInt64,
    amount      Decimal(18, 6)
)
ENGINE = {{engine "SummingMergeTree" "rated_daily_tenant" ""}}
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, day, zone, mobility, charge, currency);
{{distributed "rated_daily_tenant" "cityHash64(tenant)"}}
-- Fed from rated_usage, not from the device rollup: 18.16 does not cascade a view into
-- the views of its TO table.
CREATE MATERIALIZED VIEW IF NOT EXISTS {{name "rated_daily_tenant_mv"}} {{onCluster}}
TO {{local "rated_daily_tenant"}}
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
FROM {{local "rated_usage"}}
GROUP BY tenant, day, zone, mobility, charge, currency;
