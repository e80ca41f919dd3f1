"""A real sweep process killed mid-run, interrupted, and resumed: every run ends up in runs.csv exactly once; its
worker processes end with it."""
import os
import re
import signal
import subprocess
import sys
import time

from cnn_experiments.cli import main
from cnn_experiments.store import Store
from experiments import mnist_scratch

# the CLI's own path, on 256 digits so that each run takes a fraction of a second
SCRIPT = ("import sys\nfrom experiments import mnist_scratch as M\nM.BASE = M.BASE.replace(n_train=256)\n"
          "from cnn_experiments.cli import main\nsys.exit(main(['run', 'mnist_scratch', '--jobs', '1', "
          "'--results', sys.argv[1]]))\n")


def start(results):
    # unbuffered: each progress line reaches the test the moment the sweep prints it; Ctrl-C as at a terminal,
    # even where the test itself runs in the background (a shell's `&` starts its jobs with SIGINT ignored)
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(results)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def rows(path):
    return len(Store(path).read().rows) if path.exists() else 0


def wait_for_runs(proc, n):
    "Block until the sweep reports its n-th finished run (its progress table's line n): a point it reports itself."
    for line in proc.stdout:
        if (m := re.match(r"\s*(\d+)/\d+\s", line)) and int(m[1]) == n:
            return
    raise AssertionError(f"the sweep ended before its run {n}: {proc.communicate()}")


def test_a_sweep_survives_sigkill_and_sigint_and_resumes_exactly_once(tmp_path, monkeypatch):
    path = tmp_path / "mnist_scratch" / "runs.csv"
    expected = {c.replace(n_train=256, seed=s).run_id for c in mnist_scratch.grid("quick") for s in range(2)}

    proc = start(tmp_path)
    wait_for_runs(proc, 2)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    assert 2 <= rows(path) <= 3  # the run after the second may have finished before the kill landed

    proc = start(tmp_path)  # the dead process's lock is gone with it
    wait_for_runs(proc, 1)  # its first run: at least 10 - 4 runs are still to go
    proc.send_signal(signal.SIGINT)  # Ctrl-C: stops between rows and says what finished
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "runs finished and saved" in out and "run the same command again" in err

    monkeypatch.setattr(mnist_scratch, "BASE", mnist_scratch.BASE.replace(n_train=256))
    assert main(["run", "mnist_scratch", "--jobs", "1", "--results", str(tmp_path)]) == 0  # the rest, here
    runs = Store(path).read()
    assert set(runs.rows["run_id"]) == expected and runs.rows["run_id"].is_unique and not runs.bad
    assert (tmp_path / "mnist_scratch" / "summary_quick.md").exists()


# a sweep's pool whose workers print their pids and sleep; training stubbed out, as each process would take seconds
# to import it (spawned workers run this file again before their initializer, so they get the stubs too)
POOL_SCRIPT = """import os, sys, time, types
for name in ("folder", "fused", "train"):
    sys.modules["cnn_experiments." + name] = types.ModuleType(name)
from cnn_experiments import executors

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
