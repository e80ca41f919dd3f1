"""fastbook's bear classifier on your own photos: `cnn-exp run fine_tune --data bears`.

Runs go through the sweep and the results store like every other run (a stopped run resumes; a folder is known
by its content): the pretrained body with `fine_tune(epochs)` beside the same architecture from random init. The
seed-0 pretrained model is exported as `model.safetensors` + `model.json` for `cnn-exp predict`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data.folders import Folder, folder_id
from ..errors import UserError
from ..reports import report as R
from ..runs.config import PRETRAINED, Config
from ..runs.files import write_atomic
from ..runs.store import Store
from ..sweeps.sweep import run_sweep
from .folder_study import (
    BASE_LR,
    BS,
    RESULTS,
    SCRATCH_LR,
    confusion_figure,
    export,
    open_folder,
    out_folder,
    shown_name,
    speed_options,
    top_losses_figure,
    vocab_of,
)

CLAIM = ("C4 on your photos: a pretrained network fine-tuned with `Learner.fine_tune` beats the same network "
         "trained from random init.")


def configs(fold: Folder, seeds: int, arch: str, size: int, epochs: int, device: str, precision: str,
            channels_last: bool) -> list[Config]:
    "Per seed: fine_tune(epochs) of the pretrained body, and fit_one_cycle(epochs + 1) of the same from random init."
    common = dict(data="folder", folder=str(fold.path), folder_id=folder_id(fold), arch=arch, size=size, bs=BS,
                  p=0.5, device=device, precision=precision, channels_last=channels_last)
    return [c for s in range(seeds) for c in (
        Config(pretrained=True, schedule="fine_tune", epochs=epochs + 1, lr=BASE_LR, seed=s, **common),
        Config(pretrained=False, schedule="one_cycle", epochs=epochs + 1, lr=SCRATCH_LR, seed=s, **common))]


def run_folder(path: Path | str, *, seeds: int = 1, arch: str = PRETRAINED[0], size: int = 224, epochs: int = 4,
               results: Path | str = RESULTS, device: str = "cpu", precision: str = "fp32",
               channels_last: bool = False) -> Path:
    "Fine-tune and train from scratch at every seed on the folder (resuming), save the model, write the report."
    from fastai.torch_core import rank_distrib
    if arch not in PRETRAINED:
        raise UserError(f"--arch: unknown body {arch!r}; choose one of {', '.join(PRETRAINED)}")
    fold = open_folder(path)
    cfgs = configs(fold, seeds, arch, size, epochs, device, precision, channels_last)
    out = out_folder(results, "fine_tune", fold, cfgs[0].folder_id)
    store = Store(out / "runs.csv")
    cmd = f"cnn-exp run fine_tune --data {path} --arch {arch} --epochs {epochs} --size {size} --seeds {seeds}"
    cmd += speed_options(precision, channels_last)
    if rank_distrib():  # under `accelerate launch`: the other processes train their share, the first one writes
        from ..training.folder import result
        done = set(store.read().rows["run_id"])
        for c in cfgs:
            if c.run_id not in done:
                result(c)
        return out / "summary.md"
    run_sweep(cfgs, store, "folder", command=cmd)
    export(store, cfgs[0], fold, store.folder / "model.safetensors")
    return report_folder(out, cmd)


def report_folder(out: Path, cmd: str | None = None) -> Path:
    "The folder's summary from its runs and saved extras alone (trains nothing)."
    store = Store(out / "runs.csv")
    runs = R.one_per_seed(store.read().rows)
    if runs.empty:
        raise UserError(f"report: no runs in {store.path}")
    runs = runs.assign(method=["pretrained + fine_tune" if str(p).lower() == "true" else "same arch, random init"
                               for p in runs["pretrained"]])
    first = runs[(runs["method"] == "pretrained + fine_tune") & (runs["seed"] == 0)].iloc[0]
    extra = store.weights(first["run_id"])
    cmd = cmd or (f"cnn-exp run fine_tune --data {Path(first['folder']).name} --arch {first['arch']} --epochs "
                  f"{int(first['epochs']) - 1} --size {int(first['size'])} --seeds {runs['seed'].nunique()}"
                  + speed_options(first.get("precision"), first.get("channels_last")))
    body, finding = folder_report(runs, extra, out)
    text = R.header(f"fine_tune on the image folder {shown_name(out)}", CLAIM, runs, cmd, "folder")
    write_atomic(out / "summary.md", text + f"{R.FINDING} {finding}\n\n{body}\n")
    print(f"wrote {out / 'summary.md'}\n{R.FINDING} {finding}")
    return out / "summary.md"


def folder_report(runs: pd.DataFrame, extra: dict, out: Path) -> tuple[str, str]:
    "Accuracy of both methods, the verdict (a declared comparison), the confusion matrix and the top losses."
    from ..statistics import stats
    table = stats.compare(runs, [stats.Comparison("pretrained + fine_tune - random init, validation accuracy",
                                                  {"method": "pretrained + fine_tune"},
                                                  {"method": "same arch, random init"}, paired=False, margin=0.01)])
    word = stats.verdict(table)
    s = R.summarize(runs, ["method"])
    vocab = vocab_of(extra)
    t = pd.DataFrame({"method": s["method"], "validation accuracy": R.cells(s),
                      "n seeds": s["n"]})
    cm = R.save_fig(confusion_figure({"pretrained + fine_tune": extra["extra.confusion"]}, vocab,
                                     "Confusion matrix, seed 0 (rows: actual, columns: predicted)"),
                    out / "confusion_matrix.png")
    top = R.save_fig(top_losses_figure({"pretrained": extra}, vocab, "Top losses, seed 0: predicted / actual"),
                     out / "top_losses.png")
    r = runs.iloc[0]
    body = "\n".join([
        f"Data: the folder's images, `RandomSplitter(valid_pct=0.2, seed=42)`, `RandomResizedCrop({int(r['size'])}, "
        "min_scale=0.5)` + `aug_transforms()`, ImageNet normalisation; classes: " + ", ".join(vocab) + ". "
        f"Pretrained: `fine_tune({int(r['epochs']) - 1})` at base_lr {BASE_LR:g}; random init: "
        f"`fit_one_cycle({int(r['epochs'])}, {SCRATCH_LR:g})`, the same total epochs.", "",
        t.to_markdown(index=False, disable_numparse=True), "", "## Verdict", "", f"**Pretraining: {word}.**", "",
        stats.markdown(table), "", "## Confusion matrix (pretrained, seed 0, validation images)", "", cm, "",
        "## Top losses (pretrained, seed 0)", "", top, "", "## The model", "",
        "The seed-0 pretrained model is saved beside this report as weights with its config and vocab, "
        "`model.safetensors` and `model.json` (made by the run, not kept in git); "
        "in this folder, `cnn-exp predict model.safetensors IMAGE...` classifies photos with it."])
    e = table.iloc[0]
    ci = f" [{e['ci_lo']:+.3f}, {e['ci_hi']:+.3f}]" if np.isfinite(e["ci_lo"]) else " (one seed each: no interval)"
    return body, (f"on {shown_name(out)}, pretrained minus random init validation accuracy "
                  f"{e['effect']:+.3f}{ci}: {word}.")
