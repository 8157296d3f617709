"""Byte-level mutations, generic and format-aware. Each takes the valid bytes and a seeded
random.Random and returns (name, damaged bytes); the name says what was done, for the report.

Generic damage (truncation, bit flips, byte runs, inserted or deleted chunks, a wrong magic, an
empty file) finds crashes in any reader. Format-aware damage sets the header fields that size
allocations (dimensions, lengths, offsets) to 0, -1, 2^31 and friends while keeping the rest
valid (PNG chunk CRCs are recomputed), so the reader gets past its first sanity check.
"""

from __future__ import annotations

import json
import random
import re
import struct
import zlib
from collections.abc import Callable

Mutator = Callable[[bytes, random.Random], tuple[str, bytes]]
# Values that break size arithmetic: zero, -1 in two's complement, the int32 edge, all ones.
SPECIAL_U32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x10000, 28, 785)
SPECIAL_U16 = (0, 1, 0x7FFF, 0x8000, 0xFFFF)
SPECIAL_U64 = (0, 1, 2**31, 2**32, 2**63 - 1, 2**64 - 1)
RUN_BYTES = (0x00, 0xFF, 0x7F, 0x80, 0x20)


# --- generic damage -------------------------------------------------------------------------


def truncate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    # Short prefixes (headers cut) are the interesting ones: half the cuts land in the first 64 bytes.
    cut = rng.randrange(min(len(data), 64) + 1) if rng.random() < 0.5 else rng.randrange(len(data) + 1)
    return f"truncate to {cut} bytes", data[:cut]


