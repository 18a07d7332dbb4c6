"""Timestamp repair at a live stream's entry: monotonic DTS per track, no jumps.

Publishers send timelines that players and muxers cannot take as they are: an
encoder that restarts at 0, a clock that steps by hours, a stray packet a few
frames late, RTMP's 32-bit millisecond clock wrapping after 49.7 days. One
`TimestampRepair` per stream re-times each packet once, as it enters, so every
consumer (RTMP players, the HLS segmenter, the transcoder) sees the same timeline.

The rules, per track (audio, video), on the decode timestamp only:

- **Wraps.** RTMP timestamps are modulo 2**32 (spec 5.3.1.1). Each packet is read
  as the value congruent to it that lies nearest the track's previous one, so a drop
  from near 2**32 to near 0 is a wrap, not a jump.
- **Small backward steps** (at most ``max_jump_ms``) are held: the packet gets the
  track's previous DTS. Output DTS is non-decreasing, ties allowed: ties are what
  holding makes, and making DTS strictly rising is the muxer's business (the HLS
  segmenter adds 1 ms where it must). A lone late packet, or an encoder that stamps
  B-frames out of order, is held this way without moving the rest of the timeline
  or one track against the other. A track that *stays* behind (its input runs on
  from the step for over ``MAX_HELD_MS``) went back for good, an encoder restarting
  within the limit: it is re-based as a jump, having squeezed at most that much.
- **Jumps** (a step forward or back of more than ``max_jump_ms``) are discontinuities:
  the stream's offset is re-based so the track continues at its previous DTS plus
  its last frame interval. The offset is the *stream's*, not the track's: the other
  track adopts it as soon as its own packets show the same discontinuity (they fit
  the new offset and not their old one, or the new one holds them back less), so
  audio and video stay in sync across an encoder restart. Until then its packets
  are still on the old timeline and keep the old offset: FLV interleaving means
  some arrive after the first jumped one of the other track.
- **A track that paused** (video that stopped for a while, then resumed while audio
  ran on) is not a jump when it comes back near the stream's newest DTS on any
  track: the time really passed.
- **The composition offset** (PTS - DTS) is kept as sent. Only DTS must be
  monotonic; B-frames make PTS go back and forth, which is how they should be.

Config packets (sequence headers) and script data (``DATA``) carry timestamps but
no timeline of their own: they take their track's current offset and are kept
from its newest DTS to ``max_jump_ms`` after it (script data, and a config before
its track's first packet: the stream's offset, within ``max_jump_ms`` of the newest
DTS of any track), else placed at that newest DTS. They never start a jump or move
a track's state.

The common case, a packet that follows its track's previous one by 0 to
``max_jump_ms``, costs a few attribute reads and compares and returns the packet
itself; only a stream that has been re-based pays for a copy per packet.
"""

from __future__ import annotations

import logging

from lpms.media.packet import MediaPacket, TrackKind

log = logging.getLogger(__name__)

WRAP = 1 << 32  # RTMP timestamps are 32-bit milliseconds
_HALF_WRAP = WRAP >> 1
# A frame interval above this is a pause, not a rate to continue a track at.
MAX_FRAME_INTERVAL_MS = 1000
DEFAULT_FRAME_INTERVAL_MS = {TrackKind.VIDEO: 33, TrackKind.AUDIO: 23}
# A track held back at one dts while its input runs on for longer than this has
# restarted (at most the jump limit back): it is re-based like a jump.
MAX_HELD_MS = 500
# Held (backward) packets are logged once, then at most once per this much stream time.
BACKWARD_LOG_INTERVAL_MS = 10_000
_UNSET = -(1 << 62)  # last_dts of a track that has had no packet yet
# Looked up once: an enum member read through its class costs more than the rest
# of the common case together.
_VIDEO = TrackKind.VIDEO
_AUDIO = TrackKind.AUDIO


class _Track:
    """One track's place on the repaired timeline."""

    __slots__ = (
        "epoch",
        "held_at",
        "held_since",
        "interval",
        "kind",
        "last_dts",
        "offset",
        "shift",
    )

    def __init__(self, kind: TrackKind) -> None:
        self.kind = kind
        self.last_dts = _UNSET  # output dts of the track's last media packet
        self.interval = 0  # output dts step to that packet from the one before
        self.epoch = 0  # multiple of 2**32 added by unwrapping
        self.offset = 0  # the stream offset this track is on
        self.shift = 0  # epoch + offset: what the common case adds to a packet's dts
        self.held_at = _UNSET  # last_dts while packets behind it are held there
        self.held_since = 0  # unwrapped input dts of the first of those packets

    @property
    def started(self) -> bool:
        return self.last_dts != _UNSET

    def input_dts(self) -> int:
        """The unwrapped input dts the track is at (held packets aside)."""
        return self.last_dts - self.offset


