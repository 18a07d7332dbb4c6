"""Checks that settings dataclasses run in ``__post_init__``: a value out of range is a
`ValueError` naming the setting, which the configuration loader reports with where
the value came from."""

from __future__ import annotations


def at_least(minimum: float, **values: float) -> None:
    """Each of ``values`` (by setting name) must be >= ``minimum`` (NaN never is)."""
    for name, value in values.items():
        if not value >= minimum:
            raise ValueError(f"{name} must be at least {minimum:g}, got {value}")


def positive(**values: float) -> None:
    """Each of ``values`` must be > 0 (durations that must not be zero)."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be greater than 0, got {value}")
