"""The wire between the server and a remote transcoder: ladders and results go out
as plain values and come back equal, and anything else is refused with an error
that names the field."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpms.errors import TranscodeError
from lpms.transcode.chunks import Chunk, run_chunk
from lpms.transcode.profiles import (
    INTRA_ONLY,
    MAX_BITRATE,
    MAX_DIMENSION,
    MAX_FRAMERATE,
    MAX_GOP_FRAMES,
    MAX_QUALITY,
    PRESETS,
    GOPFrames,
    GOPSeconds,
    H264Profile,
    OutputFormat,
    ProfileError,
    VideoCodec,
    VideoProfile,
    profile_from_mapping,
    profile_to_mapping,
    profiles_from_json,
)
from lpms.transcode.rendition import RenditionOutput
from lpms.transcode.session import Transcoder, TranscodeResult
from lpms.transcode.wire import (
    WIRE_VERSION,
    chunk_from_wire,
    chunk_to_wire,
    ladder_from_wire,
    ladder_to_wire,
    result_from_wire,
    result_to_wire,
)
from tests.media import Part, make_clip, split_at_keyframes

CUSTOM_PROFILES = [
    # An NTSC frame rate, a GOP in fractional seconds, HEVC, a slower preset.
    VideoProfile(
        "ntsc_hevc",
        1920,
        1080,
        5_500_000,
        Fraction(30000, 1001),
        gop=GOPSeconds(Fraction("0.5")),
        codec=VideoCodec.HEVC,
        preset="medium",
    ),
    # Film rate, intra-only, constrained high, an aspect label unlike the box.
    VideoProfile(
        "film.intra",
        854,
        480,
        1_234_567,
        Fraction(24000, 1001),
        aspect_ratio="16:9",
        gop=INTRA_ONLY,
        h264_profile=H264Profile.CONSTRAINED_HIGH,
    ),
    # An odd box, the source's rate passed through, a GOP in frames, baseline.
    VideoProfile(
        "odd-box",
        333,
        187,
        777,
        None,
        gop=GOPFrames(48),
        h264_profile=H264Profile.BASELINE,
        preset="ultrafast",
    ),
    # Half-frame rates, a GOP of 2.25 s, AV1; VP9 with whole seconds.
    VideoProfile(
        "av1_slow",
        640,
        360,
        800_000,
        Fraction(25, 2),
        gop=GOPSeconds(Fraction(9, 4)),
        codec=VideoCodec.AV1,
    ),
    VideoProfile(
        "vp9", 426, 240, 600_000, Fraction(15), gop=GOPSeconds(Fraction(2)), codec=VideoCodec.VP9
    ),
    # A constant quality with no bitrate, encoder options, an MP4 file output.
    VideoProfile(
        "crf",
        1280,
        720,
        0,
        quality=23,
        encoder_options={"tune": "zerolatency", "x264-params": "keyint=60:min-keyint=60"},
        format=OutputFormat.MP4,
    ),
]

PLAIN_TYPES = (str, int, float, bool, bytes, type(None))


def plain_values(value: object) -> Iterator[object]:
    """Every value in a wire message, containers included, depth first."""
    yield value
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from plain_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from plain_values(item)


def assert_plain(message: object) -> None:
    """Only builtin values: nothing of lpms's own crosses the wire."""
    for value in plain_values(message):
        assert type(value) in (*PLAIN_TYPES, dict, list), f"{value!r} is not a plain value"


# --- ladders ------------------------------------------------------------------------


def test_every_preset_ladder_round_trips() -> None:
    ladder = tuple(PRESETS.values())
    message = ladder_to_wire(ladder)
    assert message["version"] == WIRE_VERSION
    assert_plain(message)
    assert ladder_from_wire(message) == ladder
    # A ladder is JSON as LPMS writes it: it survives any serializer, not just pickle.
    assert ladder_from_wire(json.loads(json.dumps(message))) == ladder


@pytest.mark.parametrize("profile", CUSTOM_PROFILES, ids=lambda p: p.name)
def test_custom_profile_ladder_round_trips(profile: VideoProfile) -> None:
    message = ladder_to_wire([profile])
    assert_plain(message)
    back = ladder_from_wire(json.loads(json.dumps(message)))
    assert back == (profile,)
    # Equal is not enough for what the encoder is given: each field, exactly.
    assert back[0].framerate == profile.framerate
    assert back[0].gop == profile.gop
    assert back[0].codec is profile.codec
    assert back[0].h264_profile is profile.h264_profile


