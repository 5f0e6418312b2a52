"""The asynchronous collector: env steps in a worker process, overlapped with the next gradient update.

``async_collection: true`` replaces the ``Collector`` by ``AsyncCollector``. The worker is a fork of the
training process made at the first env step: it holds its own copy of the module (so it runs the
module's own ``warmup_policy`` / ``explore_policy``, exploration generator and noise state) and of the
synchronous ``Collector`` (env, n-step accumulator, episode statistics). After update u the module
*submits* the env steps owed to the replay ratio: the current parameters are copied into shared memory,
and the worker is told how many vector steps to take, with which policy, at which env-step clock (ε and
noise schedules read it). Update u+1 starts at once; its backward pass and the worker's env steps run on
two cores. The worker's transitions are joined before the next submission and before anything reads the
collector's state, and reach the replay buffer with the next draw.

Why a process and not a thread: on CPU a thread-based worker was measured *slower* than synchronous
collection (benchmarks/RESULTS.md): the env step and the policy's Python code hold the GIL, and the
training thread's Python (hook dispatch, optimizer, op dispatch) waited for it.

What differs from synchronous collection:
- a batch drawn right after update u does not hold update u's transitions (they are stored with the next
  draw): with ``replay.batches_per_sample`` k this adds one update to the k−1 updates of staleness a batch
  already has. The transitions themselves are those of the synchronous run: the worker acts with the
  parameters of update u, the same generators and the same clock. Runs are deterministic for a seed;
- the module's env-step clock moves when a chunk is joined: logs and evaluation see it one update late;
- the watchdog checks rewards and observations when a chunk is joined (the env step it names is the
  chunk's last);
- a checkpoint holds no env/collector state of the worker: a resumed run starts new episodes (warned).
Supported: vector-observation envs with ``env.vectorization: sync`` in one process (not Atari, not DDP),
on a platform with ``fork`` (Linux).
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import signal
import time
import traceback

import numpy as np
import torch

from lightq.interaction.collector import Collector
from lightq.reliability.faults import EnvFaultError

__all__ = ["AsyncCollector"]


def _worker(conn, parent_end, module, collector: Collector, shared: list[torch.Tensor], sent: np.ndarray) -> None:
    """The worker's loop: one message per chunk, ``("step", policy_name, vector_steps, clock)``."""
    parent_end.close()  # the fork's copy of the training process's end: without it, EOF never comes
    # The fork inherited the training process's handlers (Lightning's SIGTERM flag, lightq's Ctrl-C
    # checkpointing): the worker must die on SIGTERM (multiprocessing's exit path) and leave Ctrl-C to
    # the training process, which stops it through ``close``.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # the training process keeps the cores; libgomp pools do not survive fork
    module.collector = collector  # the policies read episode state (OU noise restarts) from the collector
    params = [t for t in module.state_dict(keep_vars=True).values() if isinstance(t, torch.Tensor)]
    collector.check_data = None  # the parent checks joined chunks (its Watchdog reports from its process)
    received = 0
    while True:
        try:
            message = _recv(conn, sent, 0, received + 1)  # sent[0]: the trainer's messages, sent[1]: ours
        except EOFError:  # the training process is gone
            return
        received += 1
        if message[0] == "close":
            return
        _, policy_name, vector_steps, clock = message
        try:
            with torch.no_grad():
                torch._foreach_copy_(params, shared)
            module.env_steps = clock
            collector.step(getattr(module, policy_name), vector_steps)
            staged, collector._staged = collector._staged, []
            if len(staged) > 1:  # one array per key: pickling 6 arrays, not 6 per vector step (~0.6 ms for 10)
                staged = [{key: np.concatenate([chunk[key] for chunk in staged]) for key in staged[0]}]
            reply = ("ok", staged, collector.pop_finished_episodes(), collector.env_steps, collector.episodes)
        except EnvFaultError as error:
            reply = ("env_fault", error.call, error.env_step, _portable_exception(error.__cause__))
        except BaseException as error:  # noqa: BLE001  (reported to the parent, which raises)
            reply = ("error", _portable_exception(error), traceback.format_exc())
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):  # the training process is gone
            return
        sent[1] += 1


