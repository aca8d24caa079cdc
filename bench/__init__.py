"""Benchmarks (not tests): `python -m bench [ingest|turns|all]`; see bench/README.md."""
