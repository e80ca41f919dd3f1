"""Per-item held-out predictions: stored beside runs.csv, whole or not at all, and what a row on a fixed held-out set
adds for that set's own sampling error."""
import errno

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cnn_experiments.errors import StoreError
from cnn_experiments.runs.store import Store
from cnn_experiments.statistics.stats import NO_ITEMS, Comparison, compare, heldout_item_var, markdown
from cnn_experiments.sweeps.sweep import run_sweep
from tests.conftest import TINY

GRID = [TINY.replace(seed=s) for s in range(2)]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    "Two tiny runs alone and the same two fused: their stores."
    root = tmp_path_factory.mktemp("items")
    alone, together = Store(root / "alone" / "runs.csv"), Store(root / "fused" / "runs.csv")
    run_sweep(GRID, alone, echo=lambda s: None)
    run_sweep(GRID, together, echo=lambda s: None, fuse=2)
    return alone, together


# --- the store ----------------------------------------------------------------------------------------------------

def test_every_run_of_a_sweep_stores_its_held_out_items_in_the_held_out_sets_order(swept):
    from cnn_experiments.training.train import tensors
    n = len(tensors(TINY).y_valid)
    for store in swept:
        rows, items = store.read().rows, store.items()
        assert set(items) == set(rows["run_id"]) and store.items_path.name == "items.csv"
        for r in rows.to_dict("records"):  # the held-out set's fixed order: the mean is the row's accuracy
            assert items[r["run_id"]].dtype == bool and len(items[r["run_id"]]) == n
            assert items[r["run_id"]].mean() == pytest.approx(r["accuracy"], abs=1e-7)
    assert (swept[1].read().rows["fused"] == 2).all()
    alone, together = (s.items() for s in swept)
    a, b = (alone[c.run_id] for c in GRID)
    assert (a != b).any()  # each run's own predictions, fused or not
    for c in GRID:
        assert (together[c.run_id] == alone[c.run_id]).mean() > 0.99  # a fused member repeats its run's predictions
    assert store.items([GRID[1].run_id]).keys() == {GRID[1].run_id}


@pytest.mark.parametrize("n", [0, 1, 7, 8, 1000, 10_001])
def test_items_are_stored_and_read_back_exactly_and_compactly(tmp_path, swept, n):
    row = swept[0].read().rows.iloc[0].to_dict()
    correct = np.random.default_rng(n).random(n) < 0.9
    store = Store(tmp_path / "runs.csv")
    with store.writer():
        store.append(row, items=correct)
    back = store.items()
    assert list(back) == [row["run_id"]] and np.array_equal(back[row["run_id"]], correct)
    line = store.items_path.read_text().splitlines()[1]
    assert len(line) <= 12 + len(str(n)) + 4 * ((n + 7) // 8 + 2) // 3 + 16  # ~170 characters per 1000 items


def test_a_stopped_write_leaves_no_half_row_and_a_torn_one_is_left_out(tmp_path, swept, monkeypatch):
    src = swept[0]
    made = tmp_path / "runs.csv"
    made.write_bytes(src.path.read_bytes())
    store = Store(made)
    store.items_path.write_bytes(src.items_path.read_bytes())
    before, runs_before = store.items_path.read_bytes(), made.read_bytes()

    class Full:
        "A file on a disk that fills up half-way through the next write."
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, mode="r", *a, **k: Full(real_open(p, mode, *a, **k))
                        if str(p) == str(store.items_path) and mode == "ab" else real_open(p, mode, *a, **k))
    row = store.read().rows.iloc[0].to_dict()
    with pytest.raises(StoreError, match="No space left on device.*nothing half-written"), store.writer():
        store.append(row, items=np.ones(5, bool))
    monkeypatch.undo()
    assert store.items_path.read_bytes() == before and made.read_bytes() == runs_before  # no items, no row
    # a kill mid-write: the torn row is left out, and the next row starts a line of its own
    store.items_path.write_bytes(before + before.splitlines(keepends=True)[1][:40])
    assert set(store.items()) == set(src.items())
    with store.writer():
        store.append(row, items=np.zeros(9, bool))
    back = store.items()
    assert np.array_equal(back[row["run_id"]], np.zeros(9, bool)) and set(back) == set(src.items())
    assert len(store.items_path.read_text().splitlines()) == len(before.splitlines()) + 2


