"""One module per server: connection, timeouts, breaker and retry; nothing about pages."""
