"""lpms: a live media server in Python (RTMP ingest and playback, HLS, transcoding).

The public API mirrors Livepeer's LPMS: build an `LPMS`, register callbacks with
`LPMS.handle_rtmp_publish` and `LPMS.handle_rtmp_play`, then ``await server.serve()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpms.lazy import lazy_getattr

__version__ = "0.1.0"

# Each public name and the module it lives in. They are imported on first use
# (PEP 562), so `lpms transcode` or a script that needs only the Transcoder does not
# pay for the server's HTTP stack at start-up.
_EXPORTS: dict[str, str] = {
    "PlayRequest": "lpms.access",
    "Protocol": "lpms.access",
    "PublishRequest": "lpms.access",
    "RTMPRequest": "lpms.access",
    "Refusal": "lpms.access",
    "RefusalReason": "lpms.access",
    "AuthRequest": "lpms.auth",
    "AuthSettings": "lpms.auth_settings",
    "HTTPSettings": "lpms.config",
    "Settings": "lpms.config",
    "load_settings": "lpms.config",
    "ConfigError": "lpms.errors",
    "HLSError": "lpms.errors",
    "LPMSError": "lpms.errors",
    "MediaError": "lpms.errors",
    "RTMPProtocolError": "lpms.errors",
    "StreamError": "lpms.errors",
    "TLSError": "lpms.errors",
    "TranscodeError": "lpms.errors",
    "Segment": "lpms.hls.segmenter",
    "SegmenterOptions": "lpms.hls.segmenter",
    "HLSFormat": "lpms.hls.settings",
    "HLSSettings": "lpms.hls.settings",
    "HLSStream": "lpms.hls.store",
    "HLSRequest": "lpms.http.hls",
    "Codec": "lpms.media.packet",
    "CodecConfig": "lpms.media.packet",
    "MediaPacket": "lpms.media.packet",
    "TrackKind": "lpms.media.packet",
    "Stream": "lpms.media.stream",
    "StreamEnded": "lpms.media.stream",
    "StreamLimits": "lpms.media.settings",
    "Subscription": "lpms.media.stream",
    "ConnectionLimits": "lpms.rtmp.settings",
    "ListenerSettings": "lpms.rtmp.settings",
    "LPMS": "lpms.server",
    "TLSSettings": "lpms.tls.settings",
    "Accel": "lpms.transcode.settings",
    "TranscodeSettings": "lpms.transcode.settings",
    "GOPFrames": "lpms.transcode.profiles",
    "GOPSeconds": "lpms.transcode.profiles",
    "H264Profile": "lpms.transcode.profiles",
    "OutputFormat": "lpms.transcode.profiles",
    "PRESETS": "lpms.transcode.profiles",
    "ProfileError": "lpms.transcode.profiles",
    "VideoCodec": "lpms.transcode.profiles",
    "VideoProfile": "lpms.transcode.profiles",
    "output_size": "lpms.transcode.profiles",
    "parse_profiles": "lpms.transcode.profiles",
    "profile_by_name": "lpms.transcode.profiles",
    "RenditionOutput": "lpms.transcode.rendition",
    "TranscodeResult": "lpms.transcode.session",
    "Transcoder": "lpms.transcode.session",
}

__all__ = [
    "LPMS",
    "PRESETS",
    "Accel",
    "AuthRequest",
    "AuthSettings",
    "Codec",
    "CodecConfig",
    "ConfigError",
    "ConnectionLimits",
    "GOPFrames",
    "GOPSeconds",
    "H264Profile",
    "HLSError",
    "HLSFormat",
    "HLSRequest",
    "HLSSettings",
    "HLSStream",
    "HTTPSettings",
    "LPMSError",
    "ListenerSettings",
    "MediaError",
    "MediaPacket",
    "OutputFormat",
    "PlayRequest",
    "ProfileError",
    "Protocol",
    "PublishRequest",
    "RTMPProtocolError",
    "RTMPRequest",
    "Refusal",
    "RefusalReason",
    "RenditionOutput",
    "Segment",
    "SegmenterOptions",
    "Settings",
    "Stream",
    "StreamEnded",
    "StreamError",
    "StreamLimits",
    "Subscription",
    "TLSError",
    "TLSSettings",
    "TrackKind",
    "TranscodeError",
    "TranscodeResult",
    "TranscodeSettings",
    "Transcoder",
    "VideoCodec",
    "VideoProfile",
    "__version__",
    "load_settings",
    "output_size",
    "parse_profiles",
    "profile_by_name",
]

if TYPE_CHECKING:
    from lpms.access import (
        PlayRequest,
        Protocol,
        PublishRequest,
        Refusal,
        RefusalReason,
        RTMPRequest,
    )
    from lpms.auth import AuthRequest
    from lpms.auth_settings import AuthSettings
    from lpms.config import HTTPSettings, Settings, load_settings
    from lpms.errors import (
        ConfigError,
        HLSError,
        LPMSError,
        MediaError,
        RTMPProtocolError,
        StreamError,
        TLSError,
        TranscodeError,
    )
    from lpms.hls.segmenter import Segment, SegmenterOptions
    from lpms.hls.settings import HLSFormat, HLSSettings
    from lpms.hls.store import HLSStream
    from lpms.http.hls import HLSRequest
    from lpms.media.packet import Codec, CodecConfig, MediaPacket, TrackKind
    from lpms.media.settings import StreamLimits
    from lpms.media.stream import Stream, StreamEnded, Subscription
    from lpms.rtmp.settings import ConnectionLimits, ListenerSettings
    from lpms.server import LPMS
    from lpms.tls.settings import TLSSettings
    from lpms.transcode.profiles import (
        PRESETS,
        GOPFrames,
        GOPSeconds,
        H264Profile,
        OutputFormat,
        ProfileError,
        VideoCodec,
        VideoProfile,
        output_size,
        parse_profiles,
        profile_by_name,
    )
    from lpms.transcode.rendition import RenditionOutput
    from lpms.transcode.session import Transcoder, TranscodeResult
    from lpms.transcode.settings import Accel, TranscodeSettings


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
