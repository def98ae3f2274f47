"""Compiled (Cython) kernels built from ext/, with .pyi stubs."""
