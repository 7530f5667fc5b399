"""The threads `inpaint_video` overlaps decoding and encoding with (`overlap_io`): `Prefetch` iterates the decoded
frames on a background thread at most `PIPELINE_DEPTH` items ahead, `Drain` hands the outputs to an encoding thread;
`InlineFetch` and `InlineDrain` are the same interfaces in the calling thread. An exception on a pipeline thread is
raised in the caller; either side stopping stops the other within `PIPELINE_POLL_S`."""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

PIPELINE_DEPTH = 4  # frames queued between the decoding thread, the inpainting (calling) thread and the encoding thread
PIPELINE_POLL_S = 0.1  # how often a blocked pipeline thread checks whether the other side stopped


class Failure:
    """An exception raised on a pipeline thread, carried to the calling thread."""

    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()  # the end of a pipeline queue


class Prefetch:
    """Iterate `items` on a background thread, at most `PIPELINE_DEPTH` items ahead of the consumer;
    an exception raised there is raised in the consumer. `close()` stops the thread early."""

    def __init__(self, items: Iterator):
        self._queue: queue.Queue = queue.Queue(PIPELINE_DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(items,), daemon=True)
        self._thread.start()

    def _produce(self, items: Iterator) -> None:
        try:
            for item in items:
                if not put_unless(self._queue, item, self._stop):
                    return
            put_unless(self._queue, _END, self._stop)
        except BaseException as exc:  # carried to the consumer, which raises it
            put_unless(self._queue, Failure(exc), self._stop)

    def __iter__(self) -> Iterator:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, Failure):
                raise item.exc
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class Drain:
    """Call `work(item)` on a background thread for every `put` item, at most `PIPELINE_DEPTH` queued;
    an exception raised there is raised by the next `put` or by `finish`."""

    def __init__(self, work: Callable[[Any], None]):
        self._queue: queue.Queue = queue.Queue(PIPELINE_DEPTH)
        self._failed = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._consume, args=(work,), daemon=True)
        self._thread.start()

    def _consume(self, work: Callable[[Any], None]) -> None:
        while (item := self._queue.get()) is not _END:
            try:
                work(item)
            except BaseException as exc:  # raised in the producer by put/finish
                self._error = exc
                self._failed.set()
                return

    def put(self, item: Any) -> None:
        if not put_unless(self._queue, item, self._failed):
            raise self._error

    def finish(self) -> None:
        """Wait until every item is done; raise the worker's exception if it failed."""
        if not put_unless(self._queue, _END, self._failed):
            raise self._error
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop after the item in hand, dropping the queued ones."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        put_unless(self._queue, _END, self._failed)
        self._thread.join()


class InlineFetch:
    """`Prefetch`'s interface, iterating in the caller's thread."""

    def __init__(self, items: Iterator):
        self._items = items

    def __iter__(self) -> Iterator:
        return self._items

    def close(self) -> None:
        """Nothing runs in the background."""


class InlineDrain:
    """`Drain`'s interface, calling `work` in the caller's thread."""

    def __init__(self, work: Callable[[Any], None]):
        self.put = work

    def finish(self) -> None:
        """Every item is done when `put` returns."""

    def abort(self) -> None:
        """Nothing is queued."""


def put_unless(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put `item`, waiting for room; False (not put) once `stop` is set."""
    while not stop.is_set():
        try:
            q.put(item, timeout=PIPELINE_POLL_S)
            return True
        except queue.Full:
            continue
    return False
