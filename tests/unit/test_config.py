"""The settings loader: defaults < TOML file < LPMS_* environment < overrides (flags),
every type's parsing, every error's message, and the TOML that --print-config and
lpms.example.toml are made of."""

from __future__ import annotations

import enum
import re
import tomllib
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lpms
from lpms import (
    PRESETS,
    Accel,
    AuthSettings,
    ConfigError,
    GOPFrames,
    GOPSeconds,
    H264Profile,
    HLSSettings,
    Settings,
    TranscodeSettings,
    VideoCodec,
    VideoProfile,
    load_settings,
)
from lpms.config import (
    NOT_SET,
    LogSettings,
    env_names,
    example_config,
    load,
    settings_of,
    to_toml,
    toml_value,
)
from lpms.rtmp.connection import ConnectionLimits
from lpms.rtmp.settings import ListenerSettings
from lpms.transcode.settings import TranscodeCaps
from lpms.webhook_settings import WebhookSettings

EXAMPLE = Path(__file__).parents[2] / "lpms.example.toml"


def write(tmp_path: Path, text: str, name: str = "lpms.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**{"env": {}, **kwargs})  # type: ignore[arg-type]
    return str(caught.value)


# -- precedence ----------------------------------------------------------------------


def test_defaults_without_file_environment_or_overrides() -> None:
    assert load_settings(env={}) == Settings()


def test_precedence_defaults_file_environment_flags(tmp_path: Path) -> None:
    """Each layer overrides the one before, for a top-level, a nested and a doubly
    nested setting; what a later layer does not give stays as the earlier one had it."""
    config = write(
        tmp_path,
        'host = "127.0.0.1"\nrtmp_port = 1001\nhttp_port = 2001\n'
        "[hls]\nwindow = 11\ngrace_period = 12.0\nextra_segments = 13\n"
        "[rtmp.connection]\nmax_message_size = 1111\nmax_chunk_streams = 12\n"
        "max_amf_depth = 13\n",
    )
    env = {
        "LPMS_RTMP_PORT": "1002",
        "LPMS_HTTP_PORT": "2002",
        "LPMS_HLS_GRACE_PERIOD": "22",
        "LPMS_HLS_EXTRA_SEGMENTS": "23",
        "LPMS_RTMP_CONNECTION_MAX_CHUNK_STREAMS": "22",
        "LPMS_RTMP_CONNECTION_MAX_AMF_DEPTH": "23",
        "PATH": "/usr/bin",  # not ours: ignored
    }
    flags = {"http_port": "2003", "hls.extra_segments": 33, "rtmp.connection.max_amf_depth": "33"}
    settings = load_settings(config, env, flags)
    assert (settings.host, settings.rtmp_port, settings.http_port) == ("127.0.0.1", 1002, 2003)
    hls = settings.hls
    assert (hls.window, hls.grace_period, hls.extra_segments) == (11, 22.0, 33)
    assert hls.segment_duration == HLSSettings().segment_duration  # nobody set it
    limits = settings.rtmp.connection
    assert (limits.max_message_size, limits.max_chunk_streams, limits.max_amf_depth) == (
        1111,
        22,
        33,
    )
    assert settings.rtmp.backlog == ListenerSettings().backlog


@pytest.mark.parametrize(
    ("path", "toml", "env_name", "default"),
    [
        ("rtmp_port", "rtmp_port = {}", "LPMS_RTMP_PORT", 1935),
        ("hls.window", "[hls]\nwindow = {}", "LPMS_HLS_WINDOW", 6),
        (
            "rtmp.connection.max_message_size",
            "[rtmp.connection]\nmax_message_size = {}",
            "LPMS_RTMP_CONNECTION_MAX_MESSAGE_SIZE",
            8 << 20,
        ),
    ],
)
def test_each_layer_wins_over_the_one_before(
    tmp_path: Path, path: str, toml: str, env_name: str, default: int
) -> None:
    def value(settings: Settings) -> object:
        found: object = settings
        for name in path.split("."):
            found = getattr(found, name)
        return found

    config = write(tmp_path, toml.format(1111))
    assert value(load_settings(env={})) == default
    assert value(load_settings(config, env={})) == 1111
    assert value(load_settings(config, env={env_name: "2222"})) == 2222
    assert value(load_settings(config, {env_name: "2222"}, {path: 3333})) == 3333
    assert value(load_settings(env={env_name: "2222"})) == 2222  # no file
    assert value(load_settings(env={}, overrides={path: "3333"})) == 3333


def test_origins_say_where_each_value_came_from(tmp_path: Path) -> None:
    config = write(tmp_path, "[hls]\nwindow = 3\nrecord = true\n")
    loaded = load(
        Settings,
        path=config,
        env={"LPMS_HLS_WINDOW": "4"},
        overrides={"hls.record": False},
        sources={"hls.record": "--no-record"},
    )
    assert loaded.origins == {
        "hls.window": "from LPMS_HLS_WINDOW",
        "hls.record": "from --no-record",
    }


def test_the_environment_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LPMS_MAX_STREAMS", "7")
    assert load_settings().max_streams == 7
    assert load_settings(env={}).max_streams == Settings().max_streams


def test_settings_still_build_from_python() -> None:
    settings = Settings(hls=HLSSettings(window=9), auth=AuthSettings(publish_key="k"))
    assert settings.hls.window == 9
    assert lpms.load_settings is load_settings


# -- environment names ---------------------------------------------------------------


def test_every_setting_has_one_environment_name_and_it_is_unambiguous() -> None:
    names = env_names(Settings)
    assert len(names) == len(settings_of(Settings))  # env_names refuses a clash
    for name, setting in names.items():
        assert name == "LPMS_" + setting.name.replace(".", "_").upper()
    assert names["LPMS_RTMP_PORT"].name == "rtmp_port"
    assert names["LPMS_HLS_SEGMENT_DURATION"].name == "hls.segment_duration"
    assert names["LPMS_RTMP_CONNECTION_MAX_MESSAGE_SIZE"].name == "rtmp.connection.max_message_size"
    assert names["LPMS_RTMP_READ_INTERVAL"].name == "rtmp.read_interval"


@dataclass(frozen=True, slots=True)
class _Inner:
    port: int = 1


@dataclass(frozen=True, slots=True)
class _Clashing:
    rtmp_port: int = 1
    rtmp: _Inner = field(default_factory=_Inner)


def test_a_name_two_settings_would_share_is_refused() -> None:
    with pytest.raises(TypeError, match=r"LPMS_RTMP_PORT would name both rtmp_port and rtmp\.port"):
        env_names(_Clashing)


def test_unknown_lpms_variables_are_errors_with_a_suggestion() -> None:
    message = error(env={"LPMS_HLS_WINDOWS": "3"})
    assert message == (
        "unknown environment variable LPMS_HLS_WINDOWS: no such setting; "
        "did you mean LPMS_HLS_WINDOW?"
    )
    assert "LPMS_NOTHING_LIKE_IT" in error(env={"LPMS_NOTHING_LIKE_IT": "1"})


@pytest.mark.parametrize(
    "name",
    [
        "LPMS_SERVICE_HOST",  # Kubernetes service links for a Service named lpms
        "LPMS_SERVICE_PORT",
        "LPMS_SERVICE_PORT_RTMP",
        "LPMS_PORT",
        "LPMS_PORT_1935_TCP_ADDR",
        "LPMS_REQUIRE_BROWSER",  # the test suite's
        "lpms_hls_window",  # not upper case: not ours
        "XLPMS_HLS_WINDOW",
    ],
)
def test_names_lpms_does_not_own_are_ignored(name: str) -> None:
    assert load_settings(env={name: "tcp://10.0.0.1:1935"}) == Settings()


# -- parsing by type -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("1", True),
        (" True ", True),
        ("false", False),
        ("No", False),
        ("off", False),
        ("0", False),
    ],
)
def test_booleans_from_the_environment(text: str, value: bool) -> None:
    assert load_settings(env={"LPMS_HLS_RECORD": text}).hls.record is value


