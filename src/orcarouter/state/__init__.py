"""Shared state held in memory: snapshots of stored tables, refreshed in the background."""
