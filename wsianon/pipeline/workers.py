"""Where slides are processed: in this process, in a local pool of worker
processes that die with the job, or on a Dask distributed cluster.

Every runner yields ``(item, outcome, plans)`` as slides finish; the caller (the
coordinator, which owns the manifest) commits each one.  Workers never touch the
manifest, the mapping or the report, and never place an output: a pool or Dask worker leaves
the verified output in its staging folder inside OUT and the coordinator places it when it
commits the slide (``anonymize.place_staged``), so a stop before that leaves only a staging
folder (removed; the slide is redone), never a whole output the record does not list.

Workers die with the job: each local worker asks the kernel to kill it when its
parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux) and also polls its
parent id, so a ``kill -9`` of the main process leaves no worker writing into
OUT.  Workers ignore SIGINT: Ctrl-C is handled once, by the coordinator, which
then stops the pool.

In this process (``--workers 1``, the serial runner), a slide on the DICOM conversion route
is done in two phases: inspect + convert + frame scrub here, then verification + placing in a
thread, which runs while the next slide converts (wsidicomizer's conversion keeps only about 1.2
of 2 cores busy: its reader and writer threads wait on I/O).  At most one verification is in
flight: slide k's ends before slide k+1's starts, and before any slide that verifies inline
(native, DICOM inputs) starts.  Outcomes are yielded in input order, each once its verification
has ended.  When the runner is closed (Ctrl-C, an error in the coordinator) with a verification
in flight, it is cancelled before it places anything (or what it placed is withdrawn) and waited
for: the slide is requeued like any running slide and redone by the next run.
``WSIANON_OVERLAP=off`` in the environment verifies each slide before the next starts (for A/B
benchmarks; the outcomes are the same).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Callable, Iterator

from wsianon.errors import WsianonError
from wsianon.io.quiet import quiet_libraries
from wsianon.pipeline.model import Status

if TYPE_CHECKING:
    from wsianon.pipeline.jobs import Target


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="wsianon-parent-watch", daemon=True).start()


def worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the coordinator's clean stop (cli.py): a worker just ends
    _die_with_parent(parent)
    quiet_libraries()


def remote_process(src, ctx, target, dest):
    """One slide on a worker (local pool or Dask): the outcome and dry-run plans.  The worker
    leaves a verified output in its staging folder inside OUT (``dest.place_later``): the
    coordinator places it when it records the slide (``anonymize.place_staged``), so a stop in
    between leaves nothing in OUT the record does not list.  A slide to be shared also gets the
    record's images of its output rendered here, from the staged files (in parallel with the
    other workers; the coordinator puts them in the record's cache), as ``outcome.images``."""
    from wsianon.pipeline.jobs import process_slide

    quiet_libraries()  # a Dask worker is not started by our CLI: libraries' output would quote the slide in its log
    out = getattr(dest, "out", None)
    if out is not None and not dest.place_later:
        dest = dataclasses.replace(dest, place_later=True)
    o, p = process_slide(src, ctx, target, dest)
    place = o.place
    if out is not None and place is not None and o.status == Status.OK and o.outputs and not ctx.policy.dry_run and not ctx.policy.in_place:
        from pathlib import Path

        from wsianon.pipeline.record import prerender

        o.images = prerender(Path(out) / place.staging, list(o.outputs))  # the names below it are the placed ones
    return o, p


@dataclasses.dataclass(frozen=True)
class KeyByPath:
    """What a Dask task carries instead of the project key: the key file's absolute path (the
    workers read it there, as they read the inputs and write OUT at the same paths) and the key's
    public fingerprint, so a worker holding another key at that path fails the slide instead of
    writing outputs with other UIDs.  The key itself never travels to the scheduler or a worker."""

    path: str
    fingerprint: str


