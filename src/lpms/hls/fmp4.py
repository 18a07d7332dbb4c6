"""Fragmented MP4 (CMAF) boxes, written by hand: an init segment per track
configuration, then one ``moof``/``mdat`` fragment per LL-HLS part.

Pure functions over bytes, no I/O. PyAV's ``mp4`` muxer can fragment, but it cuts
fragments where it decides (at keyframes, or by duration) and cannot be told to
close one at an arbitrary part boundary and hand it over; LL-HLS needs exactly
that, every part duration, so the boxes are written here. Each fragment carries one
track (CMAF, ISO/IEC 23000-19 7.3.2.2: one track per CMAF fragment), so the same
segments serve HLS and DASH players alike.

Box layouts follow ISO/IEC 14496-12 (ISOBMFF; section numbers below), the codec
bindings ISO/IEC 14496-15 (avcC, hvcC), the AV1 ISOBMFF binding (av1C), the VP
codec ISO binding (vpcC), ISO/IEC 14496-14 (esds) and the Opus-in-ISOBMFF
encapsulation (dOps).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from lpms.errors import HLSError
from lpms.media.packet import Codec, CodecConfig

VIDEO_TIMESCALE = 90_000
"""Video track clock: 90 kHz, the one every video timestamp fits (RTMP's ms x 90)."""

MOVIE_TIMESCALE = 1000

# ISO/IEC 14496-12 8.8.3.1 sample flags: is_leading 0, depends_on 2 (an I picture) or
# 1, is_non_sync_sample 0 or 1.
SYNC_SAMPLE_FLAGS = 0x0200_0000
NON_SYNC_SAMPLE_FLAGS = 0x0101_0000

_TFHD_DEFAULT_BASE_IS_MOOF = 0x02_0000
_TRUN_DATA_OFFSET = 0x000001
_TRUN_SAMPLE_DURATION = 0x000100
_TRUN_SAMPLE_SIZE = 0x000200
_TRUN_SAMPLE_FLAGS = 0x000400
_TRUN_COMPOSITION_OFFSET = 0x000800
_TRUN_FLAGS = (
    _TRUN_DATA_OFFSET
    | _TRUN_SAMPLE_DURATION
    | _TRUN_SAMPLE_SIZE
    | _TRUN_SAMPLE_FLAGS
    | _TRUN_COMPOSITION_OFFSET
)
_UNDETERMINED_LANGUAGE = 0x55C4  # "und", packed ISO 639-2/T (8.4.2.3)
_IDENTITY_MATRIX = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_MP4_AUDIO_TYPES = {Codec.AAC: 0x40, Codec.MP3: 0x6B}  # ISO/IEC 14496-1 objectTypeIndication
_OPUS_HEAD = b"OpusHead"

FMP4_VIDEO_CODECS = frozenset({Codec.H264, Codec.HEVC, Codec.AV1, Codec.VP9})
FMP4_AUDIO_CODECS = frozenset({Codec.AAC, Codec.MP3, Codec.OPUS})


@dataclass(frozen=True, slots=True)
class Track:
    """One track of an init segment: its ID, clock and decoder configuration."""

    track_id: int
    config: CodecConfig
    timescale: int

    @property
    def is_video(self) -> bool:
        return self.config.codec in FMP4_VIDEO_CODECS


@dataclass(frozen=True, slots=True)
class Sample:
    """One access unit of a fragment, times in its track's timescale."""

    data: bytes
    duration: int
    keyframe: bool
    composition_offset: int = 0  # PTS - DTS


# -- boxes -----------------------------------------------------------------------------


def box(kind: bytes, *payload: bytes) -> bytes:
    """An ISOBMFF box (4.2): 32-bit size, four-character type, payload."""
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A FullBox (4.2): a box whose payload starts with version and 24-bit flags."""
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


# -- the init segment ------------------------------------------------------------------


def init_segment(tracks: Sequence[Track]) -> bytes:
    """``ftyp`` and ``moov`` for ``tracks`` (CMAF 7.3.1): no samples, every track
    fragmented (``mvex``)."""
    if not tracks:
        raise HLSError("an init segment needs a track")
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6", b"cmfc", b"mp41")
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, 0),  # times, timescale, duration
        struct.pack(">IH", 0x0001_0000, 0x0100),  # rate 1.0, volume 1.0
        bytes(10),
        _IDENTITY_MATRIX,
        bytes(24),
        struct.pack(">I", max(t.track_id for t in tracks) + 1),
    )
    traks = [_trak(track) for track in tracks]
    mvex = box(b"mvex", *(_trex(track) for track in tracks))
    return ftyp + box(b"moov", mvhd, *traks, mvex)


def _trak(track: Track) -> bytes:
    config = track.config
    video = track.is_video
    width, height = (config.width, config.height) if video else (0, 0)
    tkhd = full_box(
        b"tkhd",
        0,
        0x3,  # enabled, in the movie
        struct.pack(">IIIII", 0, 0, track.track_id, 0, 0),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0 if video else 0x0100, 0),  # layer, group, volume
        _IDENTITY_MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = full_box(
        b"mdhd",
        0,
        0,
        struct.pack(">IIIIHH", 0, 0, track.timescale, 0, _UNDETERMINED_LANGUAGE, 0),
    )
    handler, name = (b"vide", b"lpms video\x00") if video else (b"soun", b"lpms audio\x00")
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), handler, bytes(12), name)
    media_header = full_box(b"vmhd", 0, 1, bytes(8)) if video else full_box(b"smhd", 0, 0, bytes(4))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), sample_entry(track)),
        full_box(b"stts", 0, 0, bytes(4)),
        full_box(b"stsc", 0, 0, bytes(4)),
        full_box(b"stsz", 0, 0, bytes(8)),
        full_box(b"stco", 0, 0, bytes(4)),
    )
    minf = box(b"minf", media_header, dinf, stbl)
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf))


def _trex(track: Track) -> bytes:
    return full_box(b"trex", 0, 0, struct.pack(">IIIII", track.track_id, 1, 0, 0, 0))


def sample_entry(track: Track) -> bytes:
    """The ``stsd`` entry that tells a decoder what the track's samples are."""
    config = track.config
    codec = config.codec
    if codec is Codec.H264:
        return _visual_entry(b"avc1", config, box(b"avcC", config.extradata))
    if codec is Codec.HEVC:
        return _visual_entry(b"hvc1", config, box(b"hvcC", config.extradata))
    if codec is Codec.AV1:
        return _visual_entry(b"av01", config, box(b"av1C", config.extradata))
    if codec is Codec.VP9:
        return _visual_entry(b"vp09", config, vpcc_box(config.extradata))
    if codec in _MP4_AUDIO_TYPES:
        return _audio_entry(b"mp4a", config, _esds(config))
    if codec is Codec.OPUS:
        return _audio_entry(b"Opus", config, dops_box(config.extradata), rate=48000)
    raise HLSError(f"{codec.value} cannot go into fMP4 segments")


def _visual_entry(kind: bytes, config: CodecConfig, *children: bytes) -> bytes:
    if not config.width or not config.height:
        raise HLSError(f"{config.codec.value} configuration without a picture size")
    return box(
        kind,
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),
        struct.pack(">HH", config.width, config.height),
        struct.pack(">II", 0x0048_0000, 0x0048_0000),  # 72 dpi
        bytes(4),
        struct.pack(">H", 1),  # frame_count
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x0018, -1),
        *children,
    )


