-- A rejection keeps at most the first 64 KiB of its raw input (a refused 1.5 MB body
-- must still fit a Kafka message); raw_len and raw_sha256 describe the whole input, so an
-- operator can tell a prefix from the whole and match it against the sender's copy.
-- Rows written before this migration read raw_len = length(raw) and an empty raw_sha256.
ALTER TABLE {{local "rejected_usage"}} {{onCluster}} {{addColumn}} raw_len UInt64 DEFAULT length(raw) AFTER raw;
ALTER TABLE {{local "rejected_usage"}} {{onCluster}} {{addColumn}} raw_sha256 String DEFAULT '' AFTER raw_len;
{{if clustered}}ALTER TABLE {{name "rejected_usage"}} {{onCluster}} {{addColumn}} raw_len UInt64 DEFAULT length(raw) AFTER raw;
ALTER TABLE {{name "rejected_usage"}} {{onCluster}} {{addColumn}} raw_sha256 String DEFAULT '' AFTER raw_len;{{end}}
