"""The formats clients and vendors speak: SSE framing and error envelopes. No policy."""
