"""Benchmarks and the load run (`make bench`, `make load`). Not part of the product; see docs/benchmarks.md."""
