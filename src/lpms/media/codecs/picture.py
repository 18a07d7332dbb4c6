"""Picture sizes as the video parameter set parsers read them: crop windows, and the
sanity bound every parser puts on the size it finds."""

from __future__ import annotations

from lpms.errors import MediaError
from lpms.media.bitreader import BitReader

# Larger than any level of H.264, HEVC or AV1 allows, so a nonsense SPS is refused.
MAX_PICTURE_DIMENSION = 32768


def checked_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) if a level could allow it; a misread header raises instead."""
    if not (0 < width <= MAX_PICTURE_DIMENSION and 0 < height <= MAX_PICTURE_DIMENSION):
        raise MediaError(f"implausible picture size {width}x{height}")
    return width, height


def read_crop(bits: BitReader) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) crop or conformance window offsets, in chroma units."""
    return bits.read_ue(), bits.read_ue(), bits.read_ue(), bits.read_ue()
