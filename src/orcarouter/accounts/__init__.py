"""Workspaces and API keys: hashing, issuing and the in-memory verification cache."""