def remote_process_keyed(src, ctx, target, dest, ref: KeyByPath):
    """:func:`remote_process` for a task that carries a :class:`KeyByPath` (``ctx.key`` empty):
    the worker reads the key file, checks its fingerprint, then processes the slide.  A key it
    cannot read, or another key, is this slide's error (one line, never the key)."""
    from pathlib import Path

    from wsianon.pipeline.keys import key_fingerprint, read_key

    try:
        key = read_key(Path(ref.path))
    except WsianonError as exc:
        return _failed(ctx.pseudonym, src.format, target, f"the Dask worker cannot use the project key file at the coordinator's path: {exc.reason}")
    if key_fingerprint(key) != ref.fingerprint:
        return _failed(ctx.pseudonym, src.format, target, "the Dask worker's key file at the coordinator's path holds another key (fingerprints differ)")
    return remote_process(src, dataclasses.replace(ctx, key=key), target, dest)


def _lost(item: Any, reason: str):
    return _failed(item.pseudonym, item.src.format, item.target, reason)


def _failed(label: str, fmt: str, target, reason: str):
    """A slide's error outcome (no plans), built where the slide could not be processed."""
    from wsianon.pipeline.model import Outcome

    return Outcome(input_label=label, format=fmt, target=target, status=Status.ERROR, error=reason), []


def overlap_enabled() -> bool:
    """The serial runner overlaps a slide's DICOM verification with the next slide's
    conversion unless ``WSIANON_OVERLAP=off`` (read at each run)."""
    return os.environ.get("WSIANON_OVERLAP", "on").lower() not in ("off", "0", "no")


class _Verification:
    """One slide's deferred verification and placing, running in its own thread."""

    def __init__(self, it: Any, outcome, plans: list, deferred) -> None:
        self.it, self.outcome, self.plans, self.deferred = it, outcome, plans, deferred
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._placing = False
        self._escaped: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"wsianon-verify-{it.pseudonym}")

    def start(self) -> None:
        self.thread.start()

    def gate(self) -> None:
        """Called by the verification just before it places anything: cancelled -> nothing placed."""
        from wsianon.pipeline.anonymize import SlideCancelled

        with self._lock:
            if self.cancel.is_set():
                raise SlideCancelled()
            self._placing = True

    def _run(self) -> None:
        from wsianon.pipeline.anonymize import SlideCancelled

        try:
            self.deferred.finish(self.gate)
        except SlideCancelled:
            pass
        except BaseException as exc:  # not an Exception (those are the slide's outcome): re-raised by result()
            self._escaped = exc

    def result(self) -> tuple:
        """Wait for the verification to end: ``(item, outcome, plans)``."""
        self.thread.join()
        if self._escaped is not None:
            raise self._escaped
        return self.it, self.outcome, self.plans

    def abandon(self) -> None:
        """The run stops: cancel (nothing placed from now on), wait for the thread, and withdraw
        what it placed before the cancel (the coordinator will not record this slide)."""
        with self._lock:
            self.cancel.set()
            placing = self._placing
        if self.thread.ident is None:  # stopped before its thread started
            self.deferred.discard()
            return
        self.thread.join()
        if placing:
            self.deferred.staged.withdraw()


def run_serial(items: list, target: Target, dest, emit: Callable[..., None], on_submit: Callable | None = None) -> Iterator[tuple]:
    """Slides one after the other in this process (``on_submit(item)`` as each starts); a DICOM
    conversion's verification overlaps the next slide's conversion (see the module docstring)."""
    from wsianon.pipeline.jobs import deferrable, start_slide

    overlap = overlap_enabled()
    inflight: _Verification | None = None
    try:
        for it in items:
            defer = overlap and deferrable(it.src, it.ctx, target)
            if inflight is not None and not defer:  # this slide verifies inline: the previous verification ends first
                done, inflight = inflight.result(), None
                yield done
            if on_submit is not None:
                on_submit(it)
            emit("slide-start", item=it)
            o, p, deferred = start_slide(it.src, it.ctx, target, dest, progress=lambda n: emit("bytes", n=n), defer=defer)
            earlier = None
            if inflight is not None:
                try:
                    earlier, inflight = inflight.result(), None
                except BaseException:  # interrupted while waiting: this slide's phase (b) never starts
                    if deferred is not None:
                        deferred.discard()
                    raise
            if deferred is not None:
                inflight = _Verification(it, o, p, deferred)
                inflight.start()  # runs while the coordinator commits `earlier` and the next slide converts
            if earlier is not None:
                yield earlier
            if deferred is None:
                yield it, o, p
        if inflight is not None:
            done, inflight = inflight.result(), None
            yield done
    finally:
        if inflight is not None:
            inflight.abandon()


