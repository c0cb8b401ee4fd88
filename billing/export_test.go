package billing

// SetBatchRows sets the most rows per batch of an Arrow or Parquet writer (tests: a page of
// several batches and row groups without millions of rows).
func SetBatchRows(w RecordWriter, n int) { w.(*arrowWriter).rows = n }