def test_mixed_ladder_keeps_its_order() -> None:
    ladder = (CUSTOM_PROFILES[2], PRESETS["P144p30fps16x9"], CUSTOM_PROFILES[0])
    assert ladder_from_wire(ladder_to_wire(ladder)) == ladder


@pytest.mark.parametrize("name", list(PRESETS))
def test_profile_to_mapping_reads_back_for_every_preset(name: str) -> None:
    profile = PRESETS[name]
    mapping = profile_to_mapping(profile)
    assert profile_from_mapping(mapping) == profile
    # LPMS's field names and units: bits per second, fps over fpsDen.
    assert mapping["name"] == name
    assert mapping["bitrate"] == profile.bitrate
    assert profile.framerate is not None
    assert (mapping["fps"], mapping["fpsDen"]) == (profile.framerate.numerator, 1)
    assert "gop" not in mapping  # presets have none: a keyframe per segment only
    # And as LPMS's JSON transcoding options.
    assert profiles_from_json(json.dumps([mapping])) == (profile,)


@pytest.mark.parametrize("profile", CUSTOM_PROFILES, ids=lambda p: p.name)
def test_profile_to_mapping_reads_back_for_custom_profiles(profile: VideoProfile) -> None:
    assert profile_from_mapping(profile_to_mapping(profile)) == profile


def test_profile_to_mapping_refuses_a_gop_no_decimal_can_write() -> None:
    """A third of a second has no exact decimal: refused by name, never rounded."""
    profile = VideoProfile("thirds", 640, 360, 1_000_000, gop=GOPSeconds(Fraction(1, 3)))
    with pytest.raises(ProfileError, match="GOP of profile thirds"):
        profile_to_mapping(profile)


def _decimal_seconds() -> st.SearchStrategy[GOPSeconds]:
    return st.integers(0, 4).flatmap(
        lambda digits: st.integers(1, 3600 * 10**digits).map(
            lambda units: GOPSeconds(Fraction(units, 10**digits))
        )
    )


def _framerates() -> st.SearchStrategy[Fraction | None]:
    rates = st.integers(1, 1001).flatmap(
        lambda den: st.integers(1, MAX_FRAMERATE * den).map(lambda num: Fraction(num, den))
    )
    return st.none() | rates


@st.composite
def video_profiles(draw: st.DrawFn) -> VideoProfile:
    codec = draw(st.sampled_from(VideoCodec))
    h264 = st.none() | st.sampled_from(H264Profile)
    aspect = st.just("") | st.builds(
        lambda a, b: f"{a}:{b}", st.integers(1, 64), st.integers(1, 64)
    )
    quality = draw(st.none() | st.integers(1, MAX_QUALITY[codec]))
    return VideoProfile(
        name=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", fullmatch=True)),
        width=draw(st.integers(2, MAX_DIMENSION)),
        height=draw(st.integers(2, MAX_DIMENSION)),
        bitrate=draw(st.integers(0 if quality else 1, MAX_BITRATE)),
        framerate=draw(_framerates()),
        aspect_ratio=draw(aspect),
        gop=draw(
            st.none() | st.builds(GOPFrames, st.integers(1, MAX_GOP_FRAMES)) | _decimal_seconds()
        ),
        codec=codec,
        h264_profile=draw(h264) if codec is VideoCodec.H264 else None,
        preset=draw(st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True)),
        quality=quality,
        encoder_options=draw(
            st.dictionaries(
                st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True),
                st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), max_size=30),
                max_size=4,
            )
        ),
        format=draw(st.sampled_from([f for f in OutputFormat if f.carries(codec)] + [None])),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(video_profiles(), min_size=1, max_size=4))
def test_any_ladder_round_trips(ladder: list[VideoProfile]) -> None:
    assert ladder_from_wire(json.loads(json.dumps(ladder_to_wire(ladder)))) == tuple(ladder)


# --- ladder refusals -----------------------------------------------------------------


def _ladder() -> dict[str, Any]:
    return ladder_to_wire([PRESETS["P360p30fps16x9"], CUSTOM_PROFILES[1]])


@pytest.mark.parametrize("version", [WIRE_VERSION + 1, 0, "1", None])
def test_ladder_of_another_version_is_refused(version: object) -> None:
    message = _ladder()
    message["version"] = version
    with pytest.raises(TranscodeError, match=rf"wire ladder is version {version!r}"):
        ladder_from_wire(message)


