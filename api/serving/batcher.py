"""Adaptive micro-batching: concurrent predictions for one network share one model call.

A model call costs nearly the same for one image as for dozens (the fixed part is Python and
TensorFlow dispatch), so under load it pays to gather. It must never add latency when there is
no load, so the rule is:

- a request that finds the network idle runs at once, alone;
- requests that arrive while a call runs wait in a queue; when the call ends they all go into the
  next call, which may wait a little longer for more (until `window_s` after the oldest of them
  arrived, or until `max_batch` images are queued, whichever comes first);
- `window_s == 0` turns gathering off: each request makes its own call, as without a batcher.

The batcher lives on one event loop; the model calls run in the shared worker threads, one call at a
time per network. (A thread of its own per network measured slower for a lone client on a busy machine:
one more thread to wake per request.)
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from anyio import to_thread

ModelCall = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Waiting:
    inputs: np.ndarray  # one or more images, already decoded to the network's input shape
    arrived: float
    answer: asyncio.Future[np.ndarray] = field(repr=False)


class MicroBatcher:
    """Runs `call` on batches gathered from concurrent `predict` calls; see the module docstring."""

    def __init__(self, call: ModelCall, window_s: float, max_batch: int) -> None:
        self.call = call
        self.window_s = window_s
        self.max_batch = max_batch
        # How many calls saw how many images: proof that gathering happened, for tests and benchmarks.
        self.batch_sizes: Counter[int] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[_Waiting] = []
        self._running = False
        self._arrival = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.window_s > 0

    async def predict(self, inputs: np.ndarray) -> np.ndarray:
        """The network's outputs for `inputs` (a batch of one or more images), one row per image."""
        if not self.enabled:
            self.batch_sizes[len(inputs)] += 1
            return await to_thread.run_sync(self.call, inputs)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new event loop (a restarted server, a new test client): the old loop's waiters are gone with it.
            self._loop, self._queue, self._running, self._arrival = loop, [], False, asyncio.Event()
        if not self._running:
            # Idle: nothing is queued, so there is nothing to gather; this request's call starts now, from
            # this coroutine (a task and a future in between cost a lone request a third of its throughput).
            self._running = True
            self.batch_sizes[len(inputs)] += 1
            try:
                return await to_thread.run_sync(self.call, inputs)
            finally:
                if self._queue:  # requests arrived during the call: they go together, in the next one
                    self._drainer = loop.create_task(self._drain())  # kept: the loop holds tasks only weakly
                else:
                    self._running = False
        waiting = _Waiting(inputs, time.monotonic(), loop.create_future())
        self._queue.append(waiting)
        self._arrival.set()
        return await waiting.answer

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._gather()
                await self._run(self._take())
        finally:
            self._running = False

    async def _gather(self) -> None:
        """Wait for more requests until the oldest queued one has waited `window_s`, or the batch is full."""
        deadline = self._queue[0].arrived + self.window_s
        while self._queued_images() < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining)
            except TimeoutError:
                return

    def _queued_images(self) -> int:
        return sum(len(w.inputs) for w in self._queue)

    def _take(self) -> list[_Waiting]:
        # Whole requests only, in arrival order; a request bigger than max_batch still goes, alone.
        batch, images = [self._queue[0]], len(self._queue[0].inputs)
        for waiting in self._queue[1:]:
            if images + len(waiting.inputs) > self.max_batch:
                break
            batch.append(waiting)
            images += len(waiting.inputs)
        del self._queue[: len(batch)]
        return batch

    async def _run(self, batch: list[_Waiting]) -> None:
        inputs = batch[0].inputs if len(batch) == 1 else np.concatenate([w.inputs for w in batch])
        self.batch_sizes[len(inputs)] += 1
        try:
            outputs = await to_thread.run_sync(self.call, inputs)
        except Exception as exc:
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            return
        start = 0
        for waiting in batch:
            end = start + len(waiting.inputs)
            if not waiting.answer.done():  # its client may have gone away (the request was cancelled)
                waiting.answer.set_result(outputs[start:end])
            start = end
