"""Thin HTTP handlers served as raw ASGI on the hot path."""
