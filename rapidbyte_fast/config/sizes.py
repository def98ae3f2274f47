"""Sizes in bytes as a person writes them: ``4096``, ``512kb``, ``64MB``, ``1.5gb``, ``8MiB``.

The one parser of sizes: config models type their size fields as ``Size``, and anything
else that takes a size from a user (plugin limits) calls ``parse_size``.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

# The unit letter may stand alone or take "b" / "ib" (64m, 64mb, 64MiB); all are binary.
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])i?)?b?")
_UNITS = {None: 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
SIZE_HINT = "must be a size: bytes, or a number with b, kb, mb, gb or tb (e.g. 512kb, 64mb, 1.5gb)"


def _size_bytes(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(SIZE_HINT)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(SIZE_HINT)
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip().lower())
        if match:
            number, unit = match.groups()
            try:
                return int(Decimal(number) * _UNITS[unit])
            except InvalidOperation:
                pass
    raise ValueError(SIZE_HINT)


def parse_size(value: int | float | str) -> int:
    """Bytes in ``value``: an int, or ``"64mb"``, ``"64m"``, ``"512KB"``, ``"1.5gb"``,
    ``"8MiB"``, ``"100b"``.

    Units are binary (1kb = 1024) and case-insensitive; fractions round down to whole
    bytes. Raises ``ValueError`` for anything else.
    """
    try:
        return _size_bytes(value)
    except ValueError as exc:
        raise ValueError(f"{exc} (got {value!r})") from None


def _at_least_64kb(value: int) -> int:
    if value < 64 << 10:
        raise ValueError("must be at least 64kb")
    return value


#: The least memory budget: a run's and a worker's fixed buffers (memory_budget.py) and a
#: few small batches.
MIN_MEMORY_BUDGET = 48 << 20


def _at_least_48mb(value: int) -> int:
    if value < MIN_MEMORY_BUDGET:
        raise ValueError("must be at least 48mb")
    return value


#: A size field of a config model: validated by the parser above.
Size = Annotated[int, BeforeValidator(_size_bytes)]
#: A bound on the bytes of a batch: smaller than 64kb would cut rows into slivers.
BatchBytes = Annotated[Size, AfterValidator(_at_least_64kb)]
#: A memory budget (resources.max_memory).
MemoryBudget = Annotated[Size, AfterValidator(_at_least_48mb)]
