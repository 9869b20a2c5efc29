"""Logs with redaction; metrics and traces join here later."""
