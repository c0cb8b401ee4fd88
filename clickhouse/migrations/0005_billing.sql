-- Billing (billing/, docs/billing.md): when each rated record was first stored, and the
-- invoices once final.
--
-- rated_seen: one row per stored copy of a rated record, written by the server itself
-- (a view on rated_usage, so the loader does not change) with seen = now() at insert.
-- ClickHouse has no commit sequence; a record's first seen time is what orders the
-- billing export. It is stable: later copies only add later rows, and merges keep the
-- earliest (version keep = 2^32-1 - seen; a copy inserted in the same second is equal).
-- rated_usage itself cannot carry it: merges there keep the last inserted of equal
-- versions, so a redelivered copy would replace the first one's time.
-- The view runs after the block is written to rated_usage, in the same INSERT: a row here
-- means its record is stored; an INSERT that fails after the table write is retried by
-- the loader, and the retry's row counts (the record is then exported once, at its
-- retry). period is YYYY-MM for device_fee and adjustment records (the end of record_id).
CREATE TABLE IF NOT EXISTS {{local "rated_seen"}} {{onCluster}}
(
    tenant        String,
    record_id     String,
    charge        String,
    period        String,
    start_time_ms UInt64,
    seen          DateTime,
    keep          UInt64
)
ENGINE = {{engine "ReplacingMergeTree" "rated_seen" "keep"}}
PARTITION BY tuple()
ORDER BY (tenant, record_id);
{{distributed "rated_seen" "cityHash64(tenant, record_id)"}}
CREATE MATERIALIZED VIEW IF NOT EXISTS {{name "rated_seen_mv"}} {{onCluster}}
TO {{local "rated_seen"}}
AS SELECT
    tenant,
    record_id,
    charge,
    if(charge IN ('device_fee', 'adjustment'), substring(record_id, length(record_id) - 6, 7), '') AS period,
    start_time_ms,
    now() AS seen,
    toUInt64(4294967295 - toUInt32(now())) AS keep
FROM {{local "rated_usage"}};
-- Records stored before this migration were first seen at the epoch: a consumer starting
-- at the empty cursor gets them first. (A cluster back-fills each shard by hand, with this
-- statement on every node.)
{{if not clustered}}INSERT INTO {{local "rated_seen"}} SELECT tenant, record_id, charge, if(charge IN ('device_fee', 'adjustment'), substring(record_id, length(record_id) - 6, 7), ''), start_time_ms, toDateTime(0), toUInt64(4294967295) FROM {{local "rated_usage"}};{{end}}
-- billing_documents: a final invoice or correction note, stored as rendered so it never
-- changes. seq 0 is the period's invoice, 1.. its correction notes; each covers the
-- records of its period first seen in (previous document's watermark, watermark].
CREATE TABLE IF NOT EXISTS {{local "billing_documents"}} {{onCluster}}
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
ENGINE = {{engine "ReplacingMergeTree" "billing_documents" "keep"}}
PARTITION BY tuple()
ORDER BY (tenant, period, seq);
{{distributed "billing_documents" "cityHash64(tenant)"}}
