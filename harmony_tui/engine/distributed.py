"""MLX distributed: one model sharded over a group of processes that run identical steps.

Started by ``mlx.launch`` (or by hand with ``MLX_RANK`` and ``MLX_HOSTFILE``), every rank loads
its shard of the model (tensor parallel with the model's ``shard``, e.g. gpt_oss; otherwise
pipeline parallel). Rank 0, the *leader*, runs the front end (app, server or ``generate``); the
other ranks, *followers*, run only the engine and repeat the leader's MLX work step by step, so
every collective inside the model meets its partner on every rank. What only the leader can
decide is shared with ``all_sum`` on the generation stream (the one that runs the model, so the
order of collectives is the program order on every rank), as mlx-lm's server does:

- each serial turn: the request and its prepared prompt tokens (``Lockstep.share``);
- between prefill chunks: whether the turn was cancelled (``flag``);
- each sampled token: rank 0's token is summed with zeros from the others
  (``broadcast_sampler``), so every rank feeds the same token even if sampling differed; in
  the serial path the same all_sum carries the cancel flag, read a step later;
- each batch admission and step, and the turns that step ended (cancels included).

Everything else (prompt-cache hits, checkpoints, stop strings, the Harmony decoder's end of
turn, the length limit) is computed from those shared values by the same code on every rank.

An idle follower sleeps on a plain socket until rank 0 rings it before each command
(``doorbell.py``): MLX's ring backend would otherwise poll a core while it waits.

A rank that dies breaks the ring's sockets: the next collective on the others raises. The leader
pings the followers once a second while it is idle, so a lost rank is noticed within seconds
even when nothing is generated; any rank that notices ends its process with one line.
"""

from __future__ import annotations

import collections
import os
import pickle
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harmony_tui.errors import HarmonyTuiError

ENV_MARKERS = {"MLX_HOSTFILE": "ring", "MLX_JACCL_COORDINATOR": "jaccl",
               "OMPI_COMM_WORLD_SIZE": "mpi", "NCCL_HOST_IP": "nccl"}
INLINE = 256  # bytes of the first all_sum of a shared object
HEARTBEAT_S = 1.0  # the leader pings idle followers this often
LOST = ("distributed: a rank left the group ({detail}); the session ends on every rank")


class DistributedError(HarmonyTuiError):
    """The group cannot start, or a rank was lost."""


@dataclass(frozen=True)
class GroupInfo:
    """Who we are in the group."""

    size: int
    rank: int
    backend: str

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank} of {self.size} ({self.backend})"


_group: Any = None
_info: GroupInfo | None = None
_lockstep: Lockstep | None = None
_init_lock = threading.Lock()


def launched_backend() -> str | None:
    """The backend a launcher set up for this process (from its environment), if any."""
    for variable, backend in ENV_MARKERS.items():
        if os.environ.get(variable):
            return backend
    return None


def init() -> GroupInfo | None:
    """Join the group this process was launched into; None when not launched distributed.

    Importing MLX is skipped unless a launcher's variables are set, so ordinary runs pay nothing.
    """
    global _group, _info
    with _init_lock:
        if _info is not None or _group is not None:
            return _info
        backend = launched_backend()
        if backend is None:
            return None
        import mlx.core as mx

        try:
            group = mx.distributed.init(strict=True, backend=backend)
        except Exception as err:  # bad hostfile, unreachable peer, backend not built in
            raise DistributedError(f"distributed ({backend}): cannot join the group: "
                                   f"{_first_line(err)}") from err
        _group = group
        if group.size() > 1:
            _info = GroupInfo(group.size(), group.rank(), backend)
        return _info


def info() -> GroupInfo | None:
    """This process's place in the group (None: a single process)."""
    return _info


def group() -> Any:
    """The MLX group (None: a single process)."""
    return _group if _info is not None else None


def lockstep() -> Lockstep | None:
    """The process's ``Lockstep`` (None: a single process)."""
    global _lockstep
    with _init_lock:
        if _info is not None and _lockstep is None:
            _lockstep = Lockstep(_group, _info)
        return _lockstep


def shard(model: Any, mx_group: Any, name: str = "the model",
          config: dict[str, Any] | None = None) -> str:
    """Shard a lazily loaded model over ``mx_group``: "tensor" or "pipeline" parallel."""
    if hasattr(model, "shard"):
        size = mx_group.size()
        config = config or {}
        text = config.get("text_config") or {}
        for field in ("num_attention_heads", "num_key_value_heads"):
            heads = config.get(field, text.get(field))
            if isinstance(heads, int) and heads % size:
                raise DistributedError(f"distributed: {name} has {field} {heads}, which "
                                       f"{size} ranks cannot split (tensor parallelism needs "
                                       f"a multiple of {size})")
        model.shard(mx_group)
        return "tensor"
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "pipeline"):
        inner.pipeline(mx_group)
        return "pipeline"
    raise DistributedError(f"distributed: mlx-lm cannot shard {type(model).__module__} models "
                           "(neither tensor nor pipeline parallel)")


