-- rated_usage holds every rated record under the field names of the rated record
-- (docs/design.md). The store renders these files per server version and for a single node
-- or a cluster (schema.go).
--
-- Times: DateTime64 does not exist on 18.16, so each time is two columns. start_time,
-- end_time, received_time and rated_time are DateTime (seconds, UTC) for people and for
-- partitioning; start_time_ms etc. hold the exact epoch milliseconds (UInt64 because the
-- ReplacingMergeTree version column must be unsigned on 18.16; times before 1970 clamp
-- to 0). Programs read the _ms columns.
--
-- Money: amount_micros (Int64) is what the loader writes: clickhouse-go converts
-- Decimal through math/big per row, several allocations each, while an Int64 column is
-- appended as is. amount Decimal(18,6) is computed from it by the server on insert
-- (DEFAULT, so SELECT * shows it); the product Decimal(18,0) x Decimal(18,6) keeps the
-- micro-units exact and cannot overflow Int64 inputs.
--
-- Duplicates: delivery into ClickHouse is at least once (a retried INSERT may have landed
-- the first time), and a device may resend a record the rater already priced. A record
-- is priced once: of several copies of a record_id, the first rating stands. The sorting
-- key is the record's identity (tenant, record_id), so merges collapse copies, keeping
-- the highest version keep_first = bitNot(rated_time_ms), i.e. the earliest rating
-- (copies rated at the same instant come from the same state and are identical). Merges
-- are eventual: billing reads collapse duplicates in the query the same way (GROUP BY
-- record_id, argMin by rated_time_ms; see query.go).
-- A record's duplicates share start_time, so they share a partition and do collapse.
CREATE TABLE IF NOT EXISTS {{local "rated_usage"}} {{onCluster}}
(
    event_id         String,
    tenant           {{lc}},
    device           String,
    source           {{lc}},
    start_time       DateTime,
    end_time         DateTime,
    received_time    DateTime,
    bytes_up         UInt64,
    bytes_down       UInt64,
    duration_ms      UInt64,
    events           UInt64,
    rating_group     UInt32,
    plmn             {{lc}},
    cell             String,
    lat              Nullable(Float64),
    lon              Nullable(Float64),
    rat              {{lc}},
    slice_sst        Nullable(UInt8),
    slice_sd         {{lc}},
    record_id        String,
    charge           {{lc}},
    zone             {{lc}},
    mobility         {{lc}},
    tariff           {{lc}},
    tariff_version   {{lc}},
    offer            {{lc}},
    active_devices   UInt64,
    currency         {{lc}},
    amount_micros    Int64,
    amount           Decimal(18, 6) DEFAULT toDecimal64(amount_micros, 0) * toDecimal64('0.000001', 6),
    rated_time       DateTime,
    start_time_ms    UInt64,
    end_time_ms      UInt64,
    received_time_ms UInt64,
    rated_time_ms    UInt64,
    keep_first       UInt64 DEFAULT bitNot(rated_time_ms)
)
ENGINE = {{engine "ReplacingMergeTree" "rated_usage" "keep_first"}}
PARTITION BY toYYYYMM(start_time)
ORDER BY (tenant, record_id);
{{distributed "rated_usage" "cityHash64(tenant, record_id)"}}