def test_a_bad_boolean() -> None:
    assert error(env={"LPMS_HLS_ENABLED": "maybe"}) == (
        'hls.enabled = "maybe" (from LPMS_HLS_ENABLED): '
        "not a boolean (true or false, yes or no, on or off, 1 or 0)"
    )


@pytest.mark.parametrize(("text", "value"), [("42", 42), (" 42 ", 42), ("1_000", 1000)])
def test_integers_from_the_environment(text: str, value: int) -> None:
    assert load_settings(env={"LPMS_MAX_STREAMS": text}).max_streams == value


@pytest.mark.parametrize("text", ["abc", "1.5", "", "0x10"])
def test_bad_integers(text: str) -> None:
    assert error(env={"LPMS_MAX_STREAMS": text}) == (
        f'max_streams = "{text}" (from LPMS_MAX_STREAMS): not an integer'
    )


@pytest.mark.parametrize(("text", "value"), [("0.5", 0.5), ("3", 3.0), ("1e1", 10.0)])
def test_floats_from_the_environment(text: str, value: float) -> None:
    assert load_settings(env={"LPMS_HLS_SEGMENT_DURATION": text}).hls.segment_duration == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [("abc", "not a number"), ("nan", "not a finite number"), ("inf", "not a finite number")],
)
def test_bad_floats(text: str, reason: str) -> None:
    assert error(env={"LPMS_HLS_SEGMENT_DURATION": text}) == (
        f'hls.segment_duration = "{text}" (from LPMS_HLS_SEGMENT_DURATION): {reason}'
    )


