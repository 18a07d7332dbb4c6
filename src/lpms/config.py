"""Server settings, and where they come from: defaults < TOML file < ``LPMS_*``
environment < flags.

Every setting has a safe default, in the frozen dataclasses below and the ones next
to the modules they configure (`ListenerSettings` beside the RTMP listener, and so
on). The loader knows none of them by name: it walks the `Settings` tree
(`dataclasses.fields` and type hints), so a field added to any of those dataclasses
can be set from a file, the environment and Python at once, and is listed by
``lpms serve --print-config`` and in ``lpms.example.toml``.

- **TOML** mirrors the tree: top-level keys, then ``[rtmp]``, ``[rtmp.connection]``,
  ``[hls]``, ... An unknown key or section is an error naming it.
- **Environment**: ``LPMS_`` and the dotted path upper-cased, dots as ``_``
  (``hls.segment_duration`` is ``LPMS_HLS_SEGMENT_DURATION``). Names are resolved
  against the tree, which `env_names` checks has no two settings with one name. An
  unknown ``LPMS_`` variable is an error (a typo must not be ignored), except the
  names in `NOT_SETTINGS`, which lpms does not own.
- **Values** are parsed by the field's type. Booleans: ``true``/``false``,
  ``yes``/``no``, ``on``/``off``, ``1``/``0``. An optional setting (``str | None``)
  is unset by leaving it out; an empty string is refused rather than read as
  "none", so ``LPMS_AUTH_PUBLISH_KEY=$UNSET_VARIABLE`` cannot open the server.

Every error is one `ConfigError` naming the setting and where its value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Generic, TypeVar

from lpms.auth_settings import AuthSettings
from lpms.errors import ConfigError, LPMSError
from lpms.hls.settings import HLSSettings
from lpms.media.settings import StreamLimits
from lpms.rtmp.settings import ListenerSettings
from lpms.tls.settings import TLSSettings, check_port
from lpms.transcode.engines import Engine
from lpms.transcode.profiles import (
    PRESETS,
    ProfileError,
    VideoProfile,
    load_profiles,
    profile_by_name,
    profile_from_mapping,
    profile_to_mapping,
)
from lpms.transcode.settings import Accel, TranscodeSettings
from lpms.webhook_settings import WebhookSettings

DEFAULT_HOST = "0.0.0.0"
DEFAULT_RTMP_PORT = 1935
DEFAULT_HTTP_PORT = 8000
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
EVENT_LOOPS = ("asyncio", "uvloop", "auto")
ENV_PREFIX = "LPMS_"


@dataclass(frozen=True, slots=True)
class HTTPSettings:
    """Bounds on HTTP requests: a request line or header field over its limit, more
    header fields than ``max_headers``, or a body over ``max_body_bytes`` gets a 4xx
    and the connection is closed."""

    max_request_line: int = 8190
    """Bytes in the request line (method, URL, version)."""
    max_header_bytes: int = 8190
    """Bytes in one header field."""
    max_headers: int = 64
    """Header fields in one request."""
    max_body_bytes: int = 64 << 10
    """Bytes in a request body."""
    keepalive_timeout: float = 75.0
    """Seconds an idle keep-alive connection stays open."""
    flv_send_timeout: float = 10.0
    """Seconds an HTTP-FLV or WebSocket-FLV player's socket may take nothing before
    it is closed (meanwhile its queue drops whole GOPs, as an RTMP player's does)."""

    def __post_init__(self) -> None:
        for name in ("max_request_line", "max_header_bytes", "max_headers", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (math.isfinite(self.keepalive_timeout) and self.keepalive_timeout >= 0):
            raise ValueError(f"keepalive_timeout must be >= 0 s, got {self.keepalive_timeout}")
        if not (math.isfinite(self.flv_send_timeout) and self.flv_send_timeout > 0):
            raise ValueError(f"flv_send_timeout must be > 0 s, got {self.flv_send_timeout}")


@dataclass(frozen=True, slots=True)
class LogSettings:
    """What the server logs, and how (on stderr)."""

    level: str = "info"
    """debug, info, warning or error."""
    format: str = "text"
    """text (one line per event, ``key=value`` fields) or json (one object per line,
    for log shippers)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", self.level.lower())
        object.__setattr__(self, "format", self.format.lower())
        if self.level not in LOG_LEVELS:
            raise ValueError(
                f"log level must be one of {', '.join(LOG_LEVELS)}, got {self.level!r}"
            )
        if self.format not in LOG_FORMATS:
            raise ValueError(
                f"log format must be one of {', '.join(LOG_FORMATS)}, got {self.format!r}"
            )


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `lpms.LPMS` needs to run. Top-level settings: where the server
    listens, where it writes, and how many streams and players it takes."""

    host: str = DEFAULT_HOST
    """Address the RTMP and HTTP listeners bind to (0.0.0.0: every IPv4 interface)."""
    rtmp_port: int | None = DEFAULT_RTMP_PORT
    """RTMP port, for publishing and playing (0: any free port; off: no plain RTMP)."""
    http_port: int | None = DEFAULT_HTTP_PORT
    """HTTP port: HLS, the status page, /api and /metrics (0: any free port; off: no
    plain HTTP)."""
    workdir: str | None = None
    """Directory for recordings (``hls.record``) and live HLS segments. Not set: live
    segments go to a private temporary directory, removed when the server stops."""
    max_streams: int = 1000
    """Live streams at once; one more publish is refused."""
    max_players_per_stream: int = 1000
    """Players of one stream at once (RTMP, RTMPS, HTTP-FLV and WebSocket-FLV
    together); one more is refused. HLS viewers hold no connection and are not
    counted here."""
    max_connections: int = 1000
    """Open connections of every protocol together (RTMP, RTMPS, HTTP-FLV and
    WebSocket-FLV players); one more is closed at once."""
    max_connections_per_ip: int = 100
    """Open connections from one client IP, every protocol together."""
    shutdown_timeout: float = 5.0
    """Seconds a shutdown (SIGINT, SIGTERM) waits for clients to close, once playlists
    are ended and recordings flushed."""
    event_loop: str = "asyncio"
    """The event loop `lpms serve` runs on: asyncio, uvloop (``pip install
    'lpms[uvloop]'``), or auto: uvloop where it is installed. bench/ingest.py found no
    CPU gain from uvloop for the relay (0.47 against 0.44 % of a core per stream), so
    asyncio's own is the default. A Python application embedding `LPMS` runs it on
    its own loop."""
    rtmp: ListenerSettings = field(default_factory=ListenerSettings)
    stream: StreamLimits = field(default_factory=StreamLimits)
    hls: HLSSettings = field(default_factory=HLSSettings)
    transcode: TranscodeSettings = field(default_factory=TranscodeSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    http: HTTPSettings = field(default_factory=HTTPSettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    log: LogSettings = field(default_factory=LogSettings)

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host must not be empty (0.0.0.0 listens on every interface)")
        for name in ("rtmp_port", "http_port"):
            check_port(name, getattr(self, name))
        for name in (
            "max_streams",
            "max_players_per_stream",
            "max_connections",
            "max_connections_per_ip",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (math.isfinite(self.shutdown_timeout) and self.shutdown_timeout >= 0):
            raise ValueError(f"shutdown_timeout must be >= 0 s, got {self.shutdown_timeout}")
        if self.event_loop not in EVENT_LOOPS:
            raise ValueError(
                f"event_loop must be one of {', '.join(EVENT_LOOPS)}, got {self.event_loop!r}"
            )


# -- the tree ------------------------------------------------------------------------

NOT_SETTINGS = re.compile(r"LPMS_(SERVICE_.*|PORT|PORT_.*|REQUIRE_.*)")
"""``LPMS_`` variables that are not lpms settings and are ignored, not refused:
Kubernetes' service links (``LPMS_SERVICE_HOST``, ``LPMS_PORT_1935_TCP``, ...), which
it puts in every pod of a namespace with a Service named ``lpms``, and the test
suite's ``LPMS_REQUIRE_BROWSER`` and ``LPMS_REQUIRE_CONFORMANCE``."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Setting:
    """One leaf of a settings tree: its dotted path, type and default."""

    path: tuple[str, ...]
    hint: Any
    default: object

    @property
    def name(self) -> str:
        """``hls.segment_duration``: the TOML key path, and what errors call it."""
        return ".".join(self.path)

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + "_".join(self.path).upper()


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(hint: object) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _init_fields(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Any]]:
    hints = _hints(cls)
    for item in dataclasses.fields(cls):
        if item.init:
            yield item, hints[item.name]


@cache
def settings_of(root: type) -> tuple[Setting, ...]:
    """Every leaf under `root`, depth first, in field order."""
    return tuple(_walk(root, (), root()))


def _walk(cls: type, prefix: tuple[str, ...], defaults: object) -> Iterator[Setting]:
    for item, hint in _init_fields(cls):
        default = getattr(defaults, item.name)
        if _is_section(hint):
            yield from _walk(hint, (*prefix, item.name), default)
        else:
            yield Setting((*prefix, item.name), hint, default)


@cache
def env_names(root: type = Settings) -> Mapping[str, Setting]:
    """Each setting by its environment variable. Raises TypeError if two settings
    would share a name (``a_b`` beside ``a.b``): the tree must be changed, since a
    variable must mean one setting."""
    names: dict[str, Setting] = {}
    for setting in settings_of(root):
        other = names.setdefault(setting.env_name, setting)
        if other is not setting:
            raise TypeError(
                f"{setting.env_name} would name both {other.name} and {setting.name}; "
                "rename one of them"
            )
    return types.MappingProxyType(names)


# -- parsing values --------------------------------------------------------------------


class _Invalid(Exception):
    """A value that does not fit its setting; the message says why."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value came from: ``where`` ends error messages (``from LPMS_X``, ``in
    lpms.toml``). Strings from a `textual` origin (environment, flags) are parsed
    into the setting's type; a TOML file's values must have the type already.
    Relative file names (a profiles file) are taken from `base_dir`."""

    where: str
    textual: bool
    base_dir: Path | None = None


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _is_optional(hint: object) -> bool:
    return typing.get_origin(hint) in (types.UnionType, typing.Union) and type(None) in (
        typing.get_args(hint)
    )


def _without_none(hint: object) -> Any:
    rest = [arm for arm in typing.get_args(hint) if arm is not type(None)]
    if len(rest) != 1:
        raise TypeError(f"a setting's type may be one type or None, not {hint}")
    return rest[0]


def _to_bool(raw: object, origin: Origin) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and origin.textual:
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise _Invalid("not a boolean (true or false, yes or no, on or off, 1 or 0)")


def _to_int(raw: object, origin: Origin) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and origin.textual:
        try:
            return int(raw.strip())
        except ValueError:
            pass
    raise _Invalid("not an integer")


def _to_float(raw: object, origin: Origin) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str) and origin.textual:
        try:
            value = float(raw.strip())
        except ValueError:
            raise _Invalid("not a number") from None
    else:
        raise _Invalid("not a number")
    if not math.isfinite(value):
        raise _Invalid("not a finite number")
    return value


def _to_str(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    raise _Invalid("not a string (quote it)")


def _to_enum(kind: type[enum.Enum], raw: object) -> enum.Enum:
    if isinstance(raw, kind):
        return raw
    if isinstance(raw, str):
        for member in kind:
            if str(member.value).lower() == raw.strip().lower():
                return member
    raise _Invalid(f"must be one of {', '.join(str(m.value) for m in kind)}")


def _to_tuple(item: Any, raw: object, origin: Origin) -> tuple[object, ...]:
    if isinstance(raw, str) and origin.textual:
        parts = [part.strip() for part in raw.split(",")]
        raw = [] if parts == [""] else parts
    if not isinstance(raw, list | tuple):
        raise _Invalid("not a list")
    return tuple(_convert(item, element, origin) for element in raw)


def _convert(hint: Any, raw: object, origin: Origin) -> object:
    """`raw` (from `origin`) as a value of the setting type `hint`; raises `_Invalid`."""
    custom = CUSTOM_TYPES.get(hint)
    if custom is not None:
        return custom.parse(raw, origin)
    if _is_optional(hint):
        if raw is None:
            return None
        if raw == "":
            raise _Invalid("empty; to leave it unset, leave it out")
        return _convert(_without_none(hint), raw, origin)
    if hint is bool:
        return _to_bool(raw, origin)
    if hint is int:
        return _to_int(raw, origin)
    if hint is float:
        return _to_float(raw, origin)
    if hint is str:
        return _to_str(raw)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _to_enum(hint, raw)
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _to_tuple(args[0], raw, origin)
    raise TypeError(f"settings of type {hint} cannot be loaded; add it to CUSTOM_TYPES")


# -- types that need their own parser (and TOML form) ------------------------------------


@dataclass(frozen=True, slots=True)
class CustomType(Generic[T]):
    """How to read a setting type from TOML, text or Python (`parse`, raising
    `_Invalid`) and write it back as a TOML value (`render`)."""

    parse: Callable[[object, Origin], T]
    render: Callable[[T], str]


def _parse_accel(raw: object, origin: Origin) -> Accel:
    if not isinstance(raw, str | Accel):
        raise _Invalid("not a string (quote it)")
    try:
        return Accel.parse(raw)
    except LPMSError as exc:
        raise _Invalid(str(exc)) from None


def _parse_engine(raw: object, origin: Origin) -> Engine:
    if isinstance(raw, Engine):
        return raw
    if not isinstance(raw, str):
        raise _Invalid("not a string (quote it)")
    try:
        return Engine(raw.strip().lower())
    except ValueError:
        choices = ", ".join(e.value for e in Engine)
        raise _Invalid(f"unknown transcoding engine {raw!r}; choose one of {choices}") from None


def _parse_profiles(raw: object, origin: Origin) -> tuple[VideoProfile, ...]:
    try:
        if isinstance(raw, str):
            return load_profiles(raw, origin.base_dir)
        if isinstance(raw, list | tuple):
            return _profile_list(raw)
    except ProfileError as exc:
        raise _Invalid(str(exc)) from None
    raise _Invalid("not a list of profiles, preset names, or a profiles file")


def _profile_list(entries: Sequence[object]) -> tuple[VideoProfile, ...]:
    profiles: list[VideoProfile] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, VideoProfile):
            profiles.append(entry)
        elif isinstance(entry, str):
            profiles.append(profile_by_name(entry))
        elif isinstance(entry, Mapping):
            profiles.append(profile_from_mapping(entry, f"profiles[{index}]"))
        else:
            raise ProfileError(f"profiles[{index}]: not a profile table or a preset name")
    names = [profile.name for profile in profiles]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ProfileError(f"profile {twice[0]} is given twice; outputs are named after it")
    return tuple(profiles)


def _render_profiles(profiles: tuple[VideoProfile, ...]) -> str:
    if not profiles:
        return "[]"
    lines = [f"    {_render_profile(profile)}," for profile in profiles]
    return "[\n" + "\n".join(lines) + "\n]"


def _render_profile(profile: VideoProfile) -> str:
    """A preset by name; any other profile as a table of LPMS's JSON profile fields."""
    if PRESETS.get(profile.name) == profile:
        return toml_value(profile.name)
    return toml_value(profile_to_mapping(profile))


def _parse_port(raw: object, origin: Origin) -> int | None:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() == "off"):
        return None
    try:
        return _to_int(raw, origin)
    except _Invalid:
        raise _Invalid("not an integer, or off") from None


CUSTOM_TYPES: dict[object, CustomType[Any]] = {
    # Optional integers are listeners' ports, turned off by "off" (TOML has no null).
    int | None: CustomType(_parse_port, lambda port: toml_value("off" if port is None else port)),
    Accel: CustomType(_parse_accel, lambda accel: toml_value(accel.value)),
    Engine: CustomType(_parse_engine, lambda engine: toml_value(engine.value)),
    tuple[VideoProfile, ...]: CustomType(_parse_profiles, _render_profiles),
}
"""Setting types with a parser of their own, by type hint."""


# -- sources ---------------------------------------------------------------------------

Assigned = dict[str, tuple[object, Origin]]
"""Raw values by dotted setting path, each with where it came from."""


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def read_toml(path: str | os.PathLike[str], root: type = Settings) -> Assigned:
    """The settings a TOML file gives, checked against the tree under `root`."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {shown}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {shown} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {shown} is not valid TOML: {exc}") from None
    origin = Origin(f"in {shown}", textual=False, base_dir=Path(path).parent)
    assigned: Assigned = {}
    _read_table(data, root, (), origin, assigned)
    return assigned


def _read_table(
    table: Mapping[str, object],
    cls: type,
    prefix: tuple[str, ...],
    origin: Origin,
    assigned: Assigned,
) -> None:
    known = {item.name: hint for item, hint in _init_fields(cls)}
    for key, value in table.items():
        path = (*prefix, key)
        dotted = ".".join(path)
        hint = known.get(key)
        if hint is None:
            raise ConfigError(_unknown_key(prefix, key, isinstance(value, dict), known, origin))
        if _is_section(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{dotted} {origin.where} is a section: write [{dotted}]")
            _read_table(value, hint, path, origin, assigned)
        elif isinstance(value, dict) and hint not in CUSTOM_TYPES:
            raise ConfigError(f"{dotted} {origin.where} is a setting, not a section")
        else:
            assigned[dotted] = (value, origin)


def _unknown_key(
    prefix: tuple[str, ...], key: str, is_table: bool, known: Mapping[str, object], origin: Origin
) -> str:
    if is_table:  # [hsl], or [rtmp.connectoin]: did you mean [rtmp.connection]?
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        hint = f"; did you mean [{'.'.join((*prefix, close[0]))}]?" if close else ""
        return f"unknown section [{'.'.join((*prefix, key))}] {origin.where}{hint}"
    where = f"[{'.'.join(prefix)}] {key}" if prefix else key
    return f"unknown setting {where} {origin.where}{_suggest(key, list(known))}"


def read_env(env: Mapping[str, str], root: type = Settings) -> Assigned:
    """The settings ``LPMS_*`` variables give; any other ``LPMS_`` name is an error
    unless `NOT_SETTINGS` matches it."""
    names = env_names(root)
    assigned: Assigned = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or NOT_SETTINGS.fullmatch(name):
            continue
        setting = names.get(name)
        if setting is None:
            hint = _suggest(name, list(names))
            raise ConfigError(f"unknown environment variable {name}: no such setting{hint}")
        assigned[setting.name] = (env[name], Origin(f"from {name}", textual=True))
    return assigned


def read_overrides(
    overrides: Mapping[str, object], sources: Mapping[str, str], root: type = Settings
) -> Assigned:
    """Values given in Python or as flags, by dotted path; `sources` names each
    (``--rtmp-port``) for messages, else it is ``overrides``."""
    known = {setting.name for setting in settings_of(root)}
    assigned: Assigned = {}
    for path, value in overrides.items():
        where = f"from {sources.get(path, 'overrides')}"
        if path not in known:
            raise ConfigError(f"unknown setting {path!r} {where}{_suggest(path, sorted(known))}")
        assigned[path] = (value, Origin(where, textual=True))
    return assigned


# -- building --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Loaded(Generic[T]):
    """Settings as loaded, and where each value not at its default came from
    (``from LPMS_HLS_WINDOW``), by dotted path."""

    settings: T
    origins: Mapping[str, str]


def load(
    root: type[T],
    *,
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    sources: Mapping[str, str] | None = None,
) -> Loaded[T]:
    """`root`'s defaults, then the TOML file at `path`, then `env`, then `overrides`;
    see `load_settings`."""
    assigned: Assigned = {}
    if path is not None:
        assigned.update(read_toml(path, root))
    assigned.update(read_env(os.environ if env is None else env, root))
    assigned.update(read_overrides(overrides or {}, sources or {}, root))
    values = {
        setting.name: _parsed(setting, *assigned[setting.name])
        for setting in settings_of(typing.cast(type, root))
        if setting.name in assigned
    }
    settings = _build(root, (), values, assigned)
    return Loaded(settings, {name: origin.where for name, (_, origin) in assigned.items()})


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    *,
    sources: Mapping[str, str] | None = None,
) -> Settings:
    """The effective `Settings`: defaults, then the TOML file at `path` (if given), then
    ``LPMS_*`` variables in `env` (`os.environ` if None; pass ``{}`` to ignore the
    environment), then `overrides` by dotted path (``{"hls.window": 10}``; strings
    are parsed as from the environment). `sources` names the overrides in error
    messages. Raises `ConfigError` naming the setting and where its value came from.
    """
    return load(Settings, path=path, env=env, overrides=overrides, sources=sources).settings


def _parsed(setting: Setting, raw: object, origin: Origin) -> object:
    try:
        return _convert(setting.hint, raw, origin)
    except _Invalid as exc:
        raise ConfigError(f"{setting.name} = {_shown(raw)} ({origin.where}): {exc}") from None


def _build(
    cls: type[T], prefix: tuple[str, ...], values: dict[str, object], assigned: Assigned
) -> T:
    kwargs: dict[str, object] = {}
    for item, hint in _init_fields(cls):
        path = (*prefix, item.name)
        dotted = ".".join(path)
        if _is_section(hint):
            kwargs[item.name] = _build(hint, path, values, assigned)
        elif dotted in values:
            kwargs[item.name] = values[dotted]
    try:
        return cls(**kwargs)
    except (ValueError, LPMSError) as exc:
        raise ConfigError(_section_error(prefix, str(exc), assigned)) from None


def _section_error(prefix: tuple[str, ...], message: str, assigned: Assigned) -> str:
    """A section's own check failed: name the values given for it, those the message
    mentions if any (they are the likely culprits), else all."""
    section = f"{'.'.join(prefix)}: " if prefix else ""
    here = [name for name in assigned if tuple(name.split("."))[:-1] == prefix]
    mentioned = [name for name in here if re.search(rf"\b{name.split('.')[-1]}\b", message)]
    blamed = ", ".join(
        f"{name} = {_shown(assigned[name][0])} {assigned[name][1].where}"
        for name in (mentioned or here)
    )
    return f"{section}{message}" + (f" ({blamed})" if blamed else "")


def _shown(raw: object) -> str:
    try:
        text = toml_value(raw)
    except TypeError:
        text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


# -- writing TOML ----------------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def toml_value(value: object) -> str:
    """`value` (a string, number, boolean, list or dict of them) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        escaped = (
            _ESCAPES.get(char)
            or (f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char)
            for char in value
        )
        return '"' + "".join(escaped) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        pairs = ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items())
        return "{ " + pairs + " }" if pairs else "{}"
    raise TypeError(f"no TOML form for {value!r}")


def _setting_value(hint: Any, value: object) -> str:
    custom = CUSTOM_TYPES.get(hint)
    if custom is not None:
        return custom.render(value)
    if isinstance(value, enum.Enum):
        return toml_value(value.value)
    if isinstance(value, tuple):
        item = typing.get_args(hint)[0]
        return "[" + ", ".join(_setting_value(item, element) for element in value) + "]"
    return toml_value(value)


NOT_SET = "(not set)"
"""How a setting that is None is written: commented out, ``# workdir = (not set)``."""


def to_toml(settings: object, *, origins: Mapping[str, str] | None = None, header: str = "") -> str:
    """`settings` as TOML that `load` reads back to equal settings: every setting,
    the dataclasses' docstrings as comments, each value's origin if in `origins`.
    A setting that is None is written commented out (TOML has no null)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    _write_section(type(settings), (), settings, origins or {}, lines)
    return "\n".join(lines).strip("\n") + "\n"


def _write_section(
    cls: type,
    prefix: tuple[str, ...],
    section: object,
    origins: Mapping[str, str],
    lines: list[str],
) -> None:
    lines.append("")
    lines.extend(_comment(_class_doc(cls)))
    if prefix:
        lines.append(f"[{'.'.join(prefix)}]")
    elif lines[-1]:
        lines.append("")  # the top-level settings' docs are not the file's
    docs = _field_docs(cls)
    subsections = []
    for item, hint in _init_fields(cls):
        value = getattr(section, item.name)
        if _is_section(hint):
            subsections.append((hint, (*prefix, item.name), value))
            continue
        lines.extend(_comment(docs.get(item.name, ""), hint))
        where = origins.get(".".join((*prefix, item.name)))
        note = f"  # {where}" if where else ""
        if value is None and hint not in CUSTOM_TYPES:
            lines.append(f"# {item.name} = {NOT_SET}{note}")
        else:
            lines.append(f"{item.name} = {_setting_value(hint, value)}{note}")
    for hint, path, value in subsections:
        _write_section(hint, path, value, origins, lines)


def _comment(text: str, hint: object = None) -> list[str]:
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        choices = f"One of: {', '.join(str(member.value) for member in hint)}."
        text = f"{text} {choices}".strip()
    text = text.replace("``", "`")
    return [f"# {line}".rstrip() for line in text.splitlines()]


def _class_doc(cls: type) -> str:
    import inspect  # here: only --print-config and the example need it

    doc = inspect.getdoc(cls) or ""
    generated = doc.startswith(f"{cls.__name__}(")  # dataclasses' own, from the fields
    return "" if generated else doc


@cache
def _field_docs(cls: type) -> dict[str, str]:
    """What the class's source says of each field: the comment lines just above it,
    a comment after it on its line, and the string just below it (an attribute
    docstring)."""
    import ast
    import inspect
    import io
    import tokenize

    try:
        source, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    text = inspect.cleandoc("".join(source)) if source[0][:1].isspace() else "".join(source)
    lines = text.splitlines()
    comments = {
        token.start[0]: token.string.removeprefix("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
        if token.type == tokenize.COMMENT
    }
    body = typing.cast(ast.ClassDef, ast.parse(text).body[0]).body
    docs: dict[str, str] = {}
    for index, node in enumerate(body):
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        above: list[str] = []
        line = node.lineno - 1
        while line in comments and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, comments[line])
            line -= 1
        end = node.end_lineno or node.lineno
        after = [comments[end]] if end in comments else []
        following = body[index + 1] if index + 1 < len(body) else None
        doc = following.value if isinstance(following, ast.Expr) else None
        if isinstance(doc, ast.Constant) and isinstance(doc.value, str):
            after.append(inspect.cleandoc(doc.value))
        docs[node.target.id] = "\n".join(above + after)
    return docs


EXAMPLE_HEADER = """\
lpms configuration: every setting, at its default. `lpms serve --config FILE` reads
a file like this one; a setting left out keeps its default, and LPMS_* variables and
flags override the file (defaults < file < environment < flags). Each setting is
also an environment variable: LPMS_ and its section and name in capitals, joined
by `_` (`window` in [hls] is LPMS_HLS_WINDOW). `lpms serve --print-config` prints
the configuration in effect, in this form.

Values: true or false; numbers (seconds may have a fraction, sizes are bytes);
"quoted" text. A setting shown as `# name = (not set)` is unset: write it with a
value to set it. transcode.profiles is a list of preset names (`lpms profiles`)
and tables of LPMS's JSON profile fields, or a string: names separated by commas,
or a JSON or TOML profiles file, relative to this file.

Generated from the settings' dataclasses; do not edit by hand, regenerate with
  python -c "import lpms.config as c; print(c.example_config(), end='')" > lpms.example.toml"""


def example_config() -> str:
    """The text of ``lpms.example.toml``: `to_toml` of the defaults, with a header."""
    return to_toml(Settings(), header=EXAMPLE_HEADER)