def is_peer_lost(err: BaseException) -> bool:
    """Whether ``err`` is a collective that failed because a rank went away."""
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(
        mark in text for mark in ("[ring]", "[jaccl]", "[mpi]", "[nccl]", "peer was lost"))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def exit_session(message: str) -> None:
    """End this process at once with one line (a rank blocked in a collective cannot be
    unwound: the C++ call holds no Python frame to raise into)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        sys.stderr.write(f"harmony-tui: error: {message}\n")
        sys.stderr.flush()
    finally:
        os._exit(1)


class Lockstep:
    """Shares the leader's decisions with every rank (generation thread only)."""

    def __init__(self, mx_group: Any, group_info: GroupInfo) -> None:
        self.group = mx_group
        self.info = group_info
        self.stream: Any = None  # the generation stream; set by the engine before first use
        self.bytes_shared = 0  # bytes each rank contributed to control all_sums
        self.collectives = 0
        self.on_lost: Callable[[str], None] = exit_session
        self.doorbell: Any = None  # doorbell.Doorbell, set up with the first model
        self._lost = False
        self._pinging = False
        self._heartbeat: threading.Thread | None = None

    @property
    def leader(self) -> bool:
        return self.info.leader

    # -- the collectives ----------------------------------------------------------------------

    def _all_sum(self, array: Any) -> Any:
        import mlx.core as mx

        try:
            out = mx.distributed.all_sum(array, group=self.group,
                                         stream=self.generation_stream())
            mx.eval(out)
        except RuntimeError as err:
            self.lost(err)
            raise DistributedError(LOST.format(detail=_first_line(err))) from err
        self.bytes_shared += array.nbytes
        self.collectives += 1
        return out

    def generation_stream(self) -> Any:
        """The stream of the model steps and of these collectives (made on first use)."""
        if self.stream is None:
            import mlx.core as mx

            self.stream = mx.new_stream(mx.default_device())
        return self.stream

    def share(self, obj: Any = None) -> Any:
        """The leader's ``obj`` on every rank (pickled; followers pass nothing)."""
        import mlx.core as mx
        import numpy as np

        # One all_sum of INLINE bytes: a 4-byte length, then the pickle if it fits (commands,
        # a step's endings); a longer pickle (a turn's request) follows in a second all_sum.
        header = np.zeros(INLINE, dtype=np.uint8)
        data = b""
        if self.leader:
            data = pickle.dumps(obj)
            header[:4] = np.frombuffer(len(data).to_bytes(4, "little"), dtype=np.uint8)
            if len(data) <= INLINE - 4:
                header[4:4 + len(data)] = np.frombuffer(data, dtype=np.uint8)
        got = np.array(self._all_sum(mx.array(header)))
        size = int.from_bytes(got[:4].tobytes(), "little")
        if size <= INLINE - 4:
            body = got[4:4 + size].tobytes()
        else:
            mine = np.frombuffer(data, dtype=np.uint8) if self.leader \
                else np.zeros(size, dtype=np.uint8)
            body = np.array(self._all_sum(mx.array(mine))).tobytes()
        return obj if self.leader else pickle.loads(body)

    def command(self, obj: Any) -> None:
        """Leader: wake the followers and share one command with them."""
        if self.doorbell is not None:
            self.doorbell.ring()
        self.share(obj)

    def next_command(self) -> Any:
        """Follower: sleep until the leader rings, then take its command."""
        from harmony_tui.engine.doorbell import DoorbellError

        if self.doorbell is not None:
            try:
                self.doorbell.wait()
            except DoorbellError as err:
                self.lost(err)
                raise DistributedError(LOST.format(detail=_first_line(err))) from err
        return self.share()

    def flag(self, value: bool) -> bool:
        """The leader's ``value`` on every rank (one small all_sum)."""
        import mlx.core as mx

        mine = 1 if (self.leader and value) else 0
        return bool(self._all_sum(mx.array([mine], dtype=mx.int32)).item())

    def shared_check(self, check: Callable[[], bool]) -> Callable[[], bool]:
        """``check`` evaluated on the leader and shared: every rank gets the same answer."""
        return lambda: self.flag(check() if self.leader else False)

    def broadcast_sampler(self, sampler: Callable[[Any], Any],
                          stop: Callable[[], bool] | None = None,
                          flags: collections.deque[Any] | None = None) -> Callable[[Any], Any]:
        """``sampler`` whose tokens are rank 0's on every rank (a lazy all_sum in the step).

        With ``stop`` (one token per step), the same all_sum carries ``stop()`` as rank 0 saw it
        when the step was queued: each step appends that shared flag (a lazy array) to
        ``flags``, so every rank can end the turn before the same token, with no extra
        collective and no wait.
        """
        import mlx.core as mx

        group, leader = self.group, self.leader

        def sample(logprobs: Any) -> Any:
            token = sampler(logprobs)
            if stop is None:
                mine = token if leader else mx.zeros_like(token)
                self.bytes_shared += token.nbytes
                self.collectives += 1
                return mx.distributed.all_sum(mine, group=group)
            flag = mx.array([1 if leader and stop() else 0], dtype=token.dtype)
            pair = mx.concatenate([token.reshape(-1), flag])
            out = mx.distributed.all_sum(pair if leader else mx.zeros_like(pair), group=group)
            self.bytes_shared += pair.nbytes
            self.collectives += 1
            assert flags is not None
            flags.append(out[-1])
            return out[:-1].reshape(token.shape)

        return sample

    # -- peer loss ------------------------------------------------------------------------------

    def lost(self, err: BaseException) -> None:
        """A collective failed: a rank is gone. Runs ``on_lost`` once."""
        if self._lost:
            return
        self._lost = True
        self.on_lost(LOST.format(detail=_first_line(err)))

    def start_heartbeat(self, worker: Any) -> None:
        """Leader: ping the followers while the generation thread is idle."""
        if not self.leader or self._heartbeat is not None:
            return

        def ping() -> None:
            try:
                self.command(("ping",))
            except DistributedError:
                pass  # on_lost has run
            finally:
                self._pinging = False

        def beat() -> None:
            import time

            while not self._lost:
                time.sleep(HEARTBEAT_S)
                if self._lost:
                    return
                if not self._pinging and worker._jobs.empty() and not worker._busy.is_set():
                    self._pinging = True
                    worker.submit(ping)

        self._heartbeat = threading.Thread(target=beat, name="harmony-heartbeat", daemon=True)
        self._heartbeat.start()

    def check_same_model(self, loaded: Any) -> None:
        """Every rank must have loaded the same model: the leader's description is shared
        and a follower with another model ends its session with one line."""
        config = loaded.config
        mine = (loaded.path.name, config.get("model_type"), config.get("num_hidden_layers"),
                config.get("hidden_size"), config.get("vocab_size"), loaded.sharding)
        theirs = self.share(mine if self.leader else None)
        if tuple(theirs) != mine:
            raise DistributedError(f"distributed: rank {self.info.rank} loaded {mine[0]} "
                                   f"({mine[1]}), but rank 0 loaded {theirs[0]} ({theirs[1]}): "
                                   "every rank must load the same model")
        if self.doorbell is None:
            from harmony_tui.engine.doorbell import Doorbell, DoorbellError

            try:
                self.doorbell = Doorbell.connect(self.leader, self.info.size - 1, self.share)
            except DoorbellError as err:
                raise DistributedError(f"distributed: {err}") from err

    def stop_followers(self) -> None:
        """Leader: tell the followers the session is over (they exit with status 0)."""
        if self.leader and not self._lost:
            self._lost = True  # nothing more may be shared (the heartbeat stops)
            try:
                self.command(("stop",))
            except DistributedError:
                pass


