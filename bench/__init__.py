"""Benchmarks: kernels (`python -m bench.micro`) and whole pipelines (`python -m bench`)."""
