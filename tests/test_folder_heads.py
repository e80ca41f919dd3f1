"""Which pooling head for one's own images: `cnn-exp run pooling --data FOLDER` on generated photos."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnn_experiments import cli
from cnn_experiments.data import folders as F
from cnn_experiments.errors import DataError
from cnn_experiments.own_images import heads as H
from cnn_experiments.training import folder as T
from tests.test_fine_tune import make_folder


def configs(fold, heads, seeds, arch, size, epochs, precision="fp32", channels_last=False):
    "The head comparison's configs on the CPU with fastbook's augmentation."
    return H.configs(fold, heads, seeds, arch, size, epochs, "cpu", "fastbook", precision, channels_last)

def test_a_folder_is_known_by_its_content_not_its_path(tmp_path):
    root = make_folder(tmp_path / "a" / "bears", per_class=4)
    first = F.folder_id(F.check_folder(root))
    moved = tmp_path / "b" / "bears"
    shutil.copytree(root, moved)
    assert F.folder_id(F.check_folder(moved)) == first  # moved or re-cloned: the same runs
    (moved / "teddy").rename(moved / "toy")
    renamed = F.folder_id(F.check_folder(moved))
    (root / "black" / "0.jpg").write_bytes((root / "black" / "1.jpg").read_bytes())
    changed = F.folder_id(F.check_folder(root))
    assert len({first, renamed, changed}) == 3
    cfgs = configs(F.check_folder(root), ("avg", "max"), 2, "efficientnet_lite0", 32, 1)
    elsewhere = configs(F.check_folder(moved), ("avg", "max"), 2, "efficientnet_lite0", 32, 1)
    assert {c.run_id for c in cfgs}.isdisjoint(c.run_id for c in elsewhere)  # other content: other runs
    assert len({c.run_id for c in cfgs}) == 4 and {c.seed for c in cfgs} == {0, 1} and all(c.vary_data for c in cfgs)


def test_a_folder_with_its_own_valid_split_keeps_it(tmp_path):
    make_folder(tmp_path / "own" / "train", per_class=4, classes=("black", "grizzly"))
    make_folder(tmp_path / "own" / "valid", per_class=2, classes=("black", "grizzly"))
    fold = F.check_folder(tmp_path / "own")
    assert fold.valid_folder and fold.classes == ["black", "grizzly"] and len(fold.files) == 12
    assert {fold.label(f) for f in fold.files} == {"black", "grizzly"}
    dls = F.folder_dls(fold, size=32, bs=4)
    assert len(dls.valid_ds) == 4 and all(f.parts[-3] == "valid" for f in dls.valid_ds.items)
    assert not any(c.vary_data for c in configs(fold, ("avg", "max"), 1, "efficientnet_lite0", 32, 1))
    make_folder(tmp_path / "odd" / "train", per_class=3, classes=("black", "grizzly"))
    make_folder(tmp_path / "odd" / "valid", per_class=3, classes=("black", "teddy"))
    with pytest.raises(DataError, match="train/ has classes black, grizzly but valid/ has black, teddy"):
        F.check_folder(tmp_path / "odd")


def test_the_heads_compare_on_a_folder_resume_and_each_heads_model_predicts(tmp_path, capsys):
    root = make_folder(tmp_path / "bears", per_class=5)
    res = tmp_path / "mine"
    # 48 px: EfficientNet's final map is 2x2, so avg and max differ (at 32 px it is 1x1 and nearly all zero: the
    # predictions hardly depend on the image, whatever the head)
    argv = ["run", "pooling", "--data", str(root), "--heads", "avg,max", "--seeds", "2", "--size", "48",
            "--epochs", "1", "--results", str(res), "--jobs", "1"]
    assert cli.main(argv) == 0
    out = next((res / "pooling").glob("folder_bears_*"))
    text = (out / "summary.md").read_text()
    for part in ("**Did the heads learn?** not tested with fewer than 5 seeds", "**Which head:** none yet: too few",
                 "**Data it would take:** run 5 seeds", "| max - avg, validation accuracy |", "error rate",
                 "black (accuracy)", "## Where each head looks", "cams.png", "confusion_matrices.png",
                 "top_losses.png", "seconds per run", "what more seeds would buy", "indicative"):
        assert part in text, part
    for name in ("cams.png", "confusion_matrices.png", "top_losses.png"):
        assert (out / name).stat().st_size > 0
    # the maps' thumbnails are the validation images as they were (denormalised), not the network's inputs
    from cnn_experiments.runs.store import Store
    store = Store(out / "runs.csv")
    first = store.read().rows.iloc[0]
    thumbs = store.weights(first["run_id"])["extra.cam_images"].float()
    photos = np.stack([np.asarray(Image.open(f)) for c in ("black", "grizzly", "teddy") for f in (root / c).glob("*")])
    assert abs(thumbs.mean().item() - photos.mean()) < 25  # the images' own brightness, in 0-255
    capsys.readouterr()
    assert cli.main(argv) == 0 and "4 already in" in capsys.readouterr().out  # resumed: nothing trained again
    # each head's model predicts what its run predicted: on the first seed's validation images (the saved models are
    # seed 0's), `cnn-exp predict` gives the confusion matrix the run recorded (weights, head, vocab order, pipeline)
    fold = F.check_folder(root)
    cfgs = configs(fold, ("avg", "max"), 1, "efficientnet_lite0", 48, 1)
    valid = [str(f) for f in F.folder_dls(fold, size=48, seed=F.split_seed(cfgs[0])).valid_ds.items]
    assert cli.main(["predict", str(out / "model_avg.safetensors"), *valid]) == 0
    said = {"avg": capsys.readouterr().out}
    # as a user's `cnn-exp predict` runs: a fresh interpreter, nothing imported before the command's own imports
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the workers compute: two threads crawl on busy cores
    r = subprocess.run([sys.executable, "-m", "cnn_experiments.cli", "predict", str(out / "model_max.safetensors"),
                        *valid], capture_output=True, text=True, timeout=120, env=one_thread)
    assert r.returncode == 0, r.stderr
    said["max"] = r.stdout
    for cfg in cfgs:
        meta = json.loads((out / f"model_{cfg.pool}.json").read_text())
        assert meta["pool"] == cfg.pool and meta["vocab"] == fold.classes
        got = np.zeros((len(fold.classes),) * 2, int)
        for f, line in zip(valid, said[cfg.pool].splitlines(), strict=True):
            got[fold.classes.index(fold.label(Path(f))), fold.classes.index(line.split("\t")[1])] += 1
        assert (got == store.weights(cfg.run_id)["extra.confusion"].numpy()).all(), (cfg.pool, got)


@pytest.mark.parametrize("argv,match", [
    (["run", "pooling", "--data", "x", "--profile", "medium"], "--profile: does not apply to a folder run (--data)"),
    (["run", "pooling", "--data", "x", "--fuse", "4"], "--fuse: does not apply to a folder run (--data)"),
    (["run", "pooling", "--data", "x", "--heads", "avg,median"], "--heads: 'avg,median'; give two or more distinct"),
    (["run", "pooling", "--data", "x", "--heads", "max"], "--heads: 'max'; give two or more distinct heads"),
    (["run", "fine_tune", "--data", "x", "--heads", "avg,max"], "--heads: goes with `run pooling --data`"),
    (["run", "fine_tune", "--data", "x", "--aug", "none"], "--aug: goes with `run pooling --data`"),
    (["run", "pooling", "--data", "x", "--aug", "crop"], "argument --aug: invalid choice: 'crop'"),
    (["run", "dropout", "--data", "x"], "--data: pooling and fine_tune train on an image folder, not dropout"),
    (["run", "pooling", "--heads", "avg,max"], "--heads, --aug, --precision and --channels-last go with --data PATH"),
    (["run", "pooling", "--channels-last"], "a profile declares its own precision and layout"),
    (["run", "pooling", "--data", "x", "--precision", "fp16"], "argument --precision: invalid choice: 'fp16'"),
    (["run", "pooling", "--data", "no/such/dir"], "--data: no/such/dir is not a folder"),
])
def test_folder_options_that_cannot_apply_are_one_line_errors(argv, match, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_bf16_on_a_cpu_without_native_bf16_is_a_one_line_error(monkeypatch, capsys):
    from cnn_experiments.runs import machine
    monkeypatch.setattr(machine, "native_bf16", lambda: False)
    assert cli.main(["run", "pooling", "--data", "x", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err
    assert "--precision: bf16 needs a CPU with native bf16" in err and err.count("\n") == 1


def test_a_body_from_scratch_compares_its_heads_and_predicts(tmp_path, capsys, monkeypatch):
    from cnn_experiments.runs import machine
    monkeypatch.setattr(machine, "native_bf16", lambda: True)  # bf16 is refused where the CPU emulates it
    root = make_folder(tmp_path / "parts", per_class=4, classes=("black", "grizzly"))
    res = tmp_path / "mine"
    assert cli.main(["run", "pooling", "--data", str(root), "--arch", "pooled_cnn", "--heads", "avg,max", "--seeds",
                     "1", "--size", "32", "--epochs", "1", "--results", str(res), "--jobs", "1", "--precision", "bf16",
                     "--channels-last"]) == 0
    out = next((res / "pooling").glob("folder_parts_*"))
    text = (out / "summary.md").read_text()
    assert "pooled_cnn from random init" in text and "(one seed: no interval)" in text
    assert "--precision bf16 --channels-last" in text  # the report's command repeats the runs' settings
    capsys.readouterr()
    assert cli.main(["predict", str(out / "model_max.safetensors"), str(root / "black" / "0.jpg")]) == 0
    assert capsys.readouterr().out.split("\t")[1] in ("black", "grizzly")


def test_a_folder_runs_learner_takes_its_precision_and_layout(tmp_path):
    from cnn_experiments.training.callbacks import Autocast
    fold = F.check_folder(make_folder(tmp_path / "parts", per_class=4, classes=("black", "grizzly")))
    plain, fast = (configs(fold, ("avg", "max"), 1, "pooled_cnn", 32, 1, precision=p, channels_last=c)[0]
                   for p, c in (("fp32", False), ("bf16", True)))
    assert plain.run_id != fast.run_id  # a setting that changes the numbers is part of the run's identity
    for cfg, want in ((plain, False), (fast, True)):
        learn = T.learner(cfg, progress=False)
        conv = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d))
        assert any(isinstance(cb, Autocast) for cb in learn.cbs) == want
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == want


def test_the_folder_path_finds_the_studys_direction_on_the_studys_own_scenes(tmp_path):
    """The pooling study's small-object scenes written out as PNG files (train/ and valid/): through
    `run pooling --data` (a body from scratch, the whole image unaugmented) avg beats max, as the built-in study
    finds on the same scenes (an object of 1.25 cells, where avg learns and max mostly does not). One seed a head:
    at these 1,200 scenes avg led max by 0.12 to 0.33 at every one of seeds 0-7, through the folder (4 epochs) and
    built in alike; with fewer scenes (600, 800) or epochs (3) the folder's avg failed to learn at some seeds."""
    from cnn_experiments.data import scenes
    from cnn_experiments.runs.store import Store
    from cnn_experiments.training import train
    from experiments.pooling import base
    canvas, obj, n = 32, 10, 1200
    (xt, yt, _), (xv, yv, _) = scenes.scenes_for(canvas, obj, -1, 3, "binary", n)
    root = tmp_path / "scenes"
    for split, x, y in (("train", xt, yt), ("valid", xv, yv)):
        for i, (img, label) in enumerate(zip(x, y)):
            d = root / split / ("bear" if label else "other")
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray((img[0].numpy() * 255).round().astype(np.uint8)).save(d / f"{i:04d}.png")
    study = base("quick").replace(canvas=canvas, channels=H.scratch_channels(canvas), obj_size=obj, n_scenes=n,
                                  vary_data=False)  # these very scenes, not a draw of the seed's own
    built_in = {h: train.run(study.replace(pool=h))["accuracy"] for h in ("avg", "max")}
    res = tmp_path / "mine"
    assert cli.main(["run", "pooling", "--data", str(root), "--arch", "pooled_cnn", "--size", str(canvas), "--aug",
                     "none", "--heads", "avg,max", "--seeds", "1", "--epochs", "3", "--results", str(res),
                     "--jobs", "1"]) == 0
    out = next((res / "pooling").glob("folder_scenes_*"))
    folder = {r["pool"]: float(r["accuracy"]) for _, r in Store(out / "runs.csv").read().rows.iterrows()}
    assert "the whole image, no augmentation" in (out / "summary.md").read_text()
    for acc in (built_in, folder):
        assert acc["avg"] - acc["max"] > 0.05, (built_in, folder)  # avg ahead, by more than a held-out scene's noise


def test_a_folder_where_no_head_learns_says_so_first(tmp_path):
    "Noise images whose class says nothing about them: the report's first finding is that no head learned."
    rng = np.random.default_rng(0)
    for c in ("left", "right"):
        (tmp_path / "noise" / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "noise" / c / f"{i}.png")
    argv = ["run", "pooling", "--data", str(tmp_path / "noise"), "--arch", "pooled_cnn", "--heads", "avg,max",
            "--seeds", "5", "--size", "32", "--epochs", "1", "--results", str(tmp_path / "res"), "--jobs", "1"]
    assert cli.main(argv) == 0
    text = next((tmp_path / "res" / "pooling").glob("folder_noise_*/summary.md")).read_text()
    first = text[text.index("**Finding:**"):].splitlines()[0]
    assert first.startswith("**Finding:** no head learned (accuracy avg ")
    assert "which head: none: no head learned" in first
    assert "**Did the heads learn?** **no**: no head beat 0.5" in text and "no head can be recommended" in text
