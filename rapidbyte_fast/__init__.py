"""rapidbyte-fast: move tables between databases as Arrow record batches, at wire speed."""
from __future__ import annotations

__version__ = "0.1.0"