def empty(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    return "empty file", b""


def bit_flips(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    if not data:
        return "bit flips (nothing to flip)", data
    out = bytearray(data)
    count = rng.choice((1, 1, 2, 4, 16))
    # Headers decide the most: half the flips land in the first 256 bytes.
    for _ in range(count):
        index = rng.randrange(min(len(out), 256)) if rng.random() < 0.5 else rng.randrange(len(out))
        out[index] ^= 1 << rng.randrange(8)
    return f"{count} bit flip(s)", bytes(out)


def byte_run(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    if not data:
        return "byte run (nothing to overwrite)", data
    start = rng.randrange(len(data))
    length = rng.choice((1, 2, 4, 8, 64, 1024))
    value = rng.choice(RUN_BYTES) if rng.random() < 0.8 else rng.randrange(256)
    out = bytearray(data)
    out[start : start + length] = bytes([value]) * len(out[start : start + length])
    return f"run of {length} x 0x{value:02x} at {start}", bytes(out)


def insert_bytes(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    at = rng.randrange(len(data) + 1)
    chunk = rng.randbytes(rng.choice((1, 4, 16, 256)))
    return f"insert {len(chunk)} random bytes at {at}", data[:at] + chunk + data[at:]


def delete_chunk(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    if not data:
        return "delete (nothing to delete)", data
    at = rng.randrange(len(data))
    length = rng.choice((1, 4, 16, 256))
    return f"delete {length} bytes at {at}", data[:at] + data[at + length :]


def duplicate_chunk(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    if not data:
        return "duplicate (nothing to copy)", data
    at = rng.randrange(len(data))
    chunk = data[at : at + rng.choice((4, 64, 1024))]
    return f"duplicate {len(chunk)} bytes at {at}", data[:at] + chunk + data[at:]


def wrong_magic(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    width = rng.choice((1, 2, 4, 8))
    replacement = rng.choice((b"\x00" * width, b"\xff" * width, rng.randbytes(width), b"GIF89a"[:width],
                              b"\x89PNG"[:width], b"\x93NUMPY"[:width], b"PK\x03\x04"[:width]))
    return f"magic replaced by {replacement!r}", replacement + data[width:]


def random_bytes(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    size = rng.choice((1, 16, len(data) // 2 or 1))
    return f"{size} random bytes", rng.randbytes(size)


GENERIC: tuple[Mutator, ...] = (truncate, truncate, bit_flips, bit_flips, byte_run, insert_bytes, delete_chunk,
                                duplicate_chunk, wrong_magic, empty, random_bytes)


# --- header fields ---------------------------------------------------------------------------


def set_field(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """`data` with the struct field at `offset` set to `value` (wrapped to the field's width)."""
    size = struct.calcsize(fmt)
    if offset + size > len(data):
        return data
    bits = 8 * size
    wrapped = value % (1 << bits)
    if fmt[-1].islower():  # signed formats: the same bits, read back as a signed value
        wrapped = wrapped - (1 << bits) if wrapped >= 1 << (bits - 1) else wrapped
    return data[:offset] + struct.pack(fmt, wrapped) + data[offset + size :]


def special_for(fmt: str, rng: random.Random) -> int:
    size = struct.calcsize(fmt)
    pool = {1: (0, 1, 0x7F, 0x80, 0xFF), 2: SPECIAL_U16, 4: SPECIAL_U32, 8: SPECIAL_U64}[size]
    return rng.choice(pool) if rng.random() < 0.85 else rng.randrange(1 << (8 * size))


def field_mutator(fields: dict[str, tuple[int, str]], fixup: Callable[[bytes], bytes] | None = None) -> Mutator:
    """Set one named header field (offset, struct format) to a value that breaks size arithmetic."""

    def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
        name = rng.choice(sorted(fields))
        offset, fmt = fields[name]
        value = special_for(fmt, rng)
        out = set_field(data, offset, fmt, value)
        return f"{name} = {value}", fixup(out) if fixup else out

    return mutate


# IDX: magic (0, 0, type, ndim), then big-endian uint32 sizes.
IDX_FIELDS = {"type code": (2, "B"), "ndim": (3, "B"), "dim0": (4, ">I"), "dim1": (8, ">I"), "dim2": (12, ">I")}

# PNG: the IHDR chunk right after the 8-byte signature (its CRC is recomputed, see png_fix_ihdr).
PNG_FIELDS = {"IHDR length": (8, ">I"), "width": (16, ">I"), "height": (20, ">I"), "bit depth": (24, "B"),
              "colour type": (25, "B"), "compression": (26, "B"), "filter": (27, "B"), "interlace": (28, "B")}

# BMP: BITMAPFILEHEADER then BITMAPINFOHEADER, little-endian.
BMP_FIELDS = {"file size": (2, "<I"), "pixel offset": (10, "<I"), "header size": (14, "<I"), "width": (18, "<i"),
              "height": (22, "<i"), "planes": (26, "<H"), "bits per pixel": (28, "<H"),
              "compression": (30, "<I"), "image size": (34, "<I"), "colours used": (46, "<I")}

# .npy: magic, version (major, minor), header length (uint16 in 1.0, uint32 in 2.0).
NPY_FIELDS = {"major version": (6, "B"), "minor version": (7, "B"), "header length": (8, "<H")}

# safetensors: the length of the JSON header, uint64 little-endian.
SAFETENSORS_FIELDS = {"header length": (0, "<Q")}


def png_fix_ihdr(data: bytes) -> bytes:
    """Recompute the IHDR CRC, so Pillow reads the damaged fields instead of refusing the chunk."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return data
    return data[:29] + struct.pack(">I", zlib.crc32(data[12:29])) + data[33:]


def jpeg_fields(data: bytes) -> dict[str, tuple[int, str]]:
    """The start-of-frame fields of a JPEG (height, width, components) and the first segment length."""
    fields: dict[str, tuple[int, str]] = {"APP0 length": (4, ">H")}
    match = re.search(rb"\xff[\xc0\xc1\xc2]", data)
    if match:
        at = match.start() + 2
        fields |= {"SOF length": (at, ">H"), "precision": (at + 2, "B"), "height": (at + 3, ">H"),
                   "width": (at + 5, ">H"), "components": (at + 7, "B")}
    return fields


def jpeg_field(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    return field_mutator(jpeg_fields(data))(data, rng)


# --- .npy header text ------------------------------------------------------------------------

NPY_SHAPES = ("(2147483648, 28, 28)", "(-1, 28, 28)", "(0, 28, 28)", "(1000001, 784)", "(28, 28, 28, 28)",
              "()", "(28,)", "(9223372036854775807, 28, 28)", "(8, 28, 27)", "(8, 1, 28, 28)", "(8, 28, 28, 1)",
              "(1e9, 28, 28)", "('a', 28, 28)", "[8, 28, 28]", "(8, 784)", "(8, 28, 28, -1)")
NPY_DESCRS = ("'<f8'", "'|O'", "'<c16'", "'|V8'", "'>u2'", "'|b1'", "'<U4'", "'<f2'", "'<i8'", "'|S1'",
              "'<M8[s]'", "'xyz'", "''", "0", "[('a', '<f4')]", "'<f16'")


def npy_header_text(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Rewrite a field of the header dict (shape, descr, fortran_order), fixing its length bytes."""
    end = data.find(b"\n", 10)
    if not data.startswith(b"\x93NUMPY") or end < 0:
        return bit_flips(data, rng)
    header = data[10:end].decode("latin-1")
    choice = rng.randrange(3)
    if choice == 0:
        value = rng.choice(NPY_SHAPES)
        header = re.sub(r"'shape': \([^)]*\)", lambda _: f"'shape': {value}", header)
    elif choice == 1:
        value = rng.choice(NPY_DESCRS)
        header = re.sub(r"'descr': '[^']*'", lambda _: f"'descr': {value}", header)
    else:
        value = rng.choice(("True", "1", "None", "'yes'"))
        header = header.replace("'fortran_order': False", f"'fortran_order': {value}")
    body = header.encode("latin-1")
    # Keep the header a multiple of 64 bytes with its trailing newline, as numpy writes it.
    padded = body + b" " * ((-(len(body) + 11)) % 64) + b"\n"
    return f"npy header {value}", data[:8] + struct.pack("<H", len(padded)) + padded + data[end + 1 :]


def npy_header_byte(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One byte of the header dict replaced (NUL, a quote, a bracket...): the parser's own errors."""
    end = data.find(b"\n", 10)
    if end < 11:
        return bit_flips(data, rng)
    at = rng.randrange(10, end)
    value = rng.choice(b"\x00'\"(){}:,\\\n\xff")
    count = rng.choice((1, 1, 4))
    out = bytearray(data)
    out[at : at + count] = bytes([value]) * len(out[at : at + count])
    return f"npy header bytes {at}..{at + count - 1} = 0x{value:02x}", bytes(out)


# --- safetensors header JSON -------------------------------------------------------------------


def safetensors_header(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Change one tensor's dtype, shape or offsets in the JSON header, keeping the length field right."""
    try:
        length = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8 : 8 + length])
    except (struct.error, ValueError):
        return bit_flips(data, rng)
    names = sorted(k for k in header if k != "__metadata__")
    if not names:
        return bit_flips(data, rng)
    name = rng.choice(names)
    key = rng.choice(("dtype", "shape", "data_offsets"))
    value = rng.choice({
        "dtype": ("F64", "I8", "BOOL", "F16", "XYZ", "", 7, None),
        "shape": ([], [0], [-1], [2**31, 2**31], [2**63], [1] * 64, "3", [1.5]),
        "data_offsets": ([0, 0], [0, 2**62], [10, 5], [-1, 4], [0], [0, 2**64 - 1], None),
    }[key])
    header[name][key] = value
    body = json.dumps(header).encode()
    return f"safetensors {name}.{key} = {value!r}", struct.pack("<Q", len(body)) + body + data[8 + length :]


# --- NaN and infinity in float data ----------------------------------------------------------------

FLOAT_SPECIALS = (float("nan"), float("inf"), float("-inf"), 3.4e38, -0.0, 1e-45)


def data_offset(data: bytes) -> int:
    """Where the array data starts: after a .npy header's newline or a safetensors JSON header."""
    if data.startswith(b"\x93NUMPY"):
        return data.find(b"\n", 10) + 1
    if len(data) >= 8:
        length = struct.unpack("<Q", data[:8])[0]
        if 8 + length <= len(data):
            return 8 + length
    return 0


def float_specials(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Overwrite a few float32 values of the array data with NaN, infinities or extremes."""
    start = data_offset(data)
    slots = (len(data) - start) // 4
    if slots <= 0:
        return bit_flips(data, rng)
    value = rng.choice(FLOAT_SPECIALS)
    out = bytearray(data)
    count = rng.choice((1, 8, slots))
    for _ in range(min(count, 4096)):
        at = start + 4 * rng.randrange(slots)
        out[at : at + 4] = struct.pack("<f", value)
    return f"{min(count, 4096)} float32 value(s) set to {value}", bytes(out)


# --- per format ------------------------------------------------------------------------------

FORMAT_MUTATORS: dict[str, tuple[Mutator, ...]] = {
    "png": (field_mutator(PNG_FIELDS, png_fix_ihdr),) * 3,
    "bmp": (field_mutator(BMP_FIELDS),) * 3,
    "jpeg": (jpeg_field,) * 3,
    "npy": (npy_header_text, npy_header_text, npy_header_byte, npy_header_byte, field_mutator(NPY_FIELDS),
            float_specials),
    "idx": (field_mutator(IDX_FIELDS),) * 3,
    "safetensors": (safetensors_header, safetensors_header, field_mutator(SAFETENSORS_FIELDS), float_specials),
    "json": (),  # structured damage comes from documents.py (Hypothesis)
    "toml": (),
    "onnx": (),  # structured damage comes from onnx_models.py
    "bytes": (),
}


def mutate(data: bytes, fmt: str, rng: random.Random) -> tuple[str, bytes]:
    """One damage, drawn from the generic mutators and the format's own."""
    pool = GENERIC + FORMAT_MUTATORS[fmt]
    return rng.choice(pool)(data, rng)