class TimestampRepair:
    """Re-times one stream's packets to a monotonic timeline (see the module docstring).

    ``jumps``, ``backward_steps`` and ``wraps`` count what was repaired, for metrics:
    discontinuities re-based, packets held back to their track's previous DTS, and
    32-bit wraps unwrapped.
    """

    __slots__ = (
        "_audio",
        "_backward_logged_at",
        "_backward_unlogged",
        "_epoch",
        "_max_jump_ms",
        "_offset",
        "_video",
        "backward_steps",
        "jumps",
        "max_jump",
        "stream_id",
        "wraps",
    )

    def __init__(self, stream_id: str, max_jump: float = 10.0) -> None:
        if not 0 < max_jump * 1000 < _HALF_WRAP:
            raise ValueError(
                f"max_timestamp_jump must be over 0 s and under 2^31 ms, not {max_jump}"
            )
        self.stream_id = stream_id
        self.max_jump = max_jump
        self._max_jump_ms = max(int(max_jump * 1000), 1)
        self._video = _Track(TrackKind.VIDEO)
        self._audio = _Track(TrackKind.AUDIO)
        self._offset = 0  # the stream's offset: set by the latest discontinuity
        self._epoch = 0  # the highest unwrapping epoch any track reached
        self._backward_logged_at = _UNSET
        self._backward_unlogged = 0
        self.jumps = 0
        self.backward_steps = 0
        self.wraps = 0

    def __repr__(self) -> str:
        return (
            f"TimestampRepair({self.stream_id!r}, jumps={self.jumps}, "
            f"backward_steps={self.backward_steps}, wraps={self.wraps})"
        )

    def repair(self, packet: MediaPacket) -> MediaPacket:
        """``packet`` itself when its timestamps are fine, else a re-timed copy."""
        kind = packet.kind
        if kind is _VIDEO:
            track = self._video
        elif kind is _AUDIO:
            track = self._audio
        else:
            return self._repair_data(packet)
        if packet.is_config:
            return self._repair_config(track, packet)
        shift = track.shift
        dts = packet.dts + shift
        step = dts - track.last_dts
        if 0 <= step <= self._max_jump_ms:
            track.interval = step
            track.last_dts = dts
            if shift:
                return packet.with_timestamps(dts, packet.pts + shift)
            return packet
        return self._repair_media(track, packet)

    # -- media -----------------------------------------------------------------

    def _repair_media(self, track: _Track, packet: MediaPacket) -> MediaPacket:
        if not track.started:
            dts = self._start_track(track, packet.dts)
        else:
            dts = self._continue_track(track, packet.dts)
            if dts > track.last_dts:
                track.interval = dts - track.last_dts
        track.last_dts = dts
        return _retimed(packet, dts)

    def _start_track(self, track: _Track, raw_dts: int) -> int:
        """A track's first packet: on the stream's offset, near the other track."""
        track.offset = self._offset
        newest = self._newest_dts()
        if newest == _UNSET:
            track.shift = track.offset
            return raw_dts + track.offset
        unwrapped = self._unwrap(track, raw_dts, newest - track.offset)
        track.epoch = unwrapped - raw_dts  # may be below zero: a track yet to wrap
        dts = unwrapped + track.offset
        if abs(dts - newest) > self._max_jump_ms:
            # On a timeline of its own: it starts where the stream is.
            self._log_jump(track, dts - newest, newest)
            track.offset += newest - dts
            dts = newest
        track.shift = track.epoch + track.offset
        return dts

    def _continue_track(self, track: _Track, raw_dts: int) -> int:
        last = track.last_dts
        unwrapped = self._unwrap(track, raw_dts, track.input_dts())
        dts = unwrapped + track.offset
        fits = self._fits(track, dts)
        if (dts < last or not fits) and track.offset != self._offset:
            # Another track may have re-based the stream for this discontinuity already.
            adopted = unwrapped + self._offset
            if self._fits(track, adopted) and (not fits or adopted > dts):
                track.offset = self._offset
                dts = adopted
                fits = True
        if not fits:
            dts = self._rebase(track, unwrapped, dts - last)
        elif dts < last:
            dts = self._hold(track, unwrapped, dts)
        track.shift = track.epoch + track.offset
        return dts

    def _fits(self, track: _Track, dts: int) -> bool:
        """Whether ``dts`` is on the track's timeline: not far behind it, and not far
        ahead of it or of the stream's newest packet (a track back from a pause)."""
        limit = self._max_jump_ms
        return track.last_dts - limit <= dts <= self._newest_dts() + limit

    def _rebase(self, track: _Track, unwrapped: int, jump: int) -> int:
        """A discontinuity: the stream continues one frame interval after ``track``'s
        last packet, and every track follows as its packets reach the new timeline."""
        interval = track.interval
        if not 0 < interval <= MAX_FRAME_INTERVAL_MS:
            interval = DEFAULT_FRAME_INTERVAL_MS[track.kind]
        dts = track.last_dts + interval
        track.offset = self._offset = dts - unwrapped
        self._log_jump(track, jump, dts)
        return dts

    def _log_jump(self, track: _Track, jump: int, continue_at: int) -> None:
        self.jumps += 1
        log.warning(
            "timestamps of %s jumped %+.1f s on %s: re-based to continue at %.3f s",
            self.stream_id,
            jump / 1000,
            track.kind.name.lower(),
            continue_at / 1000,
        )

    def _hold(self, track: _Track, unwrapped: int, dts: int) -> int:
        """The dts for a packet behind its track: the track's last one, unless the
        track has stayed behind so long that its timeline went back (a restart)."""
        last = track.last_dts
        if track.held_at != last:
            track.held_at = last
            track.held_since = unwrapped
        elif unwrapped - track.held_since > MAX_HELD_MS:
            return self._rebase(track, unwrapped, track.held_since + track.offset - last)
        self.backward_steps += 1
        self._backward_unlogged += 1
        if last - self._backward_logged_at >= BACKWARD_LOG_INTERVAL_MS:
            log.warning(
                "timestamps of %s went back %.3f s on %s: held at %.3f s "
                "(%d held since the last report, %d in all)",
                self.stream_id,
                (last - dts) / 1000,
                track.kind.name.lower(),
                last / 1000,
                self._backward_unlogged,
                self.backward_steps,
            )
            self._backward_logged_at = last
            self._backward_unlogged = 0
        return last

    def _unwrap(self, track: _Track, raw_dts: int, near: int) -> int:
        """``raw_dts`` plus the multiple of 2**32 that puts it nearest ``near``.

        Only a result within the jump limit of ``near`` moves the track's epoch: a
        wrap is a small step modulo 2**32, anything else a jump to be re-based."""
        unwrapped = near + (raw_dts - near + _HALF_WRAP) % WRAP - _HALF_WRAP
        if abs(unwrapped - near) > self._max_jump_ms:
            return raw_dts + track.epoch
        epoch = unwrapped - raw_dts
        if epoch > track.epoch:
            track.epoch = epoch
            if epoch > self._epoch:
                self._epoch = epoch
                self.wraps += 1
                log.info(
                    "timestamps of %s passed 2^32 ms (%d wraps): unwrapped",
                    self.stream_id,
                    epoch // WRAP,
                )
        return unwrapped

    def _newest_dts(self) -> int:
        return max(self._video.last_dts, self._audio.last_dts)

    # -- configs and script data -------------------------------------------------

    def _repair_config(self, track: _Track, packet: MediaPacket) -> MediaPacket:
        if not track.started:
            return self._repair_data(packet)
        return self._pin(packet, track.last_dts, track.offset, track.last_dts)

    def _repair_data(self, packet: MediaPacket) -> MediaPacket:
        newest = self._newest_dts()
        if newest == _UNSET:
            return packet
        return self._pin(packet, newest, self._offset, newest - self._max_jump_ms)

    def _pin(self, packet: MediaPacket, near: int, offset: int, earliest: int) -> MediaPacket:
        """``packet`` on ``offset``, unwrapped near ``near``; kept within
        [``earliest``, ``near`` + the jump limit], else placed at ``near``."""
        raw = packet.dts
        dts = near + (raw + offset - near + _HALF_WRAP) % WRAP - _HALF_WRAP
        if not earliest <= dts <= near + self._max_jump_ms:
            dts = near
        return _retimed(packet, dts)


def _retimed(packet: MediaPacket, dts: int) -> MediaPacket:
    """``packet`` at ``dts``, its composition offset kept; itself if nothing moves."""
    shift = dts - packet.dts
    if not shift:
        return packet
    return packet.with_timestamps(dts, packet.pts + shift)