def test_ladder_without_version_is_refused() -> None:
    message = _ladder()
    del message["version"]
    with pytest.raises(TranscodeError, match="wire ladder is version None"):
        ladder_from_wire(message)


@pytest.mark.parametrize("profiles", [None, [], {"name": "x"}, "P360p30fps16x9"])
def test_ladder_without_a_list_of_profiles_is_refused(profiles: object) -> None:
    message = _ladder()
    message["profiles"] = profiles
    with pytest.raises(TranscodeError, match="'profiles' must be a non-empty list"):
        ladder_from_wire(message)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"crf": 23}, r"wire ladder profiles\[1\]: unknown field 'crf'"),
        ({"width": None}, r"wire ladder profiles\[1\]: field 'width' must be an integer"),
        ({"width": b"\x05"}, r"wire ladder profiles\[1\]: field 'width' must be an integer"),
        ({"fps": 24.0}, r"wire ladder profiles\[1\]: field 'fps' must be an integer"),
        ({"fps": True}, r"wire ladder profiles\[1\]: field 'fps' must be an integer"),
        ({"encoder": "VP8"}, r"wire ladder profiles\[1\]: unknown codec 'VP8'"),
        ({"gop": [2]}, r"wire ladder profiles\[1\]: field 'gop' must be"),
    ],
)
def test_bad_profile_on_the_wire_is_refused_by_field(change: dict[str, Any], message: str) -> None:
    wire = _ladder()
    wire["profiles"][1].update(change)
    with pytest.raises(ProfileError, match=message):
        ladder_from_wire(wire)


@pytest.mark.parametrize("field", ["width", "height", "bitrate"])
def test_profile_missing_a_field_is_refused(field: str) -> None:
    wire = _ladder()
    del wire["profiles"][0][field]
    with pytest.raises(
        ProfileError, match=rf"wire ladder profiles\[0\]: field '{field}' is missing"
    ):
        ladder_from_wire(wire)


@pytest.mark.parametrize(
    "wire",
    [
        [{"version": WIRE_VERSION}],
        {"version": WIRE_VERSION, "profiles": [5]},
        {"version": WIRE_VERSION, "profiles": [None]},
        {"version": WIRE_VERSION, "profiles": [["width", "height"]]},
    ],
    ids=["message-a-list", "entry-an-int", "entry-none", "entry-a-list"],
)
def test_ladder_that_is_not_mappings_is_refused(wire: Any) -> None:
    with pytest.raises((TranscodeError, ProfileError)):
        ladder_from_wire(wire)


# --- results -------------------------------------------------------------------------

TINY_LADDER = (
    VideoProfile("tiny", 96, 64, 200_000, Fraction(24)),
    VideoProfile("small", 128, 80, 300_000, gop=GOPFrames(6), h264_profile=H264Profile.MAIN),
)


@pytest.fixture(scope="module")
def real_result() -> TranscodeResult:
    """One half-second segment through a real session (a few tens of milliseconds)."""
    clip = make_clip(Part(160, 96, 1.0), fps=24, gop_frames=12, start=1.0)
    with Transcoder(TINY_LADDER) as transcoder:
        return transcoder.transcode(split_at_keyframes(clip)[0])


def hand_made_result() -> TranscodeResult:
    def output(profile: VideoProfile, config: bytes | None) -> RenditionOutput:
        return RenditionOutput(
            profile=profile,
            data=b"\x47" + bytes(187),
            size=188,
            frames=12,
            keyframes=1,
            width=profile.width,
            height=profile.height,
            duration=0.5,
            video_bytes=120,
            first_keyframe=True,
            decoder_config=config,
            busy_seconds=0.01,
        )

    return TranscodeResult(
        index=7,
        decoded_frames=12,
        decoded_pixels=12 * 160 * 96,
        duration=0.5,
        elapsed=0.02,
        outputs=(
            output(TINY_LADDER[0], bytes.fromhex("0164001fffe1")),
            output(TINY_LADDER[1], None),
        ),
        skipped_packets=3,
    )