def test_strings_and_optional_strings() -> None:
    env = {"LPMS_HOST": "::1", "LPMS_WORKDIR": "/var/lib/lpms", "LPMS_AUTH_PUBLISH_KEY": "s3cr3t"}
    settings = load_settings(env=env)
    assert (settings.host, settings.workdir, settings.auth.publish_key) == (
        "::1",
        "/var/lib/lpms",
        "s3cr3t",
    )
    assert settings.auth.url is None  # left out: unset


def test_an_empty_optional_is_refused_not_read_as_none(tmp_path: Path) -> None:
    """An unset shell variable in ``LPMS_AUTH_PUBLISH_KEY=$KEY`` must not open the server."""
    assert error(env={"LPMS_AUTH_PUBLISH_KEY": ""}) == (
        'auth.publish_key = "" (from LPMS_AUTH_PUBLISH_KEY): empty; to leave it unset, leave it out'
    )
    config = write(tmp_path, '[webhook]\nurl = ""\n')
    assert error(path=config) == (
        f'webhook.url = "" (in {config}): empty; to leave it unset, leave it out'
    )
    assert load_settings(env={}, overrides={"workdir": None}).workdir is None  # from Python


def test_enums_parse_by_value_in_any_case() -> None:
    assert load_settings(env={"LPMS_TRANSCODE_ACCEL": "NVIDIA"}).transcode.accel is Accel.NVIDIA
    assert load_settings(env={}, overrides={"transcode.accel": Accel.NVIDIA}).transcode.accel is (
        Accel.NVIDIA
    )
    assert error(env={"LPMS_TRANSCODE_ACCEL": "amd"}) == (
        'transcode.accel = "amd" (from LPMS_TRANSCODE_ACCEL): '
        "unknown accel 'amd'; choose one of software, nvidia"
    )


