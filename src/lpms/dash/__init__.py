"""DASH: an MPD over the same CMAF segments HLS serves."""
