"""Batching loaders shared by every request, socket and live shape of a process."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from strawberry.dataloader import DataLoader

K = TypeVar("K")
V = TypeVar("V")


class PerLoopLoader(Generic[K, V]):
    """One strawberry ``DataLoader`` per event loop, keeping nothing between batches
    (``cache=False``): every key asked for in one tick shares one ``load_fn`` call, and
    nothing is ever served stale."""

    def __init__(self, load_fn: Callable[[list[K]], Awaitable[list[V]]]) -> None:
        self._load_fn = load_fn
        self._loaders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DataLoader[K, V]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self) -> DataLoader[K, V]:
        """The running event loop's loader."""
        loop = asyncio.get_running_loop()
        loader = self._loaders.get(loop)
        if loader is None:
            loader = self._loaders[loop] = DataLoader(load_fn=self._load_fn, cache=False)
        return loader
