"""Pure-Python twins of the compiled kernels: identical output, no compiler needed."""
