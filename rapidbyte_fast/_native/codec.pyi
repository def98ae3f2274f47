"""lz4 / zstd frames for inter-stage batches (stub of the compiled ext/codec.pyx).

Frame: magic b"RB" | codec id u8 | level i8 | raw size u32 LE | payload size u32 LE |
crc32(payload) u32 LE | payload. Every failure raises ``rapidbyte_fast.errors.CodecError``
with a one-line message and leaves ``out`` as it was on entry.
"""
from typing_extensions import Buffer

CODECS: dict[str, int]
HEADER_SIZE: int

def compress(codec: str, data: Buffer, out: bytearray, level: int = 0) -> int:
    """Append one frame of ``data`` to ``out``; return bytes appended (0 = codec default level:
    lz4 acceleration 1, zstd level 3; lz4 takes 0..127, zstd -128..22, none only 0)."""

def decompress(frame: Buffer, out: bytearray) -> int:
    """Validate one whole frame (header, sizes, checksum) and append its raw bytes to ``out``;
    return bytes appended."""

def frame_info(frame: Buffer) -> tuple[str, int, int]:
    """(codec name, raw size, payload size), reading only the 16-byte header."""

def context_id(codec: str, level: int = 0) -> int:
    """Address of the calling thread's cached compression context (0 for ``none``)."""

def contexts_created() -> int:
    """Native contexts created by this module so far, all threads."""
