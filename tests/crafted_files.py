"""Image files crafted byte by byte, for what Pillow would not write: lying headers, foreign formats."""

import struct
import zlib


def png_header(width: int, height: int, rows: int = 1) -> bytes:
    """A tiny RGB PNG file that claims `width` x `height` and carries only `rows` rows of pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    scanlines = zlib.compress(b"\x00" * (1 + 3 * min(width, 4096)) * rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", scanlines) + chunk(b"IEND", b"")


def psd_file(width: int = 8, height: int = 8) -> bytes:
    """A minimal valid Photoshop file by hand: header, empty colour-mode/resources/layers sections, raw RGB."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    return header + struct.pack(">IIIH", 0, 0, 0, 0) + bytes(width * height * 3)
