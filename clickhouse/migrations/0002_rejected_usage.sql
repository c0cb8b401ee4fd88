-- rejected_usage keeps every refused input with its reason and the raw bytes. A rejection
-- redelivered from topic rejected is the same object (same time, same raw bytes), so the
-- sorting key covers all of it and merges collapse redeliveries; rejections are for
-- diagnosis, so no read here needs exact counts.
CREATE TABLE IF NOT EXISTS {{local "rejected_usage"}} {{onCluster}}
(
    source           {{lc}},
    tenant           {{lc}},
    device           String,
    reason           {{lc}},
    detail           String,
    raw              String,
    received_time    DateTime,
    received_time_ms UInt64
)
ENGINE = {{engine "ReplacingMergeTree" "rejected_usage" ""}}
PARTITION BY toYYYYMM(received_time)
ORDER BY (tenant, reason, received_time, received_time_ms, source, device, cityHash64(raw));
{{distributed "rejected_usage" "cityHash64(tenant, device)"}}
