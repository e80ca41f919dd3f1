"""Where runs execute: here, one after another; in worker processes; or as tasks on a Ray cluster.

Each yields (index of the unit of work, its results) as units finish. A unit is one run alone or a fused group
of runs of one body and data (differing by seed, pooling head, learning rate or probe), with the state-dict
prefixes each keeps for its report. Every CPU run computes with the same number of threads (train.RUN_THREADS),
so a run gives the same numbers on every executor.
"""
from __future__ import annotations

import ctypes
import gc
import multiprocessing.pool
import os
import platform
import signal
import threading
import time

from ..errors import UserError
from ..runs.config import Config
from ..training import folder, fused, train

EXECUTORS = ("local", "ray")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
Unit = tuple[list[Config], tuple[str, ...]]  # configs trained together, and the state-dict prefixes they keep


TRAINERS = {"tensors": train, "folder": folder}  # the module whose `result` trains one run, by its data's source


def run_unit(unit: Unit) -> list[train.Result]:
    "Results per config: a fused group, or one run alone by its trainer."
    cfgs, keep = unit
    if len(cfgs) > 1:
        return fused.run(cfgs, keep)
    r = TRAINERS["folder" if cfgs[0].data == "folder" else "tensors"].result(cfgs[0], keep)
    r.metrics["fused"] = 1
    return [r]


def here(work: list[Unit]):
    for i, unit in enumerate(work):
        yield i, run_unit(unit)
        release_memory()


def release_memory() -> None:
    "Free a finished run's memory: its Learner's reference cycles, then the heap pages glibc would keep."
    gc.collect()
    if platform.system() == "Linux":
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass


def processes(work: list[Unit], jobs: int):
    """Units as `jobs` worker processes finish them, in any order. Workers ignore Ctrl-C: the parent stops them,
    so only whole rows ever reach the runs file."""
    jobs = min(jobs, len(work))
    if not jobs:
        return
    workers = pool(jobs)
    try:
        yield from workers.imap_unordered(_run_indexed, list(enumerate(work)), chunksize=1)
    finally:
        workers.terminate()  # after the last result, or on Ctrl-C / SIGTERM: the runs in flight are dropped
        workers.join()


def context() -> multiprocessing.context.BaseContext:
    """How worker processes start: forked from a server process that imported the trainers once, so a worker starts
    without importing torch and fastai again; the server is a fresh interpreter, with no CUDA state or busy threads
    for a fork to inherit (CUDA cannot be forked). Spawned where the system has no fork server (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__])
    return ctx


def pool(jobs: int) -> multiprocessing.pool.Pool:
    "`jobs` worker processes that ignore Ctrl-C and end when this process ends, whatever ends it."
    return context().Pool(jobs, _worker_init, (os.getpid(),))


def on_ray(work: list[Unit], address: str | None):
    """Units as Ray tasks finish them: one task per unit, one CPU each (and a fifth of a GPU for CUDA runs); a
    local Ray instance when `address` is None. Stopping cancels the tasks in flight."""
    try:
        import ray
    except ImportError:
        raise UserError("--executor: ray is not installed; pip install 'cnn-experiments[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError) as e:
            raise UserError(f"--address: no Ray cluster at {address!r} ({e})") from None
    task = ray.remote(run_unit)
    pending = {task.options(num_cpus=1, num_gpus=0.2 if cfgs[0].device == "cuda" else 0).remote((cfgs, keep)): i
               for i, (cfgs, keep) in enumerate(work)}
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(ref), ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def executor(name: str, jobs: int, address: str | None):
    "The function that runs a list of units: `name` local (here or `jobs` processes) or ray."
    if name == "ray":
        return lambda work: on_ray(work, address)
    if name != "local":
        raise UserError(f"--executor: unknown {name!r}; choose one of {', '.join(EXECUTORS)}")
    return here if jobs == 1 else (lambda work: processes(work, jobs))


def default_jobs(device: str) -> int:
    "One process per CPU core for CPU runs (each computes with one thread); one for a GPU."
    return max(1, os.cpu_count() or 1) if device == "cpu" else 1


def _worker_init(main: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with(main)
    gc.freeze()  # the imports outlive every run: each run's collection skips them


def _end_with(main: int) -> None:
    """Exit when the process that started the pool ends: one killed by SIGKILL cannot stop its pool, whose workers
    would train on. A worker's parent is that process (spawned) or the fork server, which ends with it."""
    parent = os.getppid()
    # Linux signals at once when the thread that started this worker ends; a watcher covers every system and
    # whatever clears that signal during a run
    if platform.system() == "Linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if not _alive(main) or not _alive(parent):  # it died before this worker could watch it
        os._exit(1)
    threading.Thread(target=_watch, args=(main, parent), daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process of that pid: this one's is gone
        return False
    return True


def _watch(main: int, parent: int) -> None:
    while os.getppid() == parent and _alive(main):
        time.sleep(0.5)
    os._exit(1)  # from a thread, sys.exit would end only the thread


def _run_indexed(item: tuple[int, Unit]) -> tuple[int, list[train.Result]]:
    i, unit = item
    results = run_unit(unit)
    release_memory()
    return i, results
