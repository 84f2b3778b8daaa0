"""revtrace collector: OTLP in, ClickHouse out; owner of the schema and the store client."""
