"""`lpms serve`'s configuration as a user meets it: --config, LPMS_* variables and
flags merged, --print-config, --help's defaults, and exit status 2 with one line on
stderr for an invalid setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lpms import HLSSettings, Settings, TLSSettings, load_settings
from lpms.cli import build_parser, main


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("LPMS_")}
    return subprocess.run(
        [sys.executable, "-m", "lpms", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


@pytest.fixture
def no_lpms_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LPMS_"):
            monkeypatch.delenv(name)


def test_print_config_merges_file_environment_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "lpms.toml"
    config.write_text(
        'host = "127.0.0.1"\nrtmp_port = 1001\nhttp_port = 2001\n'
        "[hls]\nwindow = 11\ngrace_period = 12.0\n"
        "[rtmp.connection]\nmax_message_size = 1111\nmax_chunk_streams = 12\n"
    )
    env = {
        "LPMS_HTTP_PORT": "2002",
        "LPMS_RTMP_PORT": "1002",
        "LPMS_HLS_GRACE_PERIOD": "22",
        "LPMS_RTMP_CONNECTION_MAX_CHUNK_STREAMS": "22",
        "LPMS_LOG_FORMAT": "json",
    }
    done = serve("--config", str(config), "--print-config", "--http-port", "2003", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    printed = tmp_path / "printed.toml"
    printed.write_text(done.stdout)
    settings = load_settings(printed, env={})
    assert (settings.host, settings.rtmp_port, settings.http_port) == ("127.0.0.1", 1002, 2003)
    assert (settings.hls.window, settings.hls.grace_period) == (11, 22.0)
    limits = settings.rtmp.connection
    assert (limits.max_message_size, limits.max_chunk_streams) == (1111, 22)
    assert settings.log.format == "json"
    lines = done.stdout.splitlines()
    assert "http_port = 2003  # from --http-port" in lines
    assert "rtmp_port = 1002  # from LPMS_RTMP_PORT" in lines
    assert f'host = "127.0.0.1"  # in {config}' in lines


def test_an_invalid_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    done = serve("--print-config", env={"LPMS_HLS_SEGMENT_DURATION": "abc"})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        'lpms serve: hls.segment_duration = "abc" (from LPMS_HLS_SEGMENT_DURATION): not a number\n'
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {"LPMS_HLS_WINDOWS": "3"}, "unknown environment variable LPMS_HLS_WINDOWS"),
        (["--rtmp-port", "x"], {}, 'rtmp_port = "x" (from --rtmp-port): not an integer, or off'),
        (["--rtmp-port", "70000"], {}, "rtmp_port must be 0 to 65535 or off, got 70000"),
        (["--record"], {}, "hls.record needs a workdir"),
        (["--publish-key", ""], {}, 'auth.publish_key = "" (from --publish-key): empty'),
        (["--profiles", "P361p"], {}, 'transcode.profiles = "P361p" (from --profiles): unknown'),
        (["--webhook-url", "nope"], {}, "webhook url must be an http:// or https:// URL"),
        (["--hls-window", "0"], {}, "argument --hls-window: must be 1 to 1000, got 0"),
        (["--log-format", "xml"], {}, "argument --log-format: invalid choice: 'xml'"),
        (["--config", "/nonexistent/lpms.toml"], {}, "cannot read config file /nonexistent/lpms"),
    ],
)
def test_invalid_settings_in_process(
    no_lpms_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        status = main(["serve", "--print-config", *args])
    except SystemExit as exit:  # argparse's own checks
        status = exit.code  # type: ignore[assignment]
    assert status == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert captured.err.count("\n") == 1, captured.err


def test_flags_not_given_leave_the_file_and_environment_alone(
    no_lpms_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "lpms.toml"
    config.write_text(
        '[hls]\nwindow = 3\nrecord = true\nenabled = false\n[transcode]\naccel = "nvidia"\n'
        '[log]\nlevel = "debug"\n'
    )
    monkeypatch.setenv("LPMS_WORKDIR", str(tmp_path))
    assert main(["serve", "--config", str(config), "--print-config"]) == 0
    printed = tmp_path / "printed.toml"
    printed.write_text(capsys.readouterr().out)
    settings = load_settings(printed, env={})
    assert settings.hls == HLSSettings(window=3, record=True, enabled=False)
    assert (settings.workdir, settings.transcode.accel.value) == (str(tmp_path), "nvidia")
    assert settings.log.level == "debug"


def test_each_flag_sets_its_setting(
    no_lpms_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [
        *("--host", "127.0.0.2", "--rtmp-port", "1936", "--http-port", "8001"),
        *("--segment-duration", "4", "--hls-window", "9", "--workdir", str(tmp_path)),
        *("--record", "--no-hls", "--profiles", "P240p30fps16x9", "--accel", "software"),
        *("--auth-url", "http://127.0.0.1:9/auth", "--auth-timeout", "3", "--publish-key", "k"),
        *("--webhook-url", "http://127.0.0.1:9/hook", "--log-level", "error"),
        *("--log-format", "json", "--tls-cert", "c.pem", "--tls-key", "k.pem"),
        *("--rtmps-port", "off", "--https-port", "0"),
    ]
    assert main(["serve", "--print-config", *flags]) == 0
    printed = tmp_path / "printed.toml"
    printed.write_text(capsys.readouterr().out)
    settings = load_settings(printed, env={})
    assert (settings.host, settings.rtmp_port, settings.http_port) == ("127.0.0.2", 1936, 8001)
    hls = settings.hls
    assert (hls.segment_duration, hls.window, hls.record, hls.enabled) == (4.0, 9, True, False)
    assert settings.workdir == str(tmp_path)
    assert [profile.name for profile in settings.transcode.profiles] == ["P240p30fps16x9"]
    auth = settings.auth
    assert (auth.url, auth.timeout, auth.publish_key) == ("http://127.0.0.1:9/auth", 3.0, "k")
    assert settings.webhook.url == "http://127.0.0.1:9/hook"
    assert (settings.log.level, settings.log.format) == ("error", "json")
    assert settings.tls == TLSSettings(cert="c.pem", key="k.pem", rtmps_port=None, https_port=0)


def test_ports_are_turned_off_with_off(
    no_lpms_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--print-config", "--rtmp-port", "off", "--http-port", "OFF"]) == 0
    printed = tmp_path / "printed.toml"
    printed.write_text(capsys.readouterr().out)
    assert 'rtmp_port = "off"' in printed.read_text()
    settings = load_settings(printed, env={})
    assert (settings.rtmp_port, settings.http_port) == (None, None)


def test_help_shows_the_dataclass_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    defaults = Settings()
    for expected in (
        f"(default {defaults.host})",
        f"RTMP port, or off (default {defaults.rtmp_port})",
        f"HTTP port, or off (default {defaults.http_port})",
        f"RTMPS port, or off (default {defaults.tls.rtmps_port})",
        f"HTTPS port, or off (default {defaults.tls.https_port})",
        f"seconds (default {defaults.hls.segment_duration:g})",
        f"playlist (default {defaults.hls.window})",
        f"answer (default {defaults.auth.timeout:g})",
        f"default {defaults.log.level}",
        "--config FILE",
        "--print-config",
    ):
        assert expected in text


def test_serve_refuses_a_profile_the_encoder_will_not_open(tmp_path: Path) -> None:
    """An unknown encoder option stops `lpms serve` before it listens, not each
    stream's transcoding later."""
    ladder = tmp_path / "ladder.json"
    ladder.write_text(
        '[{"name": "web", "width": 256, "height": 144, "bitrate": 300000,'
        ' "encoder_options": {"tuen": "film"}}]'
    )
    done = serve("--profiles", str(ladder), "--rtmp-port", "0", "--http-port", "0")
    assert done.returncode == 2
    assert done.stderr == ("lpms serve: web: libx264 has no option 'tuen' (encoder_options)\n")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('"muxer": "nosuch"', "web: FFmpeg has no muxer 'nosuch'"),
        ('"muxer_options": {"bogus": "1"}', "web: muxer mpegts has no option 'bogus'"),
        ('"video": "drop"', "web has video drop: an audio-only output"),
    ],
)
def test_serve_checks_each_output_at_start(tmp_path: Path, options: str, message: str) -> None:
    """A profile's muxer, its options or a video mode a live ladder cannot take stop
    `lpms serve` before it listens, in one line."""
    ladder = tmp_path / "ladder.json"
    ladder.write_text(
        f'[{{"name": "web", "width": 256, "height": 144, "bitrate": 300000, {options}}}]'
    )
    done = serve("--profiles", str(ladder), "--hls-format", "ts", "--rtmp-port", "0")
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
