"""The results store: rows checked on read, bad rows set aside and redone, whole writes, one writer."""
import errno
import multiprocessing
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from cnn_experiments.errors import StoreError
from cnn_experiments.runs import store as S
from cnn_experiments.runs.files import write_atomic
from cnn_experiments.runs.store import Store
from cnn_experiments.sweeps.sweep import run_sweep
from tests.conftest import TINY

GRID = [TINY.replace(seed=s) for s in range(3)]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "runs.csv"
    run_sweep(GRID, path, echo=lambda s: None)
    return path.read_bytes()


@pytest.fixture
def made(tmp_path, template):
    "A runs file of three finished runs."
    path = tmp_path / "exp" / "runs.csv"
    path.parent.mkdir()
    path.write_bytes(template)
    return path


def lines(path):
    return path.read_text().splitlines()


def test_rows_carry_a_checksum_and_read_back_whole(made):
    runs = Store(made).read()
    assert not runs.bad and len(runs.rows) == 3 and list(runs.rows["run_id"]) == [c.run_id for c in GRID]
    assert lines(made)[0].endswith(",checksum," + ",".join(S.LATE))


@pytest.mark.parametrize("spoil,why", [
    (lambda ln: ln[:len(ln) // 2], "fields where the header has"),  # a torn middle row
    (lambda ln: ln.replace("0.", "9.", 1), "checksum does not match"),  # an edited number
    (lambda ln: "garbage,,,line", "fields where the header has"),
    (lambda ln: "\x00\x01binary", "not a line of text"),
])
def test_a_bad_middle_row_is_named_set_aside_and_its_run_redone(made, spoil, why):
    text = lines(made)
    bad_id = text[2].split(",")[0]
    text[2] = spoil(text[2])
    made.write_text("\n".join(text) + "\n")
    runs = Store(made).read()
    assert [b.line for b in runs.bad] == [3] and why in runs.bad[0].why
    said = []
    again = run_sweep(GRID, made, echo=said.append)
    assert f"{made}:3: " in said[0] and "its run is redone" in said[0] and "1 to run" in said[1]
    assert len(again) == 3 and bad_id in set(again["run_id"]) and Store(made).read().bad == []
    kept = (made.parent / "runs.rejected.txt").read_text()
    assert f"runs.csv:3: {runs.bad[0].why}" in kept  # the original is kept aside, not dropped


def test_text_in_a_metric_is_named_with_its_column(made):
    import csv
    import io
    rows = list(csv.reader(io.StringIO(made.read_text())))
    rows[1][rows[0].index("accuracy")] = "high"
    at = rows[0].index("checksum")
    rows[1][at] = S.checksum(rows[1][:at] + rows[1][at + 1:])  # a consistent row whose accuracy is not a number
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    made.write_text(buf.getvalue())
    bad = Store(made).read().bad
    assert len(bad) == 1 and bad[0].line == 2 and bad[0].why == "accuracy 'high' is not a number"


def test_a_runs_file_without_a_column_is_named_and_set_aside_whole(made, capsys):
    df = pd.read_csv(made).drop(columns=["accuracy"])
    df.to_csv(made, index=False)
    runs = Store(made).read()
    assert runs.missing == ["accuracy"] and runs.bad[0].why == "no column accuracy"
    from cnn_experiments import cli
    (made.parent.parent / "mnist_scratch").mkdir()
    os.replace(made, made.parent.parent / "mnist_scratch" / "runs.csv")
    assert cli.main(["report", "mnist_scratch", "--results", str(made.parent.parent)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mnist_scratch/runs.csv: no column accuracy" in err
    said = []
    run_sweep(GRID, made.parent.parent / "mnist_scratch" / "runs.csv", echo=said.append)
    assert "no column accuracy; set aside" in said[0] and "3 to run" in said[1]


def test_the_same_run_twice_on_one_device_is_a_duplicate(made):
    text = lines(made)
    made.write_text("\n".join(text + [text[1]]) + "\n")
    assert [b.why for b in Store(made).read().bad] == ["the same run on the same device as line 2"]


def test_a_runs_file_written_before_the_config_gained_fields_is_upgraded(made):
    from cnn_experiments.runs.store import CHECKSUM, checksum
    old = pd.read_csv(made, dtype=str, keep_default_na=False).drop(columns=["width", "epochs_run"])
    fields = [c for c in old.columns if c != CHECKSUM]
    old[CHECKSUM] = [checksum(list(r)) for r in old[fields].itertuples(index=False)]  # as that version wrote it
    old.to_csv(made, index=False)
    runs = Store(made).read()
    assert runs.legacy and not runs.bad and list(runs.rows["run_id"]) == [c.run_id for c in GRID[:3]]
    store = Store(made)
    with store.writer():
        store.prepare(echo=lambda s: None)
    back = Store(made).read()
    assert not back.legacy and not back.bad and (back.rows["width"] == 1.0).all()


def test_a_new_row_records_the_machine_that_picked_its_kernels_under_its_checksum(made):
    import csv
    import io

    from cnn_experiments.runs import machine
    rows = Store(made).read().rows
    assert (rows["cpu_features"].fillna("") == " ".join(machine.cpu_features())).all()
    assert (rows["cpu"] == machine.cpu_model()).all() and (rows["onednn"].fillna("") == machine.onednn_version()).all()
    table = list(csv.reader(io.StringIO(made.read_text())))
    table[1][table[0].index("cpu_features")] = "avx2 avx512f avx512_bf16"
    table[2] = table[2][:table[0].index("checksum") + 1]  # stops short at its checksum: it lacks what it recorded
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(table)
    made.write_text(buf.getvalue())
    why = "its checksum does not match its fields (changed or torn)"
    assert [(b.line, b.why) for b in Store(made).read().bad] == [(2, why), (3, why)]


def test_rows_written_before_the_machine_columns_verify_as_they_are_and_stay_byte_for_byte(made):
    from cnn_experiments.runs.store import CHECKSUM, LATE, checksum
    old = pd.read_csv(made, dtype=str, keep_default_na=False).drop(columns=list(LATE))
    fields = [c for c in old.columns if c != CHECKSUM]
    old[CHECKSUM] = [checksum(list(r)) for r in old[fields].itertuples(index=False)]  # as that version wrote it
    old.to_csv(made, index=False)
    before = lines(made)
    runs = Store(made).read()
    assert not runs.bad and not runs.legacy and len(runs.rows) == 3 and runs.rows["cpu"].isna().all()
    run_sweep(GRID + [TINY.replace(seed=3)], made, echo=lambda s: None)
    after = lines(made)
    assert after[0] == before[0] + "," + ",".join(LATE) and after[1:4] == before[1:]  # not rewritten: widened
    runs = Store(made).read()
    assert not runs.bad and len(runs.rows) == 4 and list(runs.rows["cpu"].isna()) == [True] * 3 + [False]


def test_a_runs_file_without_checksums_is_set_aside_whole(made):
    pd.read_csv(made).drop(columns=["checksum"]).to_csv(made, index=False)
    runs = Store(made).read()
    assert runs.missing == ["checksum"] and runs.rows.empty and "no column checksum" in runs.bad[0].why


def test_an_unwritable_results_path_is_one_line_before_any_training(tmp_path, monkeypatch):
    from cnn_experiments.training import train
    monkeypatch.setattr(train, "result", lambda *a, **k: pytest.fail("trained before checking the folder"))
    afile = tmp_path / "results"
    afile.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot be made a results folder|not a folder"):
        run_sweep(GRID, afile / "exp" / "runs.csv", echo=lambda s: None)
    real_open = open

    def read_only(path, *a, **k):
        if ".write-test" in str(path):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, *a, **k)
    monkeypatch.setattr("builtins.open", read_only)
    monkeypatch.setattr("pathlib.Path.write_bytes", lambda self, b: read_only(str(self)))
    with pytest.raises(StoreError, match="not writable \\(Read-only file system\\)"):
        run_sweep(GRID, tmp_path / "ro" / "runs.csv", echo=lambda s: None)


def test_a_full_disk_leaves_nothing_half_written_and_the_sweep_resumes(made, monkeypatch):
    before = made.read_bytes()

    class Full:
        "A file on a disk that fills up half-way through the next write."
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])  # half the row reaches the disk, then it is full
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, mode="r", *a, **k: Full(real_open(p, mode, *a, **k))
                        if str(p) == str(made) and mode == "ab" else real_open(p, mode, *a, **k))
    store = Store(made)
    with pytest.raises(StoreError, match="No space left on device.*nothing half-written"), store.writer():
        store.append(store.read().rows.iloc[0].to_dict())
    assert made.read_bytes() == before
    monkeypatch.undo()
    assert len(run_sweep(GRID + [TINY.replace(seed=3)], made, echo=lambda s: None)) == 4


