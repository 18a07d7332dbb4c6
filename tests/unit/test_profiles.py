"""Video profiles: LPMS's presets, names, JSON and TOML, output sizes, `lpms profiles`."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import lpms
from lpms.cli import main
from lpms.transcode.profiles import (
    INTRA_ONLY,
    PRESETS,
    GOPFrames,
    GOPSeconds,
    H264Profile,
    OutputFormat,
    ProfileError,
    VideoCodec,
    VideoProfile,
    output_size,
    parse_bitrate,
    parse_gop,
    parse_profiles,
    profile_by_name,
    profile_from_mapping,
    profile_to_mapping,
    profiles_from_json,
    profiles_from_toml,
)

# Copied from livepeer/lpms ffmpeg/videoprofile.go (the `P...` variables):
# name, Resolution, Bitrate, Framerate, AspectRatio.
LPMS_PRESETS = [
    ("P720p60fps16x9", "1280x720", "6000k", 60, "16:9"),
    ("P720p30fps16x9", "1280x720", "4000k", 30, "16:9"),
    ("P720p25fps16x9", "1280x720", "3500k", 25, "16:9"),
    ("P720p30fps4x3", "960x720", "3500k", 30, "4:3"),
    ("P576p30fps16x9", "1024x576", "1500k", 30, "16:9"),
    ("P576p25fps16x9", "1024x576", "1500k", 25, "16:9"),
    ("P360p30fps16x9", "640x360", "1200k", 30, "16:9"),
    ("P360p25fps16x9", "640x360", "1000k", 25, "16:9"),
    ("P360p30fps4x3", "480x360", "1000k", 30, "4:3"),
    ("P240p30fps16x9", "426x240", "600k", 30, "16:9"),
    ("P240p25fps16x9", "426x240", "600k", 25, "16:9"),
    ("P240p30fps4x3", "320x240", "600k", 30, "4:3"),
    ("P144p30fps16x9", "256x144", "400k", 30, "16:9"),
    ("P144p25fps16x9", "256x144", "400k", 25, "16:9"),
]


# --- presets -------------------------------------------------------------------------


def test_presets_are_exactly_lpms_presets_in_order() -> None:
    assert list(PRESETS) == [row[0] for row in LPMS_PRESETS]


@pytest.mark.parametrize(("name", "resolution", "bitrate", "fps", "aspect"), LPMS_PRESETS)
def test_preset_numbers_match_lpms(
    name: str, resolution: str, bitrate: str, fps: int, aspect: str
) -> None:
    profile = PRESETS[name]
    assert profile.name == name
    assert profile.resolution == resolution
    assert profile.bitrate == int(bitrate.removesuffix("k")) * 1000
    assert profile.framerate == Fraction(fps)
    assert profile.aspect_ratio == aspect
    # LPMS presets leave Profile, GOP and Encoder at their zero values.
    assert profile.codec is VideoCodec.H264
    assert profile.h264_profile is None
    assert profile.gop is None
    assert profile.preset == "veryfast"


def test_presets_are_read_only_and_exported() -> None:
    with pytest.raises(TypeError):
        PRESETS["mine"] = PRESETS["P720p30fps16x9"]  # type: ignore[index]
    assert lpms.VideoProfile is VideoProfile
    assert lpms.profile_by_name("P360p30fps16x9") is PRESETS["P360p30fps16x9"]


# --- names ---------------------------------------------------------------------------


def test_profile_by_name_exact_and_any_case() -> None:
    assert profile_by_name("P240p30fps16x9").resolution == "426x240"
    assert profile_by_name("p240P30FPS16X9") is PRESETS["P240p30fps16x9"]


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(ProfileError, match="did you mean P720p30fps16x9") as caught:
        profile_by_name("P720p30fps16x10")
    assert "lpms profiles" in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, lpms.LPMSError)


def test_parse_profiles_list() -> None:
    profiles = parse_profiles("P720p30fps16x9, P360p30fps16x9,P144p30fps16x9")
    assert [p.name for p in profiles] == ["P720p30fps16x9", "P360p30fps16x9", "P144p30fps16x9"]
    assert parse_profiles("") == ()
    assert parse_profiles("  ") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("P720p30fps16x9,,P360p30fps16x9", "empty name"),
        ("P720p30fps16x9,P720p30fps16x9", "given twice"),
        ("P720p30fps16x9,P1080p", "unknown profile 'P1080p'"),
    ],
)
def test_parse_profiles_errors(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profiles(text)


# --- the profile itself --------------------------------------------------------------


def test_defaults_and_derived_aspect_ratio() -> None:
    profile = VideoProfile("custom", 1280, 720, 3_000_000)
    assert profile.framerate is None  # passthrough
    assert profile.aspect_ratio == "16:9"
    assert profile.gop is None
    assert profile.codec is VideoCodec.H264
    assert profile.preset == "veryfast"
    assert VideoProfile("odd", 426, 240, 1).aspect_ratio == "71:40"


def test_int_framerate_becomes_fraction() -> None:
    assert VideoProfile("a", 640, 360, 1, framerate=30).framerate == Fraction(30)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "profile name"),
        ({"name": "a,b"}, "profile name"),
        ({"name": "../x"}, "profile name"),
        ({"width": 0}, "width must be 2 to"),
        ({"height": 100_000}, "height must be 2 to"),
        ({"width": 640.0}, "width must be an integer"),
        ({"bitrate": 0}, "bitrate must be above 0, or 0 with a quality"),
        ({"bitrate": True}, "bitrate must be an integer"),
        ({"framerate": Fraction(0)}, "frame rate"),
        ({"framerate": 29.97}, "frame rate must be a Fraction"),
        ({"aspect_ratio": "16x9"}, "aspect ratio"),
        ({"codec": "H.264"}, "codec must be a VideoCodec"),
        ({"codec": VideoCodec.VP9, "h264_profile": H264Profile.HIGH}, "needs codec H.264"),
        ({"preset": "very fast"}, "encoder preset"),
        ({"gop": 2}, "gop must be"),
        ({"quality": 0}, "quality must be 1 to 51, got 0"),
        ({"quality": 52}, "quality must be 1 to 51, got 52"),
        ({"quality": 64, "codec": VideoCodec.VP9}, "quality must be 1 to 63"),
        ({"quality": 23.5}, "quality must be an integer"),
        ({"bitrate": -1, "quality": 23}, "bitrate must be 0 to"),
        ({"encoder_options": {"": "1"}}, "encoder option name must look like"),
        ({"encoder_options": {"x=1": "1"}}, "encoder option name must look like"),
        ({"encoder_options": {"crf": 23}}, "encoder option 'crf' must be a string, got 23"),
        ({"encoder_options": {"tune": "a\nb"}}, "encoder option 'tune' must be printable"),
        ({"encoder_options": {f"o{i}": "1" for i in range(65)}}, "more than 64"),
        ({"encoder_options": ["tune"]}, "encoder options must be a mapping"),
        ({"format": "mp4"}, "format must be an OutputFormat"),
        ({"format": OutputFormat.MPEGTS, "codec": VideoCodec.AV1}, "AV1 cannot go into MPEG-TS"),
    ],
)
def test_invalid_profiles_are_refused(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "ok", "width": 640, "height": 360, "bitrate": 1000}
    fields.update(changes)
    with pytest.raises(ProfileError, match=message):
        VideoProfile(**fields)  # type: ignore[arg-type]


def test_h264_profiles_follow_lpms_encoder_options() -> None:
    assert H264Profile.CONSTRAINED_HIGH.encoder_profile == "high"
    assert H264Profile.CONSTRAINED_HIGH.b_frames == 0
    assert H264Profile.BASELINE.b_frames == 0
    assert H264Profile.HIGH.b_frames == H264Profile.MAIN.b_frames == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("H264Baseline", H264Profile.BASELINE),
        ("h264main", H264Profile.MAIN),
        ("H264High", H264Profile.HIGH),
        ("H264ConstrainedHigh", H264Profile.CONSTRAINED_HIGH),
        ("constrained_high", H264Profile.CONSTRAINED_HIGH),
        ("high", H264Profile.HIGH),
        ("none", None),
        ("", None),
    ],
)
def test_h264_profile_names(text: str, expected: H264Profile | None) -> None:
    assert H264Profile.parse(text) is expected


def test_codec_names() -> None:
    assert VideoCodec.parse("") is VideoCodec.H264  # LPMS's default
    assert VideoCodec.parse("H.264") is VideoCodec.H264
    assert VideoCodec.parse("HEVC") is VideoCodec.HEVC
    assert VideoCodec.parse("h265") is VideoCodec.HEVC
    assert VideoCodec.parse("VP9") is VideoCodec.VP9
    assert VideoCodec.parse("av1") is VideoCodec.AV1
    with pytest.raises(ProfileError, match="unknown codec 'VP8'"):
        VideoCodec.parse("VP8")


# --- GOP -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("2", GOPSeconds(Fraction(2))),
        ("0.5", GOPSeconds(Fraction(1, 2))),
        ("2s", GOPSeconds(Fraction(2))),
        (2, GOPSeconds(Fraction(2))),
        (0.1, GOPSeconds(Fraction(1, 10))),
        ("intra", INTRA_ONLY),
        ("60f", GOPFrames(60)),
        ("48 frames", GOPFrames(48)),
    ],
)
def test_parse_gop(value: str | float, expected: object) -> None:
    assert parse_gop(value) == expected


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5f", "2h", True, float("nan")])
def test_parse_gop_refuses(value: str | float) -> None:
    with pytest.raises(ProfileError, match="GOP"):
        parse_gop(value)


def test_gop_keyframe_interval() -> None:
    assert GOPSeconds(Fraction(2)).keyframe_interval(Fraction(30)) == 60
    assert GOPSeconds(Fraction(2)).keyframe_interval(Fraction(30000, 1001)) == 60
    assert GOPSeconds(Fraction(1, 100)).keyframe_interval(Fraction(25)) == 1
    assert GOPSeconds(Fraction(2)).keyframe_interval(None) is None  # placed by time
    assert GOPFrames(48).keyframe_interval(None) == 48
    assert INTRA_ONLY.keyframe_interval(Fraction(30)) == 1


def test_parse_bitrate() -> None:
    assert parse_bitrate("4000k") == 4_000_000
    assert parse_bitrate("2.5M") == 2_500_000
    assert parse_bitrate(123) == 123
    with pytest.raises(ProfileError, match="bitrate"):
        parse_bitrate("fast")


# --- JSON ----------------------------------------------------------------------------

# The shape of LPMS's ffmpeg.JsonProfile (ffmpeg/videoprofile.go) as go-livepeer's
# transcoding options carry it.
LPMS_JSON = """[
  {"name": "720p", "width": 1280, "height": 720, "bitrate": 4000000, "fps": 30,
   "fpsDen": 1, "profile": "H264High", "gop": "2"},
  {"width": 640, "height": 360, "bitrate": 1000000, "fps": 30000, "fpsDen": 1001,
   "profile": "H264ConstrainedHigh", "gop": "intra", "encoder": "H.264"},
  {"name": "hevc", "width": 854, "height": 480, "bitrate": 1500000, "encoder": "HEVC",
   "colorDepth": 0, "chromaFormat": 0}
]"""


def test_json_in_lpms_shape() -> None:
    first, second, third = profiles_from_json(LPMS_JSON)
    assert first == VideoProfile(
        "720p",
        1280,
        720,
        4_000_000,
        Fraction(30),
        gop=GOPSeconds(Fraction(2)),
        h264_profile=H264Profile.HIGH,
    )
    assert second.name == "custom_640x360_1000000"  # LPMS's name for a nameless profile
    assert second.framerate == Fraction(30000, 1001)
    assert second.gop == INTRA_ONLY
    assert second.h264_profile is H264Profile.CONSTRAINED_HIGH
    assert third.framerate is None  # fps 0 or missing: passthrough
    assert third.codec is VideoCodec.HEVC
    assert third.h264_profile is None


def test_json_object_with_profiles_and_preset_names() -> None:
    text = '{"profiles": ["P360p30fps16x9", {"width": 256, "height": 144, "bitrate": "400k",'
    text += ' "preset": "medium", "aspectRatio": "16:9"}]}'
    preset, custom = profiles_from_json(text.encode())
    assert preset is PRESETS["P360p30fps16x9"]
    assert custom.bitrate == 400_000
    assert custom.preset == "medium"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("42", "'profiles' must be a list"),
        ('{"renditions": []}', "'profiles' list"),
        ("[7]", r"profiles\[0\]: expected an object"),
        ('[{"height": 720, "bitrate": 1}]', r"profiles\[0\]: field 'width' is missing"),
        ('[{"width": "1280", "height": 720, "bitrate": 1}]', "field 'width' must be an integer"),
        ('[{"width": 1280, "height": 720}]', "field 'bitrate' is missing"),
        ('[{"width": 1280, "height": 720, "bitrate": "x"}]', "field 'bitrate'"),
        ('[{"width": 2, "height": 2, "bitrate": 1, "fps": -1}]', "'fps'"),
        ('[{"width": 2, "height": 2, "bitrate": 1, "gop": "-2"}]', "field 'gop'"),
        ('[{"width": 2, "height": 2, "bitrate": 1, "profile": "H264Extended"}]', "H.264 profile"),
        ('[{"width": 2, "height": 2, "bitrate": 1, "encoder": "VP8"}]', "unknown codec"),
        ('[{"width": 2, "height": 2, "bitrate": 1, "colorDepth": 2}]', "8-bit 4:2:0"),
        ('[{"width": 2, "height": 2, "bitrate": 1, "bitrat": 1}]', "unknown field 'bitrat'"),
        ('[{"width": 2, "height": 2, "bitrate": 1, "name": "a b"}]', "profile name"),
        ('[{"width": 2, "height": 2, "bitrate": 1}, {"width": 2, "height": 2, "bitrate": 1}]',
         "given twice"),
    ],
)  # fmt: skip
def test_json_errors_name_the_field(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        profiles_from_json(text)


# --- TOML ----------------------------------------------------------------------------


def test_toml_profiles() -> None:
    text = """