def _audio_entry(kind: bytes, config: CodecConfig, *children: bytes, rate: int = 0) -> bytes:
    sample_rate = rate or config.sample_rate
    if not sample_rate or not 0 < sample_rate < 65536:
        raise HLSError(f"{config.codec.value} configuration without a usable sample rate")
    return box(
        kind,
        bytes(6),
        struct.pack(">H", 1),
        bytes(8),
        struct.pack(">HH", config.channels or 2, 16),
        bytes(4),
        struct.pack(">I", sample_rate << 16),
        *children,
    )


def _descriptor(tag: int, payload: bytes) -> bytes:
    """An MPEG-4 descriptor (ISO/IEC 14496-1 8.3.3): tag, then a 4-byte size."""
    size = len(payload)
    if size >= 1 << 28:
        raise HLSError(f"descriptor of {size} bytes is too large")
    groups = [(size >> shift) & 0x7F for shift in (21, 14, 7, 0)]
    size_bytes = bytes([0x80 | group for group in groups[:3]] + groups[3:])
    return bytes((tag,)) + size_bytes + payload


def _esds(config: CodecConfig) -> bytes:
    specific = _descriptor(5, config.extradata) if config.extradata else b""
    decoder = _descriptor(
        4,
        bytes((_MP4_AUDIO_TYPES[config.codec], 0x15))  # audio stream
        + bytes(3)  # bufferSizeDB
        + struct.pack(">II", 0, 0)  # max and average bitrate: not known ahead
        + specific,
    )
    es = _descriptor(3, struct.pack(">HB", 0, 0) + decoder + _descriptor(6, b"\x02"))
    return full_box(b"esds", 0, 0, es)


def vpcc_box(record: bytes) -> bytes:
    """``vpcC`` (VP codec ISO binding): version 1; the record is what Enhanced RTMP
    sends as VP9's sequence start (the box's payload after version and flags)."""
    if len(record) >= 4 and record[0] == 1 and record[1:4] == b"\x00\x00\x00":
        return box(b"vpcC", record)  # already with its FullBox header
    return full_box(b"vpcC", 1, 0, record)


