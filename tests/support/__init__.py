"""Test helpers: recordings, the replay upstream and the gateway process."""