[[profiles]]
name = "720p"
width = 1280
height = 720
bitrate = "4000k"
fps = 30
gop = 2.0
profile = "high"
preset = "veryfast"

[[profiles]]
name = "av1"
width = 640
height = 360
bitrate = 800000
encoder = "AV1"
gop = "60f"
"""
    hd, av1 = profiles_from_toml(text)
    assert hd == VideoProfile(
        "720p",
        1280,
        720,
        4_000_000,
        Fraction(30),
        gop=GOPSeconds(Fraction(2)),
        h264_profile=H264Profile.HIGH,
    )
    assert av1.codec is VideoCodec.AV1
    assert av1.gop == GOPFrames(60)
    assert av1.framerate is None


def test_toml_preset_names() -> None:
    profiles = profiles_from_toml('profiles = ["P720p30fps16x9", "P144p30fps16x9"]')
    assert [p.name for p in profiles] == ["P720p30fps16x9", "P144p30fps16x9"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("profiles = [", "not valid TOML"),
        ("[server]\nport = 1", "'profiles' list"),
        ("[[profiles]]\nwidth = 1280\nheight = 720\nbitrate = 1.5", "field 'bitrate'"),
        ('profiles = ["P999p"]', r"TOML profiles\[0\]: unknown profile"),
    ],
)
def test_toml_errors(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        profiles_from_toml(text)


# --- quality, encoder options, format ------------------------------------------------


def test_quality_with_or_without_a_bitrate() -> None:
    crf = VideoProfile("crf", 640, 360, 0, quality=23)
    assert (crf.bitrate, crf.quality) == (0, 23)
    capped = VideoProfile("capped", 640, 360, 1_000_000, quality=23)
    assert capped.bitrate == 1_000_000
    assert VideoProfile("av1", 640, 360, 0, codec=VideoCodec.AV1, quality=63).quality == 63


def test_encoder_options_are_a_read_only_copy() -> None:
    given = {"tune": "zerolatency"}
    profile = VideoProfile("a", 640, 360, 1, encoder_options=given)
    given["tune"] = "film"
    assert profile.encoder_options == {"tune": "zerolatency"}
    with pytest.raises(TypeError):
        profile.encoder_options["tune"] = "film"  # type: ignore[index]
    # Still hashable, and equal profiles hash alike.
    assert hash(profile) == hash(VideoProfile("a", 640, 360, 1, encoder_options=dict(given)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mpegts", OutputFormat.MPEGTS),
        ("TS", OutputFormat.MPEGTS),
        ("mp4", OutputFormat.MP4),
        ("fmp4", OutputFormat.FMP4),
        ("cmaf", OutputFormat.FMP4),
    ],
)
def test_output_format_names(text: str, expected: OutputFormat) -> None:
    assert OutputFormat.parse(text) is expected


def test_output_formats() -> None:
    assert [f.value for f in OutputFormat] == ["mpegts", "mp4", "fmp4"]
    assert OutputFormat.CMAF is OutputFormat.FMP4
    assert [f.extension for f in OutputFormat] == ["ts", "mp4", "mp4"]
    assert not OutputFormat.MPEGTS.carries(VideoCodec.VP9)
    assert OutputFormat.MPEGTS.carries(VideoCodec.HEVC)
    assert OutputFormat.MP4.carries(VideoCodec.AV1)
    with pytest.raises(ProfileError, match="unknown format 'mkv'; choose one of mpegts, mp4, fmp4"):
        OutputFormat.parse("mkv")


def test_json_quality_options_and_format() -> None:
    text = """[
      {"name": "crf", "width": 1280, "height": 720, "quality": 23},
      {"name": "capped", "width": 640, "height": 360, "bitrate": 1000000, "quality": 28,
       "encoder_options": {"tune": "zerolatency", "x264-params": "keyint=60"},
       "format": "mp4"},
      {"name": "lpms0", "width": 640, "height": 360, "bitrate": 1000000, "quality": 0},
      {"name": "frag", "width": 640, "height": 360, "bitrate": 1000000, "encoder": "VP9",
       "format": "fmp4"}
    ]"""
    crf, capped, lpms0, frag = profiles_from_json(text)
    assert (crf.bitrate, crf.quality, crf.format) == (0, 23, None)
    assert (capped.bitrate, capped.quality, capped.format) == (1_000_000, 28, OutputFormat.MP4)
    assert dict(capped.encoder_options) == {"tune": "zerolatency", "x264-params": "keyint=60"}
    assert lpms0.quality is None  # LPMS's quality 0: none
    assert frag.format is OutputFormat.FMP4


def test_toml_quality_options_and_format() -> None:
    text = """