# How long a receiver spins before it blocks. A blocking ``recv`` on this VM wakes ~150 µs after the message
# is sent (scheduler latency, each direction), as much as a CartPole env step. Each side therefore counts
# the messages it has sent in shared memory (written after the send completed), and the receiver spins on
# the other side's count, which costs no system call and takes no lock the sender needs, before its
# ``recv``, which then returns at once (spinning on ``conn.poll()`` instead measured 0.84× the plain loop
# at one env step per update, against 0.99× this way). After this long it blocks (e.g. while the trainer
# evaluates), so an idle side does not spin for long.
_SPIN_S = 0.005


def _recv(conn, sent: np.ndarray, index: int, expected: int, spin_s: float = _SPIN_S):
    """``conn.recv()`` of message number ``expected`` of the other side (count ``sent[index]``), spinning first."""
    if sent[index] < expected:
        deadline = time.perf_counter() + spin_s
        while sent[index] < expected and time.perf_counter() < deadline:
            pass
    return conn.recv()


def _portable_exception(error: BaseException | None) -> BaseException:
    try:
        pickle.dumps(error)
        return error
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(error).__name__}: {error}")


def _joined_field(name: str) -> property:
    """An attribute of the joined state: reading it first joins the chunk in flight; writing sets it."""

    def get(self):
        self.wait()
        return getattr(self, name)

    def set(self, value) -> None:
        setattr(self, name, list(value) if isinstance(value, list) else value)

    return property(get, set)


