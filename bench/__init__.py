"""Benchmarks. Each module writes a report under bench/reports/ with the command
that produced it; `make bench` runs them all."""
