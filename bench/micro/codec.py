"""Micro-benchmark of the codec kernel: lz4 / zstd frames of Arrow IPC record batches.

The table (bench_events-like narrow rows, plus a ~20-column wide shape) is serialized as one
IPC record batch per frame at 64 KB, 256 KB and 1 MB, and every frame of the table is
compressed (or decompressed) per timed call, so the data is far larger than L2. Baselines are
what code without cached contexts would do: ``zstandard.ZstdCompressor(level=3).compress``
(and a fresh ``ZstdDecompressor``) per frame, and ``lz4.block`` per frame.
"""
from __future__ import annotations

import decimal
from typing import Callable

import lz4.block
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zstandard

from rapidbyte_fast._impl import twins

from .harness import measure

FRAME_SIZES = {"64k": 64 << 10, "256k": 256 << 10, "1m": 1 << 20}
_EPOCH_2024_US = 1_704_067_200_000_000


def _cycle(values: list[str], idx: np.ndarray) -> pa.Array:
    return pc.take(pa.array(values), pa.array(idx))


def narrow_batch(rows: int) -> pa.RecordBatch:
    """The bench_events rows of shared/DATASETS.md: i = 1..rows."""
    i = np.arange(1, rows + 1, dtype=np.int64)
    return pa.record_batch({
        "id": pa.array(i.astype(np.int32)),
        "event_type": _cycle(["click", "purchase", "view", "signup", "logout"], i % 5),
        "user_id": pa.array((i % 1000 + 1).astype(np.int32)),
        "amount": pa.array((7 * i % 10000).astype(np.int32)),
        "is_active": pa.array(i % 3 != 0),
        "payload": pa.array([f"payload-{k}-" + "x" * 50 for k in range(1, rows + 1)]),
        "created_at": pa.array(_EPOCH_2024_US - (37 * i % 86400) * 1_000_000,
                               pa.timestamp("us")),
    })


def wide_batch(rows: int) -> pa.RecordBatch:
    """About 20 mixed columns (numeric, uuid, timestamptz, float8, int8, bytea, text, ...)."""
    i = np.arange(1, rows + 1, dtype=np.int64)
    rng = np.random.default_rng(7)
    null_every_7 = i % 7 == 0
    # uuids derived from i (not random), as in shared/DATASETS.md
    uuids = np.stack([i.astype(">u8"), (i * 2654435761).astype(">u8")], axis=1).tobytes()
    blob_offsets = np.arange(0, 24 * (rows + 1), 24, dtype=np.int32).tobytes()
    amounts = [decimal.Decimal(int(v)).scaleb(-6) for v in rng.integers(-10**12, 10**12, rows)]
    return pa.record_batch({
        "id": pa.array(i),
        "event_id": pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(16), rows, [None, pa.py_buffer(uuids)]),
        "created_at": pa.array(_EPOCH_2024_US - (37 * i % 86400) * 1_000_000,
                               pa.timestamp("us", "UTC")),
        "updated_at": pa.array(_EPOCH_2024_US + i * 1_000_003, pa.timestamp("us", "UTC")),
        "day": pa.array((19_000 + i % 700).astype(np.int32), pa.date32()),
        "price": pa.array(rng.random(rows) * 1000),
        "ratio": pa.array(rng.random(rows).astype(np.float32)),
        "amount": pa.array(amounts, pa.decimal128(18, 6)),
        "user_id": pa.array(i % 100_000 + 1),
        "session_id": pa.array(31 * i % 500_000, mask=null_every_7),
        "duration_ms": pa.array((7 * i % 30_000).astype(np.int32)),
        "status": pa.array((i % 5).astype(np.int16)),
        "is_converted": pa.array(i % 5 == 0),
        "country": _cycle(["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA"], i % 8),
        "device": _cycle(["mobile", "desktop", "tablet"], i % 3),
        "page_url": pa.array([f"/section-{k % 12}/page-{k % 500}" for k in range(rows)]),
        "referrer": pa.array([f"https://ref-{k % 50}.example.com/c/{k % 200}"
                              if k % 10 < 6 else None for k in range(rows)]),
        "user_agent": _cycle([f"Mozilla/5.0 (X11; Linux) Agent/{v}" for v in range(40)],
                             i % 40),
        "blob": pa.Array.from_buffers(pa.binary(), rows, [
            None, pa.py_buffer(blob_offsets), pa.py_buffer(rng.bytes(24 * rows))]),
        "note": pa.array([None if k % 4 else f"note {k} on 2024-01-01" for k in range(rows)]),
    })


def frames_of(batch: pa.RecordBatch, frame_bytes: int) -> list[pa.Buffer]:
    """The batch cut into IPC-serialized record batches of about ``frame_bytes`` each."""
    per_row = batch.slice(0, 2000).serialize().size / min(batch.num_rows, 2000)
    step = max(1, int(frame_bytes / per_row))
    return [batch.slice(k, step).serialize() for k in range(0, batch.num_rows, step)]


def _cases(name: str, codec, frames: list[pa.Buffer]) -> dict[str, tuple]:
    """impl -> (compress fn, decompress fn) over every frame."""

    def ours(mod) -> tuple:
        encoded: list[bytes] = []
        for f in frames:
            out = bytearray()
            mod.compress(name, f, out)
            encoded.append(bytes(out))

        # One fresh bytearray per frame, as each frame travels alone through a queue (and
        # like the baselines, which return a new bytes object per frame).
        def comp() -> None:
            for f in frames:
                mod.compress(name, f, bytearray())

        def decomp() -> None:
            for e in encoded:
                mod.decompress(e, bytearray())

        return comp, decomp

    impls = {impl: ours(mod) for impl, mod in codec.items()}
    sizes = [f.size for f in frames]
    if name == "zstd":
        payloads = [zstandard.ZstdCompressor(level=3).compress(f) for f in frames]
        impls["baseline:zstd-oneshot"] = (
            lambda: [zstandard.ZstdCompressor(level=3).compress(f) for f in frames],
            lambda: [zstandard.ZstdDecompressor().decompress(p) for p in payloads],
        )
    else:
        payloads = [lz4.block.compress(f, store_size=False) for f in frames]
        impls["baseline:lz4-block"] = (
            lambda: [lz4.block.compress(f, store_size=False) for f in frames],
            lambda: [lz4.block.decompress(p, uncompressed_size=n)
                     for p, n in zip(payloads, sizes)],
        )
    return impls


def run(rows: int) -> list[dict]:
    """zstd and lz4, compress and decompress, per frame size and shape, c / python / baseline."""
    codec = twins("codec")
    shapes: list[tuple[str, pa.RecordBatch, dict[str, int]]] = [
        ("narrow", narrow_batch(rows), FRAME_SIZES),
        ("wide", wide_batch(max(1, rows // 8)), {"256k": FRAME_SIZES["256k"]}),
    ]
    results = []
    for shape, batch, sizes in shapes:
        for label, frame_bytes in sizes.items():
            frames = frames_of(batch, frame_bytes)
            nbytes = sum(f.size for f in frames)
            for name in ("zstd", "lz4"):
                for impl, (comp, decomp) in _cases(name, codec, frames).items():
                    op_fns: tuple[tuple[str, Callable[[], object]], ...] = (
                        ("compress", comp), ("decompress", decomp))
                    for op, fn in op_fns:
                        case = f"{name}-{op}-{label}-{shape}"
                        results.append(measure("codec", case, impl, fn, batch.num_rows, nbytes))
    return results
