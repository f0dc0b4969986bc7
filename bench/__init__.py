"""Benchmark harness of the gateway: run it with `bash bench/run` (see bench/README.md)."""