def test_a_changed_row_is_left_out(tmp_path, swept):
    store = Store(tmp_path / "runs.csv")
    lines = swept[0].items_path.read_text().splitlines()
    run_id, n, bits, check = lines[1].split(",")
    spoilt = ",".join([run_id, n, ("B" if bits[0] != "B" else "C") + bits[1:], check])
    store.items_path.write_text("\n".join([lines[0], spoilt, lines[2]]) + "\n")
    assert set(store.items()) == {lines[2].split(",")[0]}


def test_a_folder_run_gives_its_validation_items(tmp_path):
    from cnn_experiments.data import folders as F
    from cnn_experiments.own_images import heads as H
    from cnn_experiments.training import folder as T
    from tests.test_fine_tune import make_folder
    fold = F.check_folder(make_folder(tmp_path / "parts", per_class=4, classes=("black", "grizzly")))
    cfg = H.configs(fold, ("avg",), 1, "pooled_cnn", 32, 1, "cpu", "fastbook", "fp32", False)[0]
    r = T.result(cfg, progress=False)
    assert r.items.dtype == bool and len(r.items) == int(F.VALID_PCT * len(fold.files))
    assert r.items.mean() == pytest.approx(r.metrics["accuracy"], abs=1e-7)


# --- the statistics -----------------------------------------------------------------------------------------------

SEEDS, N = 6, 400


