"""Names a package exports but imports only on first use (PEP 562), so importing a
light corner of lpms (its settings, its profiles) does not load PyAV or aiohttp."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: each name in ``exports`` is imported
    from its module when first asked for, then kept in ``namespace`` (the package's
    globals), so later lookups skip this function."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