def test_real_result_round_trips(real_result: TranscodeResult) -> None:
    # The test is worth something only if the result carries what a session makes.
    assert [o.profile.name for o in real_result.outputs] == ["tiny", "small"]
    assert all(o.data and o.frames and o.decoder_config for o in real_result.outputs)
    message = result_to_wire(real_result)
    assert message["version"] == WIRE_VERSION
    assert_plain(message)
    back = result_from_wire(message, TINY_LADDER)
    assert back == real_result
    assert back.outputs[1].data == real_result.outputs[1].data
    assert back.outputs[0].profile is TINY_LADDER[0]  # the session's own profile objects
    # What Ray does to it on the way: pickled with only builtins inside.
    assert result_from_wire(pickle.loads(pickle.dumps(message)), TINY_LADDER) == real_result


def test_hand_made_result_round_trips_with_no_decoder_config() -> None:
    result = hand_made_result()
    message = result_to_wire(result)
    assert message["outputs"][1]["decoder_config"] is None
    back = result_from_wire(message, TINY_LADDER)
    assert back == result
    assert back.skipped_packets == 3
    assert back.index == 7


# --- result refusals -----------------------------------------------------------------

RESULT_FIELDS = [
    "index",
    "decoded_frames",
    "decoded_pixels",
    "duration",
    "elapsed",
    "skipped_packets",
    "outputs",
]
OUTPUT_FIELDS = [
    "profile",
    "data",
    "size",
    "frames",
    "keyframes",
    "width",
    "height",
    "duration",
    "video_bytes",
    "first_keyframe",
    "decoder_config",
    "busy_seconds",
]


def _result() -> dict[str, Any]:
    return copy.deepcopy(result_to_wire(hand_made_result()))


@pytest.mark.parametrize("version", [WIRE_VERSION + 1, 0, "1", 1.5, None])
def test_result_of_another_version_is_refused(version: object) -> None:
    message = _result()
    message["version"] = version
    with pytest.raises(TranscodeError, match=rf"wire result is version {version!r}, .* version 1"):
        result_from_wire(message, TINY_LADDER)


def test_result_without_version_is_refused() -> None:
    message = _result()
    del message["version"]
    with pytest.raises(TranscodeError, match="wire result is version None"):
        result_from_wire(message, TINY_LADDER)


def test_result_version_true_is_not_version_one() -> None:
    message = _result()
    message["version"] = True  # True == 1 in Python, but no lpms sends it
    with pytest.raises(TranscodeError, match="field 'version' has the wrong type bool"):
        result_from_wire(message, TINY_LADDER)


@pytest.mark.parametrize("field", RESULT_FIELDS)
def test_result_missing_a_field_is_refused(field: str) -> None:
    message = _result()
    del message[field]
    with pytest.raises(TranscodeError, match=f"wire result: field '{field}' is missing"):
        result_from_wire(message, TINY_LADDER)


@pytest.mark.parametrize("field", OUTPUT_FIELDS)
def test_output_missing_a_field_is_refused(field: str) -> None:
    message = _result()
    del message["outputs"][1][field]
    with pytest.raises(TranscodeError, match=f"wire output small: field '{field}' is missing"):
        result_from_wire(message, TINY_LADDER)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("index", b"\x07"),
        ("index", 7.0),
        ("decoded_frames", True),
        ("decoded_pixels", "1000"),
        ("duration", "0.5"),
        ("duration", False),
        ("elapsed", None),
        ("skipped_packets", b""),
        ("outputs", ()),
        ("outputs", {"tiny": {}}),
    ],
)
def test_result_field_of_the_wrong_type_is_refused(field: str, value: object) -> None:
    message = _result()
    message[field] = value
    kind = type(value).__name__
    with pytest.raises(
        TranscodeError, match=f"wire result: field '{field}' has the wrong type {kind}"
    ):
        result_from_wire(message, TINY_LADDER)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", b"\x00\xbc"),
        ("size", True),
        ("frames", 12.0),
        ("width", "96"),
        ("duration", None),
        ("busy_seconds", True),
        ("data", "G"),
        ("data", bytearray(b"G")),
        ("data", None),
        ("decoder_config", "avc1.64001f"),
        ("decoder_config", [1, 100]),
        ("first_keyframe", 1),
        ("first_keyframe", None),
        ("profile", None),
        ("profile", b"tiny"),
    ],
)
def test_output_field_of_the_wrong_type_is_refused(field: str, value: object) -> None:
    message = _result()
    message["outputs"][0][field] = value
    kind = type(value).__name__
    with pytest.raises(
        TranscodeError, match=f"wire output tiny: field '{field}' has the wrong type {kind}"
    ):
        result_from_wire(message, TINY_LADDER)


