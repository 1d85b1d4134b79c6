"""Latency lookup tables: schema, versioned storage, lookup and estimation."""
