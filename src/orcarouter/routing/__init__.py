"""Model resolution: which provider and upstream model serve a requested model id."""
