"""The one generation thread of the process.

Every MLX call runs here. The thread is started on first use and never stopped: MLX keeps a
thread-local compile cache whose destructor needs the GIL, so a thread that exits while Python is
finalizing aborts the process ("terminate called without an active exception"). A thread that is
parked in a blocking wait when the process exits is simply discarded, so at exit we cancel what
runs and wait until the thread is parked again.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from collections.abc import Callable

Job = Callable[[], None]


class GenerationWorker:
    """A FIFO of jobs run one at a time on a dedicated daemon thread."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._busy = threading.Event()
        self._cancel_hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.exiting = False
        self._thread = threading.Thread(target=self._run, name="harmony-generation", daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def submit(self, job: Job) -> None:
        self._busy.set()
        self._jobs.put(job)

    def add_cancel_hook(self, hook: Callable[[], None]) -> None:
        """``hook()`` is called at interpreter exit to stop running work quickly."""
        with self._lock:
            self._cancel_hooks.append(hook)

    def remove_cancel_hook(self, hook: Callable[[], None]) -> None:
        with self._lock:
            if hook in self._cancel_hooks:
                self._cancel_hooks.remove(hook)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job is queued or running and the thread is parked in its wait."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._busy.is_set() and self._jobs.empty() and self._jobs.not_empty._waiters:  # type: ignore[attr-defined]
                time.sleep(0.01)  # let it reach the blocking acquire
                return True
            time.sleep(0.005)
        return False

    def _run(self) -> None:
        while True:
            if self._jobs.empty():
                self._busy.clear()
            job = self._jobs.get()
            self._busy.set()
            try:
                job()
            except BaseException:  # a job must never end the thread
                import traceback

                traceback.print_exc()

    def _at_exit(self) -> None:
        self.exiting = True
        with self._lock:
            hooks = list(self._cancel_hooks)
        for hook in hooks:
            try:
                hook()
            except Exception:
                pass
        self.wait_idle(timeout=10.0)


_worker: GenerationWorker | None = None
_worker_lock = threading.Lock()


def generation_worker() -> GenerationWorker:
    """The process-wide generation thread, started on first use."""
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = GenerationWorker()
            atexit.register(_worker._at_exit)
        return _worker
