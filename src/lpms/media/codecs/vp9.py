"""VP9: the codec string from a vpcC record; the picture size is in each keyframe."""

from __future__ import annotations


def codecs_string(record: bytes) -> str | None:
    """``vp09.PP.LL.DD`` (VP codec ISO binding) from vpcC's profile, level and bit
    depth (the record with or without its FullBox version and flags)."""
    if len(record) >= 7 and record[0] == 1 and record[1:4] == b"\x00\x00\x00":
        record = record[4:]
    if len(record) < 3:
        return None
    profile, level, depth = record[0], record[1], record[2] >> 4
    if depth not in (8, 10, 12):
        return None
    return f"vp09.{profile:02d}.{level:02d}.{depth:02d}"