def test_log_settings_are_checked_and_lower_cased() -> None:
    assert load_settings(env={"LPMS_LOG_LEVEL": "DEBUG"}).log == LogSettings("debug", "text")
    assert load_settings(overrides={"log.format": "json"}, env={}).log.format == "json"
    assert error(env={"LPMS_LOG_FORMAT": "xml"}) == (
        "log: log format must be one of text, json, got 'xml' (log.format = \"xml\" from "
        "LPMS_LOG_FORMAT)"
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[hls]\nwindow = "6"', 'hls.window = "6" ({}): not an integer'),
        ("[hls]\nwindow = true", "hls.window = true ({}): not an integer"),
        ("[hls]\nwindow = 6.0", "hls.window = 6.0 ({}): not an integer"),
        ('[hls]\nenabled = "yes"', 'hls.enabled = "yes" ({}): not a boolean'),
        ('[hls]\nsegment_duration = "2"', 'hls.segment_duration = "2" ({}): not a number'),
        ("host = 127", "host = 127 ({}): not a string (quote it)"),
        ("[transcode]\naccel = 1", "transcode.accel = 1 ({}): not a string (quote it)"),
        ("[transcode]\nprofiles = 3", "transcode.profiles = 3 ({}): not a list of profiles"),
    ],
)
def test_toml_values_must_have_the_settings_type(tmp_path: Path, toml: str, message: str) -> None:
    """Unlike the environment's text, a TOML value is typed: a quoted number is a mistake."""
    config = write(tmp_path, toml)
    assert error(path=config).startswith(message.format(f"in {config}"))


def test_a_toml_integer_is_a_float_setting(tmp_path: Path) -> None:
    config = write(tmp_path, "shutdown_timeout = 3\n[hls]\nsegment_duration = 4\n")
    settings = load_settings(config, env={})
    assert (settings.shutdown_timeout, settings.hls.segment_duration) == (3.0, 4.0)
    assert isinstance(settings.hls.segment_duration, float)


class _Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, slots=True)
class _Tuples:
    numbers: tuple[int, ...] = ()
    colors: tuple[_Color, ...] = (_Color.RED,)


def test_tuples_from_lists_and_comma_separated_text(tmp_path: Path) -> None:
    config = write(tmp_path, 'numbers = [1, 2]\ncolors = ["BLUE", "red"]\n')
    from_file = load(_Tuples, path=config, env={}).settings
    assert from_file == _Tuples((1, 2), (_Color.BLUE, _Color.RED))
    from_env = load(_Tuples, env={"LPMS_NUMBERS": "3, 4,5", "LPMS_COLORS": ""}).settings
    assert from_env == _Tuples((3, 4, 5), ())
    with pytest.raises(ConfigError, match=r'numbers = "3,x" \(from LPMS_NUMBERS\): not an integer'):
        load(_Tuples, env={"LPMS_NUMBERS": "3,x"})
    with pytest.raises(ConfigError, match=r"colors = \[\"green\"\] .*: must be one of red, blue"):
        load(_Tuples, path=write(tmp_path, 'colors = ["green"]'), env={})


# -- profiles ------------------------------------------------------------------------


def test_profiles_from_a_comma_list_of_preset_names() -> None:
    env = {"LPMS_TRANSCODE_PROFILES": "P360p30fps16x9, p240p30fps16x9"}
    profiles = load_settings(env=env).transcode.profiles
    assert profiles == (PRESETS["P360p30fps16x9"], PRESETS["P240p30fps16x9"])
    assert load_settings(env={"LPMS_TRANSCODE_PROFILES": ""}).transcode.profiles == ()


def test_profiles_as_toml_names_and_tables(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "[transcode]\nprofiles = [\n"
        '  "P240p30fps16x9",\n'
        '  { name = "hd", width = 1280, height = 720, bitrate = "3000k", fps = 30, gop = "2" },\n'
        "]\n",
    )
    first, second = load_settings(config, env={}).transcode.profiles
    assert first == PRESETS["P240p30fps16x9"]
    assert (second.name, second.resolution, second.bitrate) == ("hd", "1280x720", 3_000_000)
    assert (second.framerate, second.gop) == (Fraction(30), GOPSeconds(Fraction(2)))


