"""Application callbacks: every hook may be a plain function or a coroutine function."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

T = TypeVar("T")
MaybeAwaitable: TypeAlias = T | Awaitable[T]


async def call(callback: Callable[..., Any], *args: Any) -> Any:
    """Run ``callback``; await its result when it is awaitable."""
    result = callback(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
