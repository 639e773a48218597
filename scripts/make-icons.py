#!/usr/bin/env python3
"""Draws FaceGate's app icons (public/icons/*.png) with the standard library
only: a face outline in a gate on the brand background. Run it again after
changing the design; the PNGs are committed."""

import math
import struct
import zlib
from pathlib import Path

BACKGROUND = (15, 23, 42)
ACCENT = (34, 197, 94)


def shade(size: int, x: float, y: float, maskable: bool) -> tuple[int, int, int, int]:
    """Colour of pixel centre (x, y) in a size x size icon."""
    u, v = (x / size - 0.5), (y / size - 0.5)
    # Maskable icons keep their content inside the central 80% safe zone.
    scale = 0.8 if maskable else 1.0
    u, v = u / scale, v / scale
    corner = 0.5 if maskable else 0.38
    # Rounded-square background (full bleed for maskable icons).
    if not maskable and max(abs(u), abs(v)) > corner and math.hypot(abs(u) - corner, abs(v) - corner) > 0.5 - corner:
        if abs(u) > corner and abs(v) > corner:
            return (0, 0, 0, 0)
    r = math.hypot(u, v * 0.92)
    ring = abs(r - 0.30) < 0.035
    eye = math.hypot(abs(u) - 0.11, v + 0.07) < 0.045
    smile = abs(math.hypot(u, v - 0.0) - 0.16) < 0.03 and v > 0.06
    frame = (abs(abs(u) - 0.42) < 0.03 and abs(v) < 0.42) or (abs(v + 0.42) < 0.03 and abs(u) < 0.42)
    if ring or eye or smile or frame:
        return (*ACCENT, 255)
    return (*BACKGROUND, 255)


def png(size: int, maskable: bool = False) -> bytes:
    rows = bytearray()
    for y in range(size):
        rows.append(0)
        for x in range(size):
            rows.extend(shade(size, x + 0.5, y + 0.5, maskable))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(b"IEND", b"")


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "public" / "icons"
    out.mkdir(parents=True, exist_ok=True)
    for size in (192, 512):
        (out / f"icon-{size}.png").write_bytes(png(size))
    (out / "icon-maskable-512.png").write_bytes(png(512, maskable=True))


if __name__ == "__main__":
    main()