def test_a_profiles_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "ladder.json").write_text('[{"name": "small", "width": 320, "height": 180, '
                                          '"bitrate": 300000}]')  # fmt: skip
    config = write(tmp_path, '[transcode]\nprofiles = "ladder.json"\n')
    (profile,) = load_settings(config, env={}).transcode.profiles
    assert profile.name == "small"
    missing = error(env={"LPMS_TRANSCODE_PROFILES": str(tmp_path / "nope.toml")})
    assert missing.startswith(
        f'transcode.profiles = "{tmp_path / "nope.toml"}" (from LPMS_TRANSCODE_PROFILES): '
        f"cannot read profiles file {tmp_path / 'nope.toml'}: No such file"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('"P361p"', "unknown profile 'P361p'"),
        ('["P240p30fps16x9", "P240p30fps16x9"]', "profile P240p30fps16x9 is given twice"),
        ("[{ width = 2 }]", "profiles[0]: field 'height' is missing"),
        ("[3]", "profiles[0]: not a profile table or a preset name"),
    ],
)
def test_bad_profiles_name_the_setting(tmp_path: Path, value: str, reason: str) -> None:
    config = write(tmp_path, f"[transcode]\nprofiles = {value}\n")
    message = error(path=config)
    assert message.startswith("transcode.profiles = ")
    assert f"(in {config}): " in message
    assert reason in message


# -- errors: unknown names, bad files, the dataclasses' own checks --------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[hls]\nwindw = 3", "unknown setting [hls] windw in {}; did you mean window?"),
        ("rtmp_prot = 3", "unknown setting rtmp_prot in {}; did you mean rtmp_port?"),
        ("[hsl]\nwindow = 3", "unknown section [hsl] in {}; did you mean [hls]?"),
        (
            "[rtmp.connectoin]\nx = 1",
            "unknown section [rtmp.connectoin] in {}; did you mean [rtmp.connection]?",
        ),
        ("[nothing]\nx = 1", "unknown section [nothing] in {}"),
        ("hls = 3", "hls in {} is a section: write [hls]"),
        ("[rtmp]\nconnection = 3", "rtmp.connection in {} is a section: write [rtmp.connection]"),
        ("[hls.window]\nx = 1", "hls.window in {} is a setting, not a section"),
    ],
)
def test_unknown_or_misplaced_toml_names(tmp_path: Path, toml: str, message: str) -> None:
    config = write(tmp_path, toml)
    assert error(path=config) == message.format(config)


def test_a_missing_unreadable_or_invalid_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert error(path=missing) == f"cannot read config file {missing}: No such file or directory"
    broken = write(tmp_path, "[hls\nwindow = 3")
    assert error(path=broken).startswith(f"config file {broken} is not valid TOML: ")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'host = "\xe9"')
    assert error(path=latin1) == f"config file {latin1} is not UTF-8 text"


def test_unknown_overrides(tmp_path: Path) -> None:
    assert error(overrides={"hls.windw": 3}) == (
        "unknown setting 'hls.windw' from overrides; did you mean hls.window?"
    )
    assert error(overrides={"hls.windw": 3}, sources={"hls.windw": "--windw"}).startswith(
        "unknown setting 'hls.windw' from --windw"
    )


def test_a_sections_own_check_names_the_setting_and_its_source(tmp_path: Path) -> None:
    assert error(env={"LPMS_AUTH_TIMEOUT": "-1"}) == (
        'auth: auth timeout must be > 0, got -1.0 (auth.timeout = "-1" from LPMS_AUTH_TIMEOUT)'
    )
    config = write(tmp_path, "[stream]\nmax_gop_packets = 0\nmax_queue_packets = 5\n")
    assert error(path=config) == (
        "stream: max_gop_packets must be at least 1, got 0 "
        f"(stream.max_gop_packets = 0 in {config})"
    )
    assert error(
        env={}, overrides={"webhook.url": "ftp://x"}, sources={"webhook.url": "--webhook-url"}
    ) == (
        "webhook: webhook url must be an http:// or https:// URL with a host, got 'ftp://x' "
        '(webhook.url = "ftp://x" from --webhook-url)'
    )


