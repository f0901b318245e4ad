"""Benchmarks: ka-kemi against the C keepalive module (see docs/benchmarks.md)."""
