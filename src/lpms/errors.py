"""One error type per layer, each carrying a reason a user can act on.

Every parser raises only its own layer's error on bad input, so callers (and fuzz
tests) can tell a refused peer from a bug in lpms.
"""


class LPMSError(Exception):
    """Base of every error lpms raises on purpose."""


class RTMPProtocolError(LPMSError):
    """A peer broke the RTMP protocol (handshake, chunking, AMF0, commands) or one of
    the connection's limits; ``label`` is how the close is counted in metrics:
    ``protocol_error``, or the name of the setting it passed (``handshake_timeout``)."""

    def __init__(self, message: str, label: str = "protocol_error") -> None:
        super().__init__(message)
        self.label = label


class MediaError(LPMSError):
    """A media payload (FLV tag body, codec configuration) cannot be understood."""


class BitstreamError(MediaError):
    """A video frame, decoder record or AAC config cannot be made into an elementary stream."""


class StreamError(LPMSError):
    """A stream cannot be published or played as asked (ID taken, unknown, refused)."""


class HLSError(LPMSError):
    """A stream cannot be segmented or served as HLS (unsupported codec, muxer failure)."""


class TranscodeError(LPMSError):
    """A segment or file cannot be transcoded (unreadable input, no encoder, no GPU)."""


class ConfigError(LPMSError):
    """A setting is unknown or its value invalid; the message names the setting and
    where the value came from (a file, an ``LPMS_*`` variable, a flag)."""


class TLSError(LPMSError):
    """A TLS certificate or key cannot be used (missing, unreadable, not PEM, encrypted,
    or not each other's); the message names the file."""
