"""A real sweep process killed mid-run, interrupted, and resumed: every run ends up in runs.csv exactly once; its
worker processes end with it."""
import multiprocessing
import os
import re
import select
import signal
import subprocess
import sys
import time

import torch

from cnn_experiments.cli import main
from cnn_experiments.runs.store import Store
from cnn_experiments.studies import study  # noqa: F401  (what `run` imports: torch, fastai; once, here, before forking)
from experiments import mnist_scratch

N_TRAIN = 64  # digits per run: one batch an epoch
RUN = ["run", "mnist_scratch", "--seeds", "1", "--jobs", "1"]  # the CLI's own path; its grid's 5 rows, one seed each


def _cli_run(results, out_fd, err_path):
    "The child: the CLI's own path, progress lines to the pipe, errors to a file, Ctrl-C as at a terminal."
    torch.set_num_threads(1)  # a forked child must not wait on its parent's OpenMP threads
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where this test runs with SIGINT ignored
    sys.stdout, sys.stderr = open(out_fd, "w", buffering=1), open(err_path, "w", buffering=1)
    sys.exit(main([*RUN, "--results", str(results)]))


def start(results, err):
    """A sweep in a process of its own, forked from this one, which has torch, fastai and the digits loaded already (a
    fresh interpreter takes seconds to import them). Returns the process, its progress lines' pipe, its stderr file."""
    r, w = os.pipe()
    proc = multiprocessing.get_context("fork").Process(target=_cli_run, args=(results, w, err))
    proc.start()
    os.close(w)  # the child holds the only writing end: the pipe ends when it does
    return proc, r, err


def rows(path):
    return len(Store(path).read().rows) if path.exists() else 0


def read_until(proc, done, timeout=60):
    "The child's output up to the first point where `done(output)`, or to its end; it is killed if it stalls."
    child, out, err = proc
    deadline, output = time.monotonic() + timeout, b""
    while not done(output) and select.select([out], [], [], max(0.0, deadline - time.monotonic()))[0]:
        if not (chunk := os.read(out, 4096)):
            return output
        output += chunk
    if not done(output):
        child.kill()
        raise AssertionError(f"the sweep stalled: {output.decode()}{err.read_text()}")
    return output


def wait_for_runs(proc, n):
    "Block until the sweep reports its n-th finished run (its progress table's line n): a point it reports itself."
    def reported(output):
        return any((m := re.match(rb"\s*(\d+)/\d+\s", line)) and int(m[1]) == n for line in output.split(b"\n"))
    if not reported(read_until(proc, reported)):
        raise AssertionError(f"the sweep ended before its run {n}: {proc[2].read_text()}")


def finish(proc):
    "The rest of the child's output, its stderr and its exit code, once it has ended."
    child, out, err = proc
    rest = read_until(proc, lambda output: False).decode()  # to the pipe's end: the child has exited
    child.join(10)
    os.close(out)
    return rest, err.read_text(), child.exitcode


def test_a_sweep_survives_sigkill_and_sigint_and_resumes_exactly_once(tmp_path, monkeypatch, digits):
    # the digits are loaded (by the fixture) and the runs made small here, before the children are forked
    monkeypatch.setattr(mnist_scratch, "BASE", mnist_scratch.BASE.replace(n_train=N_TRAIN))  # in the children too
    results = tmp_path / "results"
    path = results / "mnist_scratch" / "runs.csv"
    expected = {c.replace(n_train=N_TRAIN, seed=0).run_id for c in mnist_scratch.grid("quick")}

    proc = start(results, tmp_path / "killed.stderr")
    wait_for_runs(proc, 2)
    os.kill(proc[0].pid, signal.SIGKILL)  # no chance to clean up
    assert finish(proc)[2] == -signal.SIGKILL
    assert 2 <= rows(path) <= 3  # the run after the second may have finished before the kill landed

    proc = start(results, tmp_path / "interrupted.stderr")  # the dead process's lock is gone with it
    wait_for_runs(proc, 1)  # its first run: at least 5 - 4 runs are still to go
    os.kill(proc[0].pid, signal.SIGINT)  # Ctrl-C: stops between rows and says what finished
    out, err, code = finish(proc)
    assert code == 130 and "runs finished and saved" in out and "run the same command again" in err

    assert main([*RUN, "--results", str(results)]) == 0  # the rest, here
    runs = Store(path).read()
    assert set(runs.rows["run_id"]) == expected and runs.rows["run_id"].is_unique and not runs.bad
    assert (results / "mnist_scratch" / "summary_quick.md").exists()


# a sweep's pool whose workers print their pids and sleep; training stubbed out, as each process would take seconds
# to import it (the fork server runs this file before it preloads the executors, so workers get the stubs too)
POOL_SCRIPT = """import os, sys, time, types
for name in ("folder", "fused", "train"):
    sys.modules["cnn_experiments.training." + name] = types.ModuleType(name)
from cnn_experiments.sweeps import executors

def print_pid_and_sleep(_):
    os.write(1, b"%d\\n" % os.getpid())  # one write: the two workers' lines cannot interleave
    time.sleep(60)

if __name__ == "__main__":
    executors.pool(2).map(print_pid_and_sleep, range(2), chunksize=1)
"""


def running(pid):
    "Whether `pid` runs: a zombie has ended (a container's PID 1 may never reap the orphans it adopts)."
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # the state follows the command's name
    except FileNotFoundError:  # it has just ended, or there is no /proc (macOS) and kill said it runs
        return sys.platform != "linux"


def test_the_workers_end_when_their_sweep_is_killed(tmp_path):
    script = tmp_path / "sweep.py"
    script.write_text(POOL_SCRIPT)
    with open(tmp_path / "stderr", "w") as err:  # also what the dead parent's resource tracker says on cleaning up
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=err, text=True)
    lines = [proc.stdout.readline() for _ in range(2)]  # both workers started and busy
    assert all(lines), (tmp_path / "stderr").read_text()
    pids = [int(line) for line in lines]
    proc.kill()  # no chance to stop its pool
    proc.wait()
    deadline = time.monotonic() + 10
    try:
        while (alive := [p for p in pids if running(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive, f"workers {alive} outlived their sweep"
    finally:
        for p in filter(running, pids):
            os.kill(p, signal.SIGKILL)
