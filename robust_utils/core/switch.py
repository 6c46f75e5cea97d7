"""Temporarily set attributes of modules (the switches of the stochastic layers)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator


@contextlib.contextmanager
def temporarily(objects: Iterable[Any], **values: Any) -> Iterator[None]:
    """Within the block, every object has the attributes ``values``; the previous values are
    restored on exit, even after an exception (e.g. a layer's ``stochastic`` or ``noise_enabled``)."""
    objects = list(objects)
    before = [{k: getattr(o, k) for k in values} for o in objects]
    try:
        for o in objects:
            for k, v in values.items():
                setattr(o, k, v)
        yield
    finally:
        for o, old in zip(objects, before):
            for k, v in old.items():
                setattr(o, k, v)
