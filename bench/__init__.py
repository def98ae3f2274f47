"""Benchmarks: kernels (`python -m bench.micro`) and, later, whole pipelines."""