def test_top_level_checks(tmp_path: Path) -> None:
    assert error(env={"LPMS_RTMP_PORT": "70000"}) == (
        'rtmp_port must be 0 to 65535 or off, got 70000 (rtmp_port = "70000" from LPMS_RTMP_PORT)'
    )
    assert "max_streams must be at least 1" in error(env={"LPMS_MAX_STREAMS": "0"})
    assert "host must not be empty" in error(env={"LPMS_HOST": ""})
    assert "shutdown_timeout must be >= 0 s" in error(env={"LPMS_SHUTDOWN_TIMEOUT": "-1"})
    assert "max_headers must be at least 1" in error(env={"LPMS_HTTP_MAX_HEADERS": "0"})


def test_a_check_that_names_no_setting_lists_every_value_given(tmp_path: Path) -> None:
    @dataclass(frozen=True, slots=True)
    class Pair:
        low: int = 0
        high: int = 1

        def __post_init__(self) -> None:
            if self.low >= self.high:
                raise ValueError("the range is empty")

    with pytest.raises(ConfigError) as caught:
        load(Pair, env={"LPMS_LOW": "5", "LPMS_HIGH": "2"})
    assert str(caught.value) == (
        'the range is empty (high = "2" from LPMS_HIGH, low = "5" from LPMS_LOW)'
    )


# -- TOML out: --print-config and the example file ----------------------------------------


def _unusual_settings() -> Settings:
    custom = VideoProfile(
        "hd_hevc", 1280, 720, 2_500_001, framerate=Fraction(30000, 1001), gop=GOPSeconds(
            Fraction(1, 2)), codec=VideoCodec.HEVC, preset="medium", aspect_ratio="4:3",
    )  # fmt: skip
    high = VideoProfile(
        "high", 640, 360, 900_000, gop=GOPFrames(48), h264_profile=H264Profile.CONSTRAINED_HIGH
    )
    intra = replace(PRESETS["P144p30fps16x9"], name="intra", gop=GOPFrames(1))
    return Settings(
        host="::",
        rtmp_port=0,
        workdir='/srv/"lpms"\\rec\nörds',
        shutdown_timeout=0.1,
        rtmp=ListenerSettings(read_interval=1e-3, connection=ConnectionLimits(max_amf_depth=3)),
        hls=HLSSettings(enabled=False, segment_duration=0.75, record=True),
        transcode=TranscodeSettings(
            profiles=(PRESETS["P360p30fps16x9"], custom, high, intra), accel=Accel.NVIDIA
        ),
        auth=AuthSettings(url="http://auth.local/check?x=1", publish_key="k\te\u0001y"),
        webhook=WebhookSettings(url="https://hooks.example/lpms", retries=0),
        log=LogSettings("debug", "json"),
    )


def test_to_toml_reads_back_to_the_same_settings(tmp_path: Path) -> None:
    settings = _unusual_settings()
    config = write(tmp_path, to_toml(settings))
    assert load_settings(config, env={}) == settings
    assert load_settings(write(tmp_path, to_toml(Settings()), "d.toml"), env={}) == Settings()


def test_to_toml_writes_unset_settings_commented_out_and_origins() -> None:
    text = to_toml(Settings(), origins={"hls.window": "from LPMS_HLS_WINDOW"})
    assert f"# workdir = {NOT_SET}" in text.splitlines()
    assert "window = 6  # from LPMS_HLS_WINDOW" in text.splitlines()
    assert '    "P360p30fps16x9",' in to_toml(_unusual_settings()).splitlines()


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_toml_strings_read_back(text: str) -> None:
    assert tomllib.loads(f"x = {toml_value(text)}")["x"] == text


@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**63 - 1))
def test_toml_numbers_read_back(number: float) -> None:
    assert tomllib.loads(f"x = {toml_value(number)}")["x"] == number


def _listed_settings(text: str) -> list[str]:
    """Every setting the file lists, as dotted paths: `key = value` lines, and
    `# key = (not set)` for those unset by default."""
    section = ""
    listed = []
    for line in text.splitlines():
        if header := re.fullmatch(r"\[([\w.]+)\]", line):
            section = header.group(1) + "."
        elif match := re.match(r"(\w+) = ", line) or re.fullmatch(
            rf"# (\w+) = {re.escape(NOT_SET)}", line
        ):
            listed.append(section + match.group(1))
    return listed


