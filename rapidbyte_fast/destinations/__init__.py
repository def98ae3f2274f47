"""Built-in destinations: each loads Arrow record batches (or raw COPY bytes)."""
