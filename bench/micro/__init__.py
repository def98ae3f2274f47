"""Kernel micro-benchmarks: ``python -m bench.micro [--rows N] [--json PATH] [--only K]``."""