def test_the_example_config_is_every_setting_at_its_default() -> None:
    text = EXAMPLE.read_text()
    assert load_settings(EXAMPLE, env={}) == Settings()
    assert _listed_settings(text) == [setting.name for setting in settings_of(Settings)]
    unset = [s.name for s in settings_of(Settings) if s.default is None]
    assert {"workdir", "auth.url", "auth.publish_key", "webhook.url"} <= set(unset)
    assert text == example_config(), (
        "lpms.example.toml is out of date; regenerate it with\n"
        "  .venv/bin/python -c \"import lpms.config as c; print(c.example_config(), end='')\" "
        "> lpms.example.toml"
    )


def test_the_example_explains_settings_from_the_dataclasses() -> None:
    text = EXAMPLE.read_text()
    assert "# HLS output: format, segment and part length" in text  # HLSSettings' docstring
    assert "# Connections the kernel may hold for accept()" in text  # a field's comment
    assert "# Seconds an idle keep-alive connection stays open.\nkeepalive_timeout = 75.0" in text
    assert "# One of: software, nvidia.\naccel = " in text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LPMS_HLS_WINDOW": "0"}, "window must be at least 1"),
        ({"LPMS_HLS_SEGMENT_DURATION": "0.1"}, "segment_duration must be 0.5 to 60"),
        ({"LPMS_HLS_GRACE_PERIOD": "-1"}, "grace_period must be at least 0"),
        ({"LPMS_RTMP_IDLE_TIMEOUT": "0"}, "idle_timeout must be greater than 0"),
        ({"LPMS_MAX_CONNECTIONS_PER_IP": "0"}, "max_connections_per_ip must be at least 1"),
        ({"LPMS_RTMP_CONNECTION_MAX_PARTIAL_BYTES": "1000"}, "max_partial_bytes (1000)"),
        ({"LPMS_TRANSCODE_FINISH_TIMEOUT": "0"}, "finish_timeout must be greater than 0"),
        ({"LPMS_TRANSCODE_MAX_OUTPUTS": "0"}, "max_outputs must be at least 1"),
        ({"LPMS_TRANSCODE_MAX_SEGMENT_SECONDS": "0"}, "max_segment_seconds must be greater"),
        ({"LPMS_TRANSCODE_MAX_FILE_SECONDS": "-1"}, "max_file_seconds must be greater"),
        ({"LPMS_TRANSCODE_MAX_FRAMES_PER_DECODED": "0"}, "max_frames_per_decoded must be at"),
        (
            {
                "LPMS_TRANSCODE_MAX_OUTPUTS": "1",
                "LPMS_TRANSCODE_PROFILES": "P240p30fps16x9,P144p30fps16x9",
            },
            "2 profiles, more than max_outputs (1)",
        ),
    ],
)
def test_values_out_of_range_are_refused_wherever_they_come_from(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_settings(env=env)
    assert next(iter(env)) in str(caught.value)  # names where the value came from


def test_the_transcoders_caps_are_settings(tmp_path: Path) -> None:
    """The file and the environment set them; `caps` is what each session gets."""
    path = tmp_path / "lpms.toml"
    path.write_text("[transcode]\nmax_outputs = 3\nmax_segment_seconds = 20\n")
    env = {"LPMS_TRANSCODE_MAX_FRAMES_PER_DECODED": "5"}
    caps = load_settings(path, env=env).transcode.caps
    assert caps == TranscodeCaps(
        max_outputs=3, max_segment_seconds=20.0, max_file_seconds=86400.0, max_frames_per_decoded=5
    )
    assert TranscodeSettings().caps == TranscodeCaps()  # the defaults are LPMS's


def test_the_settings_load_without_pyav_or_asyncio() -> None:
    """Each layer's settings live in a module of their own, so reading a config (and
    `lpms serve --print-config`) pays for neither PyAV nor the event loop."""
    import subprocess
    import sys

    code = (
        "import sys, lpms.config; "
        "print(sorted(m for m in ('av', 'asyncio', 'aiohttp') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"
