"""lpms: a live media server in Python (RTMP ingest and playback, HLS, transcoding).

The public API mirrors Livepeer's LPMS: build an `LPMS`, register callbacks with
`LPMS.handle_rtmp_publish` and `LPMS.handle_rtmp_play`, then ``await server.serve()``.
"""

from lpms.config import Settings
from lpms.errors import HLSError, LPMSError, MediaError, RTMPProtocolError, StreamError
from lpms.hls.segmenter import Segment, SegmenterOptions
from lpms.hls.store import HLSSettings, HLSStream
from lpms.http.hls import HLSRequest
from lpms.media.packet import Codec, CodecConfig, MediaPacket, TrackKind
from lpms.media.stream import Stream, StreamEnded, StreamLimits, Subscription
from lpms.rtmp.connection import ConnectionLimits
from lpms.rtmp.listener import ListenerSettings, RTMPRequest
from lpms.server import LPMS

__version__ = "0.1.0"

__all__ = [
    "LPMS",
    "Codec",
    "CodecConfig",
    "ConnectionLimits",
    "HLSError",
    "HLSRequest",
    "HLSSettings",
    "HLSStream",
    "LPMSError",
    "ListenerSettings",
    "MediaError",
    "MediaPacket",
    "RTMPProtocolError",
    "RTMPRequest",
    "Segment",
    "SegmenterOptions",
    "Settings",
    "Stream",
    "StreamEnded",
    "StreamError",
    "StreamLimits",
    "Subscription",
    "TrackKind",
    "__version__",
]