def run_pool(items: list, workers: int, target: str, dest, emit: Callable[..., None], on_submit: Callable) -> Iterator[tuple]:
    """A local pool of ``workers`` processes; at most 2 slides per worker in flight.  Never more
    processes than slides: a fork pool starts all of its workers at once, so ``--workers 100000``
    for two slides forked a hundred thousand processes."""
    workers = max(1, min(workers, len(items)))
    ctx = multiprocessing.get_context("fork")
    pending = deque(items)  # popped from the left: O(1) a slide, whatever the batch size
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=worker_init, initargs=(os.getpid(),))
    inflight: dict = {}
    try:
        while pending or inflight:
            while pending and len(inflight) < 2 * workers:
                it = pending.popleft()
                on_submit(it)
                try:
                    fut = ex.submit(remote_process, it.src, it.ctx, target, dest)
                except BrokenProcessPool:
                    ex = _renew(ex, workers, ctx)
                    fut = ex.submit(remote_process, it.src, it.ctx, target, dest)
                inflight[fut] = it
                emit("slide-start", item=it)
            done, _ = wait(list(inflight), timeout=0.5, return_when=FIRST_COMPLETED)
            if not done:
                emit("tick")  # lets the console refresh rate and ETA
                continue
            for fut in done:
                it = inflight.pop(fut)
                try:
                    o, p = fut.result()
                except BrokenProcessPool:
                    o, p = _lost(it, "the worker process died while processing this slide (killed or out of memory)")
                    ex = _renew(ex, workers, ctx)
                yield it, o, p
    finally:
        _stop(ex)


def _renew(ex: ProcessPoolExecutor, workers: int, ctx) -> ProcessPoolExecutor:
    _stop(ex)
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=worker_init, initargs=(os.getpid(),))


def _stop(ex: ProcessPoolExecutor) -> None:
    """Stop a pool now: queued slides are cancelled, running workers are killed
    (their staging folders are removed by the next run)."""
    procs = list(getattr(ex, "_processes", {}).values() or [])
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            if p.is_alive():
                p.kill()
        except (OSError, ValueError, AttributeError):
            pass
    for p in procs:
        try:
            p.join(timeout=5)
        except (OSError, ValueError, AttributeError, AssertionError):
            pass


def run_dask(items: list, address: str, target: str, dest, emit: Callable[..., None], on_submit: Callable, key_ref: KeyByPath | None = None) -> Iterator[tuple]:
    """Slides on an existing Dask distributed cluster.  The scheduler re-runs a
    slide whose worker is lost; one lost too often ends as an error for that slide
    (the next run retries it).  ``key_ref``: the tasks carry it instead of the project key
    (the workers read the key file at the same path); None sends the key in each task."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise WsianonError(None, "--scheduler needs the 'distributed' package (pip install distributed)") from None
    try:
        client = Client(address, timeout="30s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise WsianonError(None, f"cannot reach the Dask scheduler at {address} ({type(exc).__name__})") from None
    try:
        futs = {}
        for it in items:
            on_submit(it)
            name = f"wsianon-slide-{it.pseudonym}-{time.time_ns()}"
            if key_ref is not None:
                ctx = dataclasses.replace(it.ctx, key=b"")
                f = client.submit(remote_process_keyed, it.src, ctx, target, dest, key_ref, pure=False, key=name)
            else:
                f = client.submit(remote_process, it.src, it.ctx, target, dest, pure=False, key=name)
            futs[f] = it
            emit("slide-start", item=it)
        for f in as_completed(list(futs), loop=client.loop):
            it = futs[f]
            try:
                o, p = f.result()
            except Exception as exc:  # KilledWorker, a lost connection: the slide is retried by the next run
                o, p = _lost(it, f"the Dask worker was lost while processing this slide ({type(exc).__name__})")
            yield it, o, p
    finally:
        try:
            client.close(timeout=10)
        except Exception:
            pass