def arms_of(correct: dict[str, np.ndarray]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    "Runs of each arm (seeds x items of correctness) with accuracy their mean, and their items by run id."
    rows, items = [], {}
    for arm, m in correct.items():
        for s, c in enumerate(m):
            rid = f"{arm}{s:011d}"
            rows.append(dict(run_id=rid, arm=arm, seed=s, accuracy=float(c.mean())))
            items[rid] = c
    return pd.DataFrame(rows), items


def noisy(seed: int, p: float) -> np.ndarray:
    "Each seed right on each item with the item's own chance (items differ widely in difficulty) around p."
    rng = np.random.default_rng(seed)
    ease = np.clip(rng.normal(p, 0.3, N), 0.02, 0.98)
    return rng.random((SEEDS, N)) < ease


def paired(**kw) -> Comparison:
    return Comparison("a vs b", {"arm": "a"}, {"arm": "b"}, **kw)


def test_the_item_variance_is_the_variance_of_a_mean_over_items():
    a, b = noisy(1, 0.8), noisy(2, 0.7)
    per_item = a.mean(0) - b.mean(0)
    assert heldout_item_var([a, b]) == pytest.approx(per_item.var(ddof=1) / N)
    p = a[0].mean()  # one sample, every seed alike: the binomial approximation, up to n / (n - 1)
    assert heldout_item_var([np.tile(a[0], (SEEDS, 1))], [1.0]) == pytest.approx(p * (1 - p) / (N - 1))


def test_a_paired_row_with_items_is_wider_when_items_vary_and_says_what_it_added():
    runs, items = arms_of({"a": noisy(1, 0.8), "b": noisy(2, 0.7)})
    plain = compare(runs, [paired()]).iloc[0]
    loaded = compare(runs, [paired(heldout_items=True)], items=lambda ids: {i: items[i] for i in ids}).iloc[0]
    assert loaded.effect == plain.effect and loaded.ci_lo < plain.ci_lo and loaded.ci_hi > plain.ci_hi
    d = runs[runs.arm == "a"].accuracy.to_numpy() - runs[runs.arm == "b"].accuracy.to_numpy()
    extra = heldout_item_var([np.stack([items[f"{x}{s:011d}"] for s in range(SEEDS)]) for x in "ab"])
    var = d.var(ddof=1) / SEEDS + extra
    df = (SEEDS - 1) * var**2 / (d.var(ddof=1) / SEEDS) ** 2  # Satterthwaite, as `differences`
    assert loaded.ci_hi - loaded.effect == pytest.approx(sps.t.ppf(0.975, df) * var**0.5)
    assert loaded["items"] == N and f"({N} items)" in loaded.test and loaded.note == ""
    assert plain.test == "paired t" and "items" not in compare(runs, [paired()], items=items).columns


def test_a_paired_row_is_unchanged_when_every_item_agrees_over_the_seeds():
    b = noisy(3, 0.7)
    a = np.roll(b, 1, axis=0)  # each seed of a is another seed of b: per item, a - b sums to 0 over the seeds
    runs, items = arms_of({"a": a, "b": b})
    plain = compare(runs, [paired()]).iloc[0]
    loaded = compare(runs, [paired(heldout_items=True)], items=items).iloc[0]
    assert loaded["item_var"] == 0 and np.isfinite(plain.ci_lo) and plain.ci_lo < plain.ci_hi
    assert (loaded.ci_lo, loaded.ci_hi, loaded.p) == (plain.ci_lo, plain.ci_hi, plain.p)


def test_a_row_lacking_items_is_computed_as_today_and_says_so():
    runs, items = arms_of({"a": noisy(1, 0.8), "b": noisy(2, 0.7)})
    plain = compare(runs, [paired()]).iloc[0]
    some = {k: v for k, v in items.items() if not k.startswith("b00000000003")}
    for given in (None, some):
        table = compare(runs, [paired(heldout_items=True)], items=given)
        row = table.iloc[0]
        assert (row.ci_lo, row.ci_hi, row.p) == (plain.ci_lo, plain.ci_hi, plain.p) and row.note == NO_ITEMS
        assert NO_ITEMS in markdown(table) and row.test == "paired t"


def test_a_one_sample_row_uses_its_items_in_place_of_the_binomial_approximation():
    runs, items = arms_of({"a": noisy(1, 0.8)})
    one = dict(heldout_n=N, expect="greater", margin=0.01)
    binomial = compare(runs, [Comparison("a", {"arm": "a"}, 0.7, **one)]).iloc[0]
    loaded = compare(runs, [Comparison("a", {"arm": "a"}, 0.7, heldout_items=True, **one)], items=items).iloc[0]
    assert loaded.effect == binomial.effect and loaded.ci_hi - loaded.ci_lo != binomial.ci_hi - binomial.ci_lo
    assert loaded["item_var"] == pytest.approx(heldout_item_var([np.stack(list(items.values()))], [1.0]))
    assert "binomial" not in loaded.test and f"({N} items)" in loaded.test
    without = compare(runs, [Comparison("a", {"arm": "a"}, 0.7, heldout_items=True, **one)]).iloc[0]
    assert (without.ci_lo, without.ci_hi) == (binomial.ci_lo, binomial.ci_hi) and "binomial approximation" in \
        without.note


def test_items_of_another_run_or_another_held_out_set_are_not_used():
    runs, items = arms_of({"a": noisy(1, 0.8), "b": noisy(2, 0.7)})
    swapped = {**items, "a00000000000": ~items["a00000000000"]}
    assert "do not give the runs' accuracy" in compare(runs, [paired(heldout_items=True)], items=swapped).note[0]
    shorter = {**items, "a00000000000": items["a00000000000"][:-1]}
    with pytest.raises(ValueError, match="held-out sets of different sizes"):
        compare(runs, [paired(heldout_items=True)], items=shorter)


@pytest.mark.parametrize("kw", [dict(paired=False), dict(test="sign-flip"), dict(metric="auc")])
def test_heldout_items_is_declared_only_where_it_applies(kw):
    with pytest.raises(ValueError, match="heldout_items is for a paired, one-sample or interaction t on accuracy"):
        paired(heldout_items=True, **kw)


def test_a_report_reads_the_items_of_its_own_runs(swept):
    from cnn_experiments.reports import report
    store = swept[0]
    runs = store.read().rows
    ctx = report.Context(runs, store, store.folder, "quick")
    row = ctx.compare(runs, [Comparison("tiny", {"lr": TINY.lr}, 0.5, heldout_items=True)]).iloc[0]
    assert row.note == "" and row["items"] == len(store.items()[runs.run_id[0]]) and row["item_var"] > 0
