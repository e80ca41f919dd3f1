"""One run: a frozen config -> a fastai `Learner` -> metrics, its training curve and the weights a report draws.

    python -c "from cnn_experiments.training.train import Config, run; print(run(Config(epochs=1)))"
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner.fit_one_cycle)
from fastai.metrics import accuracy
from fastai.torch_core import set_seed
from fastcore.basics import noop

from ..data import mnist as D
from ..models import cnns, pretrained
from ..runs.config import PRETRAINED, Config
from ..runs.machine import identity
from ..runs.progress import show_progress
from .callbacks import Autocast, BodyInEvalMode, SkipValidation, StopOnNaN, TrainingCurve, without_host_sync
from .learner import CrossEntropy, Learner

__all__ = ["Config", "Result", "run", "result", "learner", "fit", "evaluate", "held_out"]
RUN_THREADS = 1  # a CPU run computes with one thread: the same numbers however a sweep executes it
PROBE_SCENES = 64  # positive training scenes the gradient probe looks at


@dataclass
class Result:
    """What one run gives: the metrics of its row, its training curve, the weights a report draws (if asked), and
    its held-out predictions (items.csv)."""
    metrics: dict
    curve: list[dict] = field(default_factory=list)
    weights: dict[str, torch.Tensor] | None = None
    model: dict[str, torch.Tensor] | None = None  # an image-folder run's whole model, for `cnn-exp predict`
    items: np.ndarray | None = None  # each held-out item right or wrong, in the held-out set's order; None: diverged


@dataclass
class Tensors:
    "A run's data on the host: train and held-out images and labels, the number of classes, the train boxes."
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    n_out: int
    boxes: torch.Tensor | None = None  # scenes: (top, left, size) of each training scene's object


@contextlib.contextmanager
def pinned_threads(device: str):
    "RUN_THREADS intra-op threads for a CPU run (float sums round by thread count), the caller's after."
    before = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(RUN_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tensors(cfg: Config) -> Tensors:
    "Train and held-out tensors, normalised with the training set's statistics, and the number of classes."
    boxes = None
    if cfg.data == "scenes":
        from ..data.scenes import scene_split
        xt, yt, xv, yv, boxes = scene_split(cfg)
    else:
        d = D.load_digits(cfg.data, search=cfg.split == "search")
        xt, yt, xv, yv = d.x_train, d.y_train, d.x_valid, d.y_valid
    if cfg.n_train:
        keep = D.stratified(yt, cfg.n_train, cfg.seed if cfg.vary_data else None)
        xt, yt = xt[keep], yt[keep]
        boxes = boxes[keep] if boxes is not None else None
    n_out = 2 if cfg.data == "scenes" and cfg.mode == "binary" else 10
    if cfg.arch in PRETRAINED:  # an ImageNet body sees RGB with ImageNet statistics, pretrained or not
        return Tensors(pretrained.to_rgb(xt, cfg.size), yt, pretrained.to_rgb(xv, cfg.size), yv, n_out, boxes)
    if cfg.size:
        xt, xv = (torch.nn.functional.interpolate(x, size=(cfg.size, cfg.size), mode="bilinear") for x in (xt, xv))
    mean, std = xt.mean().item(), xt.std().item()
    return Tensors(D.normalize(xt, mean, std), yt, D.normalize(xv, mean, std), yv, n_out, boxes)


def build_model(cfg: Config, n_out: int) -> torch.nn.Module:
    if cfg.arch in PRETRAINED:
        return pretrained.create_model(cfg.arch, n_out, cfg.pretrained, p=cfg.p, pool=cfg.pool, head=cfg.head)[0]
    if cfg.arch == "simple_cnn":
        return cnns.simple_cnn(bn=cfg.bn, act=cfg.act, down=cfg.down, n_out=n_out, bn_first=cfg.bn_first,
                                 width=cfg.width)
    channels = cnns.widen(cfg.channels, cfg.width)
    body_kw = dict(bn=cfg.bn, act=cfg.act, down=cfg.down, bn_first=cfg.bn_first, p_body=cfg.p_body)
    if cfg.arch == "fastai_head":
        return cnns.fastai_head_cnn(channels, n_out, p=cfg.p, pool=cfg.pool if cfg.head == "fastai_pool" else None,
                                    **body_kw)
    return cnns.pooled_cnn(channels, n_out, pool=cfg.pool, p=cfg.p, **body_kw)


def learner(cfg: Config, progress: bool | None = None) -> Learner:
    "A fastai Learner for `cfg`, seeded before data and model exist, fed by device-resident batch slicers."
    cfg.check()
    set_seed(cfg.seed, reproducible=True)
    t = tensors(cfg)
    dls = D.tensor_dls(t.x_train, t.y_train, t.x_valid, t.y_valid, bs=cfg.bs, device=cfg.device)
    model = build_model(cfg, t.n_out).to(cfg.device)
    # a pretrained body's splitter gives body and head their own parameter groups: freeze, discriminative rates
    split = dict(splitter=pretrained.splitter(cfg.arch)) if cfg.arch in PRETRAINED else {}
    learn = Learner(dls, model, loss_func=CrossEntropy(), metrics=accuracy, wd=cfg.wd, cbs=StopOnNaN(), **split)
    learn.n_out = t.n_out
    learn.add_cb(TrainingCurve(probe_scenes(t, cfg) if cfg.arch == "pooled_cnn" and t.boxes is not None else None))
    without_host_sync(learn)
    speedups(learn, cfg)
    learn.logger = noop  # the sweep prints one line per run; fastai's per-epoch lists would flood it
    if not (show_progress() if progress is None else progress):
        learn.remove_cb(ProgressCallback)
    return learn


def probe_scenes(t: Tensors, cfg: Config):
    "The first PROBE_SCENES positive training scenes, on the device, with their boxes: what the gradient probe sees."
    pos = torch.nonzero(t.y_train == 1)[:PROBE_SCENES, 0]
    return t.x_train[pos].to(cfg.device), t.y_train[pos].to(cfg.device), t.boxes[pos]


def speedups(learn: Learner, cfg: Config) -> Learner:
    "The config's precision and memory layout (benchmarks/precision.py measures what they cost and give)."
    if cfg.precision == "bf16":
        learn.add_cb(Autocast(cfg.device))
    if cfg.channels_last:  # NHWC weights make PyTorch pick channels-last kernels for every convolution
        learn.model.to(memory_format=torch.channels_last)
    return learn


def fit(learn: Learner, cfg: Config) -> int:
    "Train; return the epochs run (fewer than asked when the loss stopped being finite)."
    if cfg.schedule.startswith("fine_tune"):  # fastai's recipe: the head alone for an epoch, then all, body at lr/100
        kept = [BodyInEvalMode()] if cfg.schedule == "fine_tune_bn_kept" else []
        learn.fine_tune(cfg.epochs - cfg.freeze_epochs, cfg.lr, freeze_epochs=cfg.freeze_epochs,
                        cbs=[SkipValidation(), *kept])
    elif cfg.schedule == "frozen":
        learn.freeze()
        learn.fit_one_cycle(cfg.epochs, cfg.lr, cbs=[SkipValidation(), BodyInEvalMode()])
    elif cfg.schedule == "one_cycle":
        learn.fit_one_cycle(cfg.epochs, cfg.lr, cbs=SkipValidation())
    else:
        learn.fit(cfg.epochs, cfg.lr, cbs=SkipValidation())
    return learn.epoch + 1 + (cfg.freeze_epochs if cfg.schedule.startswith("fine_tune") else 0)  # frozen: its own fit


def evaluate(learn: Learner, n_out: int) -> dict:
    "Losses in eval mode on the whole training and held-out sets, held-out accuracy, and ROC AUC when binary."
    return held_out(learn, n_out)[0]


def held_out(learn: Learner, n_out: int) -> tuple[dict, np.ndarray]:
    "`evaluate`'s metrics and each held-out item right or wrong, in the held-out set's fixed order."
    train = learn.dls.train.new(shuffle=False, drop_last=False)
    train_loss = float(learn.validate(dl=train)[0])
    probs, targs = learn.get_preds()  # the held-out loader does not shuffle: items in the held-out set's order
    return scores(train_loss, probs, targs, n_out), correct(probs, targs)


def correct(probs: torch.Tensor, targs: torch.Tensor) -> np.ndarray:
    "Each item right (True) or wrong: what a run's row of items.csv records."
    return (probs.argmax(1) == targs).cpu().numpy()


def scores(train_loss: float, probs: torch.Tensor, targs: torch.Tensor, n_out: int) -> dict:
    "A run's metrics from its train loss and its held-out probabilities (on the CPU)."
    out = dict(train_loss=train_loss,
               valid_loss=float(torch.nn.functional.cross_entropy(probs.clamp_min(1e-12).log(), targs)),
               accuracy=float((probs.argmax(1) == targs).float().mean()))
    if n_out == 2:
        from sklearn.metrics import roc_auc_score
        finite = bool(torch.isfinite(probs).all())  # a diverged model's NaN scores have no AUC
        out["auc"] = float(roc_auc_score(targs.numpy(), probs[:, 1].numpy())) if finite else float("nan")
    return out


def result(cfg: Config, keep: tuple[str, ...] = (), progress: bool | None = None) -> Result:
    """Train one run. `keep`: prefixes of the state-dict entries to return (what a report draws; "" for all)."""
    with pinned_threads(cfg.device):
        learn = learner(cfg, progress)
        t0 = time.perf_counter()  # training time only: data are prepared (and cached) before
        epochs = fit(learn, cfg)
        seconds = time.perf_counter() - t0
        metrics, items = held_out(learn, learn.n_out)
        if cfg.probe and np.isfinite(metrics["train_loss"]):
            from .probes import head_only
            metrics.update(head_only(learn))
    curve = next((cb.rows for cb in learn.cbs if isinstance(cb, TrainingCurve)), [])
    weights = {k: v.detach().cpu().clone() for k, v in learn.model.state_dict().items() if keep and k.startswith(keep)}
    items = items if np.isfinite(metrics["train_loss"]) else None  # a diverged model's predictions are artefacts
    return Result(row(metrics, seconds, epochs, cfg.device), curve, weights or None, items=items)


def row(metrics: dict, seconds: float, epochs: int, device: str) -> dict:
    "A run's metrics as its row records them: a diverged run's all NaN, with its time, epochs, device and machine."
    diverged = not np.isfinite(metrics["train_loss"])
    if diverged:  # a NaN model's accuracy is an artefact: the report shows the run as diverged instead
        metrics = {k: float("nan") for k in metrics}
    return dict(**metrics, diverged=diverged, seconds=round(seconds, 3), epochs_run=epochs, **ran_on(device))


def train(cfg: Config, progress: bool | None = None):
    "Train one run; the Learner (for figures and tests) and its metrics."
    with pinned_threads(cfg.device):
        learn = learner(cfg, progress)
        fit(learn, cfg)
        return learn, evaluate(learn, learn.n_out)


def run(cfg: Config, progress: bool | None = None) -> dict:
    "One run = one config -> metrics: train_loss, valid_loss, accuracy, (auc), seconds, epochs_run, device, machine."
    return result(cfg, progress=progress).metrics


def ran_on(device: str) -> dict[str, str]:
    "Where a run ran, as its row records it: the device's name and the machine that picked its kernels."
    return dict(device=device_name(device), **identity(device))


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    import platform
    n = RUN_THREADS
    return f"cpu ({platform.processor() or platform.machine()}, {n} thread{'s' if n > 1 else ''})"