def dops_box(head: bytes) -> bytes:
    """``dOps`` from Opus's ID header (RFC 7845 5.1, little-endian) or a ``dOps``
    payload already (big-endian, version 0)."""
    if head.startswith(_OPUS_HEAD):
        if len(head) < 19:
            raise HLSError("Opus ID header is shorter than 19 bytes")
        channels, pre_skip, rate, gain, family = struct.unpack_from("<BHIhB", head, 9)
        body = struct.pack(">BBHIhB", 0, channels, pre_skip, rate, gain, family)
        if family != 0:
            body += head[19 : 19 + 2 + channels]  # stream count, coupled count, mapping
        return box(b"dOps", body)
    if not head or head[0] != 0:
        raise HLSError("Opus configuration is neither an ID header nor a dOps record")
    return box(b"dOps", head)


# -- fragments ---------------------------------------------------------------------------


def fragment(
    sequence_number: int, track_id: int, base_decode_time: int, samples: Sequence[Sample]
) -> bytes:
    """One ``moof``+``mdat`` (8.8.4, 8.1.1) of one track: CMAF's fragment, an LL-HLS
    part. ``base_decode_time`` is the first sample's decode time (``tfdt``), in the
    track's timescale; each sample's duration carries the timeline on."""
    if not samples:
        raise HLSError("a fragment needs a sample")
    if base_decode_time < 0:
        raise HLSError(f"a fragment cannot start before 0 (base decode time {base_decode_time})")
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number & 0xFFFF_FFFF))
    tfhd = full_box(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", track_id))
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", base_decode_time))
    entries = b"".join(_trun_entry(sample) for sample in samples)
    # trun's size is known before its data offset: moof's size is fixed by then.
    trun_size = 8 + 4 + 4 + 4 + len(entries)
    traf_size = 8 + len(tfhd) + len(tfdt) + trun_size
    moof_size = 8 + len(mfhd) + traf_size
    data_offset = moof_size + 8  # from the moof's start to the first byte of mdat's data
    trun = full_box(b"trun", 1, _TRUN_FLAGS, struct.pack(">Ii", len(samples), data_offset), entries)
    moof = box(b"moof", mfhd, box(b"traf", tfhd, tfdt, trun))
    return moof + box(b"mdat", *(sample.data for sample in samples))


def _trun_entry(sample: Sample) -> bytes:
    if sample.duration < 0:
        raise HLSError(f"sample duration {sample.duration} is negative")
    flags = SYNC_SAMPLE_FLAGS if sample.keyframe else NON_SYNC_SAMPLE_FLAGS
    return struct.pack(">IIIi", sample.duration, len(sample.data), flags, sample.composition_offset)


# -- reading (what FFmpeg's mp4 muxer writes, for a transcoder's renditions) -----------

_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008
_TFHD_DEFAULT_SIZE = 0x000010
_TFHD_DEFAULT_FLAGS = 0x000020
_TRUN_FIRST_SAMPLE_FLAGS = 0x000004
_NON_SYNC = 0x0001_0000
_SAMPLE_ENTRY_CODECS = {
    b"avc1": (Codec.H264, b"avcC"),
    b"avc3": (Codec.H264, b"avcC"),
    b"hvc1": (Codec.HEVC, b"hvcC"),
    b"hev1": (Codec.HEVC, b"hvcC"),
    b"av01": (Codec.AV1, b"av1C"),
    b"vp09": (Codec.VP9, b"vpcC"),
}
_VISUAL_ENTRY_SIZE = 78  # 8.5.2.2: the VisualSampleEntry fields before its boxes


@dataclass(frozen=True, slots=True)
class ReadSample:
    data: bytes
    decode_time: int
    duration: int
    composition_offset: int
    keyframe: bool


@dataclass(frozen=True, slots=True)
class FragmentedVideo:
    """The one video track of a fragmented MP4: its configuration and samples."""

    config: CodecConfig
    timescale: int
    samples: tuple[ReadSample, ...]


def _boxes(data: bytes | memoryview, start: int, end: int) -> list[tuple[bytes, int, int]]:
    found = []
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            if start + 16 > end:
                break
            size = struct.unpack_from(">Q", data, start + 8)[0]
            header = 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            raise HLSError(f"fMP4: box {kind!r} of {size} bytes does not fit")
        found.append((kind, start + header, start + size))
        start += size
    return found


def _find(data: bytes, start: int, end: int, path: Sequence[bytes]) -> tuple[int, int]:
    for kind in path:
        match = next(((s, e) for k, s, e in _boxes(data, start, end) if k == kind), None)
        if match is None:
            raise HLSError(f"fMP4: no {kind.decode(errors='replace')} box")
        start, end = match
    return start, end


def read_fragmented_video(data: bytes) -> FragmentedVideo:
    """The video track of a fragmented MP4 (an init segment and ``moof``/``mdat``
    fragments, as FFmpeg's mp4 muxer writes with ``empty_moov``): its codec
    configuration record, timescale and every sample with its decode time."""
    config, timescale = read_video_config(data)
    samples: list[ReadSample] = []
    for box_kind, start, end in _boxes(data, 0, len(data)):
        if box_kind == b"moof":
            samples += _fragment_samples(data, start - 8, start, end)
    return FragmentedVideo(config, timescale, tuple(samples))


def read_video_config(data: bytes) -> tuple[CodecConfig, int]:
    """The video track's configuration and timescale, from the ``moov`` alone (no
    sample is read or copied)."""
    moov = _find(data, 0, len(data), (b"moov",))
    mdia = _find(data, *moov, (b"trak", b"mdia"))
    mdhd = _find(data, *mdia, (b"mdhd",))
    version = data[mdhd[0]]
    timescale = struct.unpack_from(">I", data, mdhd[0] + (20 if version == 1 else 12))[0]
    stsd = _find(data, *mdia, (b"minf", b"stbl", b"stsd"))
    entries = _boxes(data, stsd[0] + 8, stsd[1])
    if not entries or entries[0][0] not in _SAMPLE_ENTRY_CODECS:
        raise HLSError("fMP4: the track is not H.264, HEVC, AV1 or VP9 video")
    kind, entry_start, entry_end = entries[0]
    codec, record_kind = _SAMPLE_ENTRY_CODECS[kind]
    width, height = struct.unpack_from(">HH", data, entry_start + 24)
    record = _find(data, entry_start + _VISUAL_ENTRY_SIZE, entry_end, (record_kind,))
    return CodecConfig(codec, bytes(data[record[0] : record[1]]), width, height), timescale


def _fragment_samples(data: bytes, moof_start: int, start: int, end: int) -> list[ReadSample]:
    traf = _find(data, start, end, (b"traf",))
    tfhd = _find(data, *traf, (b"tfhd",))
    flags = struct.unpack_from(">I", data, tfhd[0])[0] & 0xFFFFFF
    position = tfhd[0] + 8  # past version, flags and track_ID
    base = moof_start
    if flags & _TFHD_BASE_DATA_OFFSET:
        base = struct.unpack_from(">Q", data, position)[0]
        position += 8
    if flags & _TFHD_SAMPLE_DESCRIPTION:
        position += 4
    default_duration, position = _field(data, position, flags & _TFHD_DEFAULT_DURATION, 0)
    default_size, position = _field(data, position, flags & _TFHD_DEFAULT_SIZE, 0)
    default_flags, position = _field(data, position, flags & _TFHD_DEFAULT_FLAGS, 0)
    tfdt = _find(data, *traf, (b"tfdt",))
    if data[tfdt[0]] == 1:
        decode_time = struct.unpack_from(">Q", data, tfdt[0] + 4)[0]
    else:
        decode_time = struct.unpack_from(">I", data, tfdt[0] + 4)[0]
    samples = []
    for kind, run_start, _run_end in _boxes(data, *traf):
        if kind != b"trun":
            continue
        version_flags, count = struct.unpack_from(">II", data, run_start)
        run_flags, run_version = version_flags & 0xFFFFFF, version_flags >> 24
        position = run_start + 8
        data_offset, position = _field(data, position, run_flags & _TRUN_DATA_OFFSET, 0, ">i")
        offset = base + data_offset
        first_flags, position = _field(
            data, position, run_flags & _TRUN_FIRST_SAMPLE_FLAGS, default_flags
        )
        composition_format = ">i" if run_version else ">I"
        for number in range(count):
            duration, position = _field(
                data, position, run_flags & _TRUN_SAMPLE_DURATION, default_duration
            )
            size, position = _field(data, position, run_flags & _TRUN_SAMPLE_SIZE, default_size)
            sample_flags, position = _field(
                data,
                position,
                run_flags & _TRUN_SAMPLE_FLAGS,
                first_flags if number == 0 else default_flags,
            )
            composition, position = _field(
                data, position, run_flags & _TRUN_COMPOSITION_OFFSET, 0, composition_format
            )
            if offset + size > len(data):
                raise HLSError("fMP4: a sample runs past the end of the data")
            samples.append(
                ReadSample(
                    bytes(data[offset : offset + size]),
                    decode_time,
                    duration,
                    composition,
                    not sample_flags & _NON_SYNC,
                )
            )
            offset += size
            decode_time += duration
    return samples


def _field(
    data: bytes, position: int, present: int, default: int, layout: str = ">I"
) -> tuple[int, int]:
    """A 4-byte field that is there only when its flag is set (``present``): its value
    (``default`` when absent) and the position after it."""
    if not present:
        return default, position
    value: int = struct.unpack_from(layout, data, position)[0]
    return value, position + 4
