"""Built-in sources: each yields Arrow record batches for a stream."""
