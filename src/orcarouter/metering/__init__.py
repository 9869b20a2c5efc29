"""Usage records and the batched writer that stores them off the hot path."""