[[profiles]]
name = "crf"
width = 1280
height = 720
quality = 23
format = "mp4"
encoder_options = { tune = "zerolatency" }

[[profiles]]
name = "intra"
width = 640
height = 360
bitrate = "1M"
gop = "intra"

[profiles.encoder_options]
x264-params = "keyint=1"
"""
    crf, intra = profiles_from_toml(text)
    assert crf == VideoProfile(
        "crf", 1280, 720, 0, quality=23, format=OutputFormat.MP4,
        encoder_options={"tune": "zerolatency"},
    )  # fmt: skip
    assert intra.gop == INTRA_ONLY
    assert dict(intra.encoder_options) == {"x264-params": "keyint=1"}


def test_new_fields_round_trip_in_lpms_names() -> None:
    profile = VideoProfile(
        "all", 640, 360, 900_000, quality=30, encoder_options={"tune": "film"},
        format=OutputFormat.FMP4,
    )  # fmt: skip
    mapping = profile_to_mapping(profile)
    assert mapping["quality"] == 30
    assert mapping["encoder_options"] == {"tune": "film"}
    assert mapping["format"] == "fmp4"
    assert profile_from_mapping(mapping) == profile
    plain = profile_to_mapping(PRESETS["P144p30fps16x9"])
    assert not {"quality", "encoder_options", "format"} & set(plain)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"width": 2, "height": 2}]', "field 'bitrate' is missing \\(or give a 'quality'\\)"),
        ('[{"width": 2, "height": 2, "bitrate": 0}]', "field 'bitrate' must be positive"),
        ('[{"width": 2, "height": 2, "quality": -1}]', "field 'quality' must not be negative"),
        ('[{"width": 2, "height": 2, "quality": "23"}]', "field 'quality' must be an integer"),
        ('[{"width": 2, "height": 2, "quality": 60}]', "quality must be 1 to 51, got 60"),
        ('[{"width": 2, "height": 2, "quality": 9, "encoder_options": "tune=film"}]',
         "field 'encoder_options' must be an object of strings"),
        ('[{"width": 2, "height": 2, "quality": 9, "encoder_options": {"g": 1}}]',
         "encoder option 'g' must be a string"),
        ('[{"width": 2, "height": 2, "quality": 9, "format": "mkv"}]', "unknown format 'mkv'"),
        ('[{"width": 2, "height": 2, "quality": 9, "format": 4}]',
         "field 'format' must be a string"),
        ('[{"width": 2, "height": 2, "quality": 9, "encoder": "AV1", "format": "mpegts"}]',
         "AV1 cannot go into MPEG-TS"),
        ('[{"width": 2, "height": 2, "bitrate": 1, "qualty": 9}]',
         "unknown field 'qualty'; did you mean 'quality'\\?"),
        ('[{"width": 2, "height": 2, "bitrate": 1, "encoderOptions": {}}]',
         "unknown field 'encoderOptions'; did you mean 'encoder_options'\\?"),
    ],
)  # fmt: skip
def test_json_errors_for_the_new_fields(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        profiles_from_json(text)


# --- output size ---------------------------------------------------------------------

P720 = PRESETS["P720p30fps16x9"]
P240 = PRESETS["P240p30fps16x9"]


@pytest.mark.parametrize(
    ("profile", "source", "expected"),
    [
        # 16:9 sources: the profile's own size, as LPMS.
        (P720, (1920, 1080), (1280, 720)),
        (P240, (1920, 1080), (426, 240)),
        (PRESETS["P360p30fps16x9"], (1280, 720), (640, 360)),
        # Wider than the box: width pinned, as LPMS (2.37:1 -> 1280x540).
        (P720, (2560, 1080), (1280, 540)),
        # 4:3 into a 16:9 box: height pinned. LPMS would pin the width and give
        # 1280x960, taller than the profile; we stay in the box.
        (P720, (640, 480), (960, 720)),
        (P240, (1440, 1080), (320, 240)),
        # 4:3 into a 4:3 box.
        (PRESETS["P720p30fps4x3"], (1024, 768), (960, 720)),
        # Vertical 9:16: the box turned, as LPMS (a phone's portrait video).
        (P720, (1080, 1920), (720, 1280)),
        (P240, (720, 1280), (240, 426)),  # 239.6 -> 240
        # Portrait 3:4 in the turned box: width pinned; 360 * 4/3 = 480.
        (PRESETS["P360p30fps16x9"], (480, 640), (360, 480)),
        # Odd source sizes still give even outputs.
        (P720, (1279, 719), (1280, 720)),
        (P240, (853, 480), (426, 240)),
        (P720, (641, 481), (960, 720)),  # 959.5 -> 960
        # Extreme shapes keep at least 2 pixels.
        (P240, (10_000, 2), (426, 2)),
        (P240, (1, 5000), (2, 426)),
    ],
)
def test_output_size(
    profile: VideoProfile, source: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert output_size(profile, *source) == expected


def test_output_size_odd_box_rounds_down_to_even() -> None:
    box = VideoProfile("odd", 853, 481, 1000)
    assert output_size(box, 853, 481) == (852, 480)
    assert output_size(box, 1920, 1080) == (852, 480)


def test_output_size_refuses_bad_sources() -> None:
    with pytest.raises(ProfileError, match="source width"):
        output_size(P720, 0, 720)


@given(
    box_width=st.integers(2, 4096),
    box_height=st.integers(2, 4096),
    source_width=st.integers(1, 8192),
    source_height=st.integers(1, 8192),
)
def test_output_size_stays_in_box_even_and_keeps_shape(
    box_width: int, box_height: int, source_width: int, source_height: int
) -> None:
    profile = VideoProfile("box", box_width, box_height, 1000)
    width, height = output_size(profile, source_width, source_height)
    if (source_width > source_height) != (box_width > box_height):
        box_width, box_height = box_height, box_width  # a source of the other shape
    assert 2 <= width <= box_width
    assert 2 <= height <= box_height
    assert width % 2 == 0
    assert height % 2 == 0
    # The computed side is within one pixel of the source's shape, unless it would be
    # under 2 pixels and was raised to 2.
    exact_height = Fraction(width * source_height, source_width)
    exact_width = Fraction(height * source_width, source_height)
    assume(min(exact_height, exact_width) >= 2)
    assert abs(height - exact_height) <= 1 or abs(width - exact_width) <= 1


# --- lpms profiles -------------------------------------------------------------------


def test_cli_lists_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "RESOLUTION", "BITRATE", "FPS", "CODEC"]
    rows = [line.split() for line in lines[1:]]
    assert rows == [
        [name, resolution, bitrate, str(fps), "H.264"]
        for name, resolution, bitrate, fps, _ in LPMS_PRESETS
    ]
