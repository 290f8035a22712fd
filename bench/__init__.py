"""Benchmarks and fault-injection suites that are too heavy for the default test run (`python -m bench.<name>`)."""