@pytest.mark.parametrize("message", [None, [], "result", b"\x81"])
def test_result_that_is_not_a_mapping_is_refused(message: object) -> None:
    with pytest.raises(TranscodeError, match="wire result must be a mapping"):
        result_from_wire(message, TINY_LADDER)


def test_output_that_is_not_a_mapping_is_refused() -> None:
    message = _result()
    message["outputs"][1] = ["tiny", b"G"]
    with pytest.raises(TranscodeError, match="every output must be a mapping"):
        result_from_wire(message, TINY_LADDER)


def test_result_for_another_ladder_is_refused() -> None:
    message = _result()
    with pytest.raises(TranscodeError, match="2 outputs for a ladder of 1"):
        result_from_wire(message, TINY_LADDER[:1])
    swapped = (TINY_LADDER[1], TINY_LADDER[0])
    with pytest.raises(TranscodeError, match="lists 'tiny' where the ladder has 'small'"):
        result_from_wire(message, swapped)


def test_result_with_a_duration_no_float_holds_is_refused() -> None:
    message = _result()
    message["duration"] = 10**400
    with pytest.raises(TranscodeError, match="duration"):
        result_from_wire(message, TINY_LADDER)


_JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    where=st.sampled_from(["result", "output0", "output1"]),
    key=st.sampled_from([*RESULT_FIELDS, *OUTPUT_FIELDS, "version", "extra"]),
    value=st.just(None) | _JUNK,
    delete=st.booleans(),
)
def test_damaged_result_raises_only_transcode_error(
    where: str, key: str, value: object, delete: bool
) -> None:
    message = _result()
    target = message if where == "result" else message["outputs"][int(where[-1])]
    if delete:
        target.pop(key, None)
    else:
        target[key] = value
    try:
        result = result_from_wire(message, TINY_LADDER)
    except TranscodeError:
        return
    assert isinstance(result, TranscodeResult)


# --- chunks of a file (lpms transcode --engine ray) ---------------------------------


def _chunk(**fields: Any) -> Chunk:
    values: dict[str, Any] = {
        "index": 3,
        "start": 30.0,
        "seconds": 10.0,
        "data": b"\x47" * 188,
        "shift": Fraction(17, 375),
        "framerate": Fraction(30000, 1001),
    }
    values.update(fields)
    return Chunk(**values)


@pytest.mark.parametrize("framerate", [Fraction(30000, 1001), Fraction(25), None])
def test_chunk_request_round_trips(framerate: Fraction | None) -> None:
    chunk = _chunk(framerate=framerate)
    message = chunk_to_wire(TINY_LADDER, "software", chunk)
    assert_plain(message)
    request = chunk_from_wire(pickle.loads(pickle.dumps(message)))
    assert request.profiles == tuple(TINY_LADDER)
    assert request.accel == "software"
    assert (request.index, request.data) == (chunk.index, chunk.data)
    assert request.shift == chunk.shift
    assert request.framerate == framerate


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("version", WIRE_VERSION + 1, "version"),
        ("shift", [1, 0], "'shift'"),
        ("shift", [1.5, 2], "'shift'"),
        ("shift", [True, 2], "'shift'"),
        ("shift", "17/375", "'shift'"),
        ("framerate", [30, -1], "'framerate'"),
        ("data", "not bytes", "'data'"),
        ("index", True, "'index'"),
        ("ladder", [], "'ladder'"),
    ],
)
def test_bad_chunk_request_is_refused_by_field(field: str, value: object, message: str) -> None:
    wire = chunk_to_wire(TINY_LADDER, "software", _chunk())
    wire[field] = value
    with pytest.raises(TranscodeError, match=message):
        chunk_from_wire(wire)


@pytest.mark.parametrize("wire", [None, [], "chunk", 3])
def test_chunk_request_that_is_not_a_mapping_is_refused(wire: object) -> None:
    with pytest.raises(TranscodeError, match="mapping"):
        chunk_from_wire(wire)


def test_a_chunk_that_is_not_media_comes_back_as_an_error_not_a_crash() -> None:
    answer = run_chunk(chunk_to_wire(TINY_LADDER, "software", _chunk(data=b"junk" * 100)))
    assert set(answer) == {"error"}
    assert "not readable media" in answer["error"]