class AsyncCollector:
    """A ``Collector`` driven in a forked worker process; see the module docstring.

    Args:
        collector: The synchronous collector (not yet stepped); the worker gets its copy at the fork.
        module: The training module; the worker gets its copy at the fork and runs its policies.
    """

    def __init__(self, collector: Collector, module) -> None:
        if mp.get_start_method(allow_none=True) not in (None, "fork") and "fork" not in mp.get_all_start_methods():
            raise RuntimeError("async_collection needs the 'fork' start method (Linux).")
        self.inner = collector
        self.module = module
        self.num_envs = collector.num_envs
        self.device = collector.device
        self.buffer = collector.buffer
        self.env_id = collector.env_id
        self.check_data = None  # set by the Watchdog: run on joined chunks
        self._env_steps = 0
        self._episodes = 0
        self._joined: list[dict[str, np.ndarray]] = []  # staged transitions of joined chunks
        self._finished_joined: list[tuple[float, int]] = []
        self.nstep = collector.nstep  # empty in this process once the worker runs
        self._in_flight = False
        self._process = None
        self._conn = None
        self._shared: list[torch.Tensor] = []
        self._params: list[torch.Tensor] = []
        self._sent = np.zeros(2, dtype=np.int64)  # messages sent: [trainer, worker]; shared memory once started
        self._replies = 0  # worker messages received

    # Reading the clocks or the staged transitions joins the chunk in flight first.
    env_steps = _joined_field("_env_steps")
    episodes = _joined_field("_episodes")
    _staged = _joined_field("_joined")
    _finished = _joined_field("_finished_joined")

    # Episode state lives in the worker once it runs: a checkpoint then holds none (a resume starts new
    # episodes); before, it is the synchronous collector's (a resume from a synchronous run's checkpoint).
    @property
    def _obs(self):
        return None if self._process is not None else self.inner._obs

    @_obs.setter
    def _obs(self, value) -> None:
        self.inner._obs = value

    @property
    def _ep_return(self):
        return self.inner._ep_return

    @property
    def _ep_length(self):
        return self.inner._ep_length

    @property
    def env(self):
        return self.inner.env

    @property
    def seed(self) -> int:
        return self.inner.seed

    @property
    def rank(self) -> int:
        return self.inner.rank

    @property
    def in_flight(self) -> bool:
        return self._in_flight

    def _start(self) -> None:
        state = [t for t in self.module.state_dict(keep_vars=True).values() if isinstance(t, torch.Tensor)]
        self._params = [t.detach() for t in state]  # views of the live tensors (updated in place)
        self._shared = [t.detach().to("cpu", copy=True).share_memory_() for t in state]
        self._sent = torch.zeros(2, dtype=torch.int64).share_memory_().numpy()  # seen by both after the fork
        self.inner.env_steps = self._env_steps
        self.inner.episodes = self._episodes
        ctx = mp.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_worker, args=(child, self._conn, self.module, self.inner, self._shared, self._sent),
            name="lightq-collector", daemon=True,
        )
        self._process.start()
        child.close()

    # -- submitting and joining ------------------------------------------------------------------------
    def step(self, policy, num_vector_steps: int = 1) -> int:
        """Join the chunk in flight, then start ``num_vector_steps`` vector steps in the worker; returns at once."""
        self.wait()
        if self._process is None:
            self._start()
        name = getattr(policy, "__name__", None)
        if getattr(self.module, name or "", None) != policy:
            raise ValueError("async_collection runs the module's own policies (warmup_policy, explore_policy), "
                             f"not {policy!r}.")
        with torch.no_grad():  # the parameters of the last update (state_dict tensors share their storage)
            torch._foreach_copy_(self._shared, self._params)
        self._conn.send(("step", name, num_vector_steps, self.module.env_steps))
        self._sent[0] += 1
        self._in_flight = True
        return num_vector_steps * self.num_envs

    def wait(self) -> None:
        """Join the chunk in flight: its transitions are staged, the clocks and episode statistics move."""
        if not self._in_flight:
            return
        self._in_flight = False
        try:
            reply = _recv(self._conn, self._sent, 1, self._replies + 1)
            self._replies += 1
        except EOFError as exc:
            raise EnvFaultError(self.env_id, "step", self._env_steps,
                                RuntimeError("the collector process died")) from exc
        if reply[0] == "env_fault":
            _, call, env_step, cause = reply
            raise EnvFaultError(self.env_id, call, env_step, cause) from cause
        if reply[0] == "error":
            _, error, text = reply
            raise RuntimeError(f"The async collector's worker failed:\n{text}") from error
        _, staged, finished, env_steps, episodes = reply
        if self.check_data is not None:
            for chunk in staged:
                self.check_data(chunk["reward"], chunk["next_obs"], chunk, env_steps)
        self._joined.extend(staged)
        self._finished_joined.extend(finished)
        self._env_steps, self._episodes = env_steps, episodes

    # -- the Collector interface the module and callbacks use -----------------------------------------
    def flush(self) -> int:
        """Store the transitions of joined chunks (never the chunk in flight: what a draw sees is deterministic)."""
        staged, self._joined = self._joined, []
        return self.inner.write(staged)

    def pop_finished_episodes(self) -> list[tuple[float, int]]:
        self.wait()
        done, self._finished_joined = self._finished_joined, []
        return done

    def state_dict(self) -> dict:
        self.wait()
        return {"env_steps": self._env_steps, "episodes": self._episodes,
                "ep_return": torch.zeros(self.num_envs, dtype=torch.float64),
                "ep_length": torch.zeros(self.num_envs, dtype=torch.int64), "nstep": self.nstep.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._env_steps = int(state["env_steps"])
        self._episodes = int(state["episodes"])
        self.inner.load_state_dict(state)

    def close(self) -> None:
        if self._process is not None:
            try:
                self._in_flight = False
                self._conn.send(("close",))
                self._sent[0] += 1
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
            self._process = None
        self.inner.close()