def test_a_figure_or_summary_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "summary.md"
    target.write_text("old")
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(StoreError, match="could not be written \\(No space left\\); the old file"):
        write_atomic(target, "new")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


HOLD = """
import sys, time
from cnn_experiments.runs.store import Store
with Store(sys.argv[1]).writer("cnn-exp run mnist_scratch --profile quick"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_stops_naming_the_first_writes_nothing_and_a_killed_one_leaves_no_lock(tmp_path):
    path = tmp_path / "exp" / "runs.csv"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match=rf"in use by pid {holder.pid} \(cnn-exp run mnist_scratch --profile "
                                             r"quick\) since .*; wait for it"):
            run_sweep(GRID[:1], path, echo=lambda s: None)
        assert not path.exists()  # it did not wait for the lock: the holder sleeps for a minute
    finally:
        holder.kill()
        holder.wait()
    assert len(run_sweep(GRID[:1], path, echo=lambda s: None)) == 1  # the kernel dropped the dead holder's lock


def sweep_of_two(path, go):
    "A child: a sweep of two runs, started when `go` is set; exit 2 if refused because the other one writes."
    torch.set_num_threads(1)  # a forked child must not wait on its parent's OpenMP threads
    go.wait(60)
    try:
        run_sweep([TINY.replace(seed=s) for s in range(2)], path, echo=lambda s: None)
    except StoreError as e:
        print(e)
        sys.exit(2 if "in use by" in str(e) else 3)  # refused: named by pid, or before the holder wrote its note


def test_two_sweeps_started_together_write_each_run_once(tmp_path, digits):
    # two processes forked from this one, which has torch, fastai and the digits loaded (a fresh interpreter takes
    # seconds to import them), released at one moment
    fork = multiprocessing.get_context("fork")
    path, go = tmp_path / "exp" / "runs.csv", fork.Event()
    procs = [fork.Process(target=sweep_of_two, args=(path, go)) for _ in range(2)]
    try:
        for p in procs:
            p.start()
        go.set()
        for p in procs:
            p.join(60)
        codes = sorted(p.exitcode for p in procs)
    finally:
        for p in procs:
            p.kill()
    assert codes in ([0, 0], [0, 2])  # the second either waited its turn and found all done, or was refused
    runs = Store(path).read()
    assert len(runs.rows) == 2 and runs.rows["run_id"].is_unique and not runs.bad
