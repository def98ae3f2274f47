"""Where rapidbyte-fast keeps its files: the user data dir, or ``RAPIDBYTE_DATA_DIR``."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    """Root of embedded servers, the sqlite state database and plugins."""
    override = os.environ.get("RAPIDBYTE_DATA_DIR")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("rapidbyte-fast"))