def follow(engine: Any) -> None:
    """Follower: repeat the leader's turns and batch steps until it stops (on the engine's
    generation thread). Their events go nowhere: only rank 0 answers."""
    from harmony_tui.engine.batch import BatchScheduler
    from harmony_tui.engine.prepare import PreparedPrompt
    from harmony_tui.engine.turns import TurnStream

    step = lockstep()
    assert step is not None and not step.leader
    batch = BatchScheduler(engine)
    while True:
        command = step.next_command()
        kind = command[0]
        if kind == "stop":
            return
        if kind in ("turn", "insert"):
            request, prompt, limit, dropped_messages, dropped_tokens = command[1:]
            prep = PreparedPrompt(engine.model, list(prompt), dropped_messages, dropped_tokens,
                                  limit)
            stream = TurnStream(request.request_id)
            if kind == "turn":
                engine.run_prepared(request, stream, prep)
            else:
                batch.admit_prepared(request, stream, prep)
        elif kind == "step":
            batch.follow_step()


def _prompt_command(kind: str, request: Any, prep: Any) -> tuple[Any, ...]:
    return (kind, request, list(prep.prompt), prep.limit, prep.dropped_messages,
            prep.dropped_tokens)


def turn_command(request: Any, prep: Any) -> tuple[Any, ...]:
    """What the leader shares before it runs a serial turn (see ``follow``)."""
    return _prompt_command("turn", request, prep)


def insert_command(request: Any, prep: Any) -> tuple[Any, ...]:
    """What the leader shares before it admits a turn into the batch (see ``follow``)."""
    return _prompt_command("insert", request, prep)
