"""Authorization settings, apart from `lpms.auth` so `lpms.config` can read and
check them without importing asyncio."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How publishes and plays are authorized; nothing set lets everyone in."""

    url: str | None = None
    timeout: float = 2.0
    publish_key: str | None = None
    hls_grant_seconds: float = 60.0
    max_hls_grants: int = 10_000
    api_token: str | None = None  # kicking through the API needs it; unset: loopback only

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"auth timeout must be > 0, got {self.timeout}")
        if self.publish_key is not None and not self.publish_key:
            raise ValueError("publish_key must not be empty")
        if self.api_token is not None and not self.api_token:
            raise ValueError("api_token must not be empty")
