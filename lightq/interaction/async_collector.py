"""The asynchronous collector: env steps on a worker thread, overlapped with the next gradient update.

``async_collection: true`` wraps the ``Collector`` in ``AsyncCollector``. After update u the env steps
owed to the replay ratio are *submitted* to one worker thread and update u+1 starts at once; the worker
is joined before the next submission (so at most one chunk is in flight, and the replay ratio still
holds to within one update's env steps) and before anything reads the collector's state (clocks,
episode statistics, checkpoints). On CPU the overlap comes from the GIL: torch releases it inside every
op (the backward pass, the fused Adam step, the layers' kernels), while the worker's env step and
bookkeeping run in Python.

What differs from the synchronous collector (why it is opt-in):
- a batch drawn right after update u does not yet hold the transitions of update u's env steps (they
  are stored with the next draw); with ``replay.batches_per_sample`` k this adds one update to the
  k−1 updates of staleness a batch already has;
- the worker acts with the parameters current when it runs its forward pass: those of update u, or of
  update u+1 if the main thread's optimizer step came first. Optimizer steps and the worker's forward
  pass are serialized by a lock (no torn reads), but which comes first is timing: runs with async
  collection are not bitwise reproducible. Everything else (seeds, env-step schedule, ε on the clock
  of the last joined chunk) is as in the synchronous run.
The module's env-step clock is refreshed when a chunk is joined, so logs and evaluation see it one
update late. Not supported for Atari (frame replay) or under DDP (a warning falls back to synchronous).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from lightq.interaction.collector import Collector, Policy

__all__ = ["AsyncCollector"]


class AsyncCollector:
    """A ``Collector`` whose ``step`` runs on a worker thread; every other access joins the worker first.

    Args:
        collector: The synchronous collector to drive.
        lock: Held by the worker around each policy call; the module holds it around optimizer steps.
    """

    _OWN = frozenset({"inner", "lock", "num_envs", "device", "buffer", "_executor", "_future", "_flushable",
                      "_worker", "_pending"})

    def __init__(self, collector: Collector, lock: threading.Lock) -> None:
        object.__setattr__(self, "inner", collector)
        object.__setattr__(self, "lock", lock)
        object.__setattr__(self, "num_envs", collector.num_envs)
        object.__setattr__(self, "device", collector.device)
        object.__setattr__(self, "buffer", collector.buffer)
        object.__setattr__(self, "_executor", ThreadPoolExecutor(1, thread_name_prefix="lightq-collector"))
        object.__setattr__(self, "_future", None)
        object.__setattr__(self, "_flushable", 0)  # staged chunks of joined work: what flush may store
        object.__setattr__(self, "_worker", None)  # the worker thread's ident
        object.__setattr__(self, "_pending", None)  # a submitted chunk not yet started (see launch)

    # -- the in-flight chunk ----------------------------------------------------------------------------
    def step(self, policy: Policy, num_vector_steps: int = 1) -> int:
        """Join the previous chunk and queue ``num_vector_steps`` vector steps; returns at once.

        The chunk starts on the worker at the next ``launch`` (the module calls it right before its next
        ``backward``: the autograd engine runs without the GIL, so the worker's Python env steps and the
        main thread's backward pass run at the same time instead of taking turns on the GIL).
        """
        self.wait()

        def locked_policy(obs):
            with self.lock:
                return policy(obs)

        def run() -> None:
            object.__setattr__(self, "_worker", threading.get_ident())
            self.inner.step(locked_policy, num_vector_steps)

        object.__setattr__(self, "_pending", run)
        return num_vector_steps * self.num_envs

    def launch(self) -> None:
        """Start the queued chunk on the worker thread (no-op when none is queued)."""
        run = self._pending
        if run is not None:
            object.__setattr__(self, "_pending", None)
            object.__setattr__(self, "_future", self._executor.submit(run))

    def wait(self) -> None:
        """Join the in-flight chunk (re-raising its exception, e.g. ``EnvFaultError``) and release its data."""
        if threading.get_ident() == self._worker:
            return
        self.launch()  # queued but never launched (no update came): run it now
        future: Future | None = self._future
        if future is None:
            return
        object.__setattr__(self, "_future", None)
        try:
            future.result()
        finally:
            object.__setattr__(self, "_flushable", len(self.inner._staged))

    @property
    def in_flight(self) -> bool:
        return self._future is not None or self._pending is not None

    # -- storing ----------------------------------------------------------------------------------------
    def flush(self) -> int:
        """Store the staged transitions of joined chunks (never those of the chunk in flight)."""
        k = self._flushable
        if k == 0:
            return 0
        staged = self.inner._staged
        chunks = staged[:k]
        del staged[:k]  # the worker only appends: both are single list operations under the GIL
        object.__setattr__(self, "_flushable", 0)
        return self.inner.write(chunks)

    # -- everything else: the synchronous collector, after joining --------------------------------------
    def __getattr__(self, name: str):
        self.wait()
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
            return
        self.wait()
        setattr(self.inner, name, value)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True)
            self.inner.close()
