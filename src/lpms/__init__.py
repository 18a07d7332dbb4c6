"""lpms: a live media server in Python (RTMP ingest and playback, HLS, transcoding).

The public API mirrors Livepeer's LPMS: build an `LPMS`, register callbacks with
`LPMS.handle_rtmp_publish` and `LPMS.handle_rtmp_play`, then ``await server.serve()``.
"""

from lpms.config import Settings
from lpms.errors import (
    HLSError,
    LPMSError,
    MediaError,
    RTMPProtocolError,
    StreamError,
    TranscodeError,
)
from lpms.hls.segmenter import Segment, SegmenterOptions
from lpms.hls.store import HLSSettings, HLSStream
from lpms.http.hls import HLSRequest
from lpms.media.packet import Codec, CodecConfig, MediaPacket, TrackKind
from lpms.media.stream import Stream, StreamEnded, StreamLimits, Subscription
from lpms.rtmp.connection import ConnectionLimits
from lpms.rtmp.listener import ListenerSettings, RTMPRequest
from lpms.server import LPMS
from lpms.transcode.accel import Accel
from lpms.transcode.live import TranscodeSettings
from lpms.transcode.profiles import (
    PRESETS,
    GOPFrames,
    GOPSeconds,
    H264Profile,
    ProfileError,
    VideoCodec,
    VideoProfile,
    output_size,
    parse_profiles,
    profile_by_name,
)
from lpms.transcode.rendition import RenditionOutput
from lpms.transcode.session import Transcoder, TranscodeResult

__version__ = "0.1.0"

__all__ = [
    "LPMS",
    "PRESETS",
    "Accel",
    "Codec",
    "CodecConfig",
    "ConnectionLimits",
    "GOPFrames",
    "GOPSeconds",
    "H264Profile",
    "HLSError",
    "HLSRequest",
    "HLSSettings",
    "HLSStream",
    "LPMSError",
    "ListenerSettings",
    "MediaError",
    "MediaPacket",
    "ProfileError",
    "RTMPProtocolError",
    "RTMPRequest",
    "RenditionOutput",
    "Segment",
    "SegmenterOptions",
    "Settings",
    "Stream",
    "StreamEnded",
    "StreamError",
    "StreamLimits",
    "Subscription",
    "TrackKind",
    "TranscodeError",
    "TranscodeResult",
    "TranscodeSettings",
    "Transcoder",
    "VideoCodec",
    "VideoProfile",
    "__version__",
    "output_size",
    "parse_profiles",
    "profile_by_name",
]
