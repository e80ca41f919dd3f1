"""One run: a frozen config -> a fastai `Learner` -> a metrics dict.

    python -c "from cnn_experiments.train import Config, run; print(run(Config(epochs=1)))"
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException, CancelValidException
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner.fit_one_cycle)
from fastai.learner import AvgSmoothLoss
from fastai.metrics import accuracy
from fastai.torch_core import set_seed
from fastcore.basics import noop

from . import data as D
from . import models, pretrained
from .learner import CrossEntropy, Learner
from .models import check_choice as _choice
from .pooling import POOLS

# fit_one_cycle, fit at a constant rate, Learner.fine_tune, or fit_one_cycle of the head on a frozen body
SCHEDULES = ("one_cycle", "constant", "fine_tune", "fine_tune_bn_kept", "frozen")
ARCHS = ("simple_cnn", "pooled_cnn", "fastai_head", *pretrained.BODIES)


@dataclass(frozen=True)
class Config:
    """Everything one run depends on. Same config, same numbers (on the CPU)."""
    # data
    data: str = "mnist"  # mnist (embedded 5,000 digits), mnist_full (70,000, downloads) or scenes
    n_train: int = 0  # training images used, a fixed seeded subset; 0 = all
    split: str = "heldout"  # evaluate on held-out data, or "search": on a fifth of the train data (to pick lr)
    canvas: int = 64  # scenes: side of the square scene, px
    obj_size: int = 28  # scenes: side of the object (the "bear"), px; 28 is a digit's native size
    num_dist: int = -1  # scenes: clutter fragments (8x8 crops of other digits); -1 = the default density
    target: int = 3  # scenes, binary mode: the digit class that is the bear
    mode: str = "binary"  # scenes: binary (bear vs another digit) or tenway (which digit)
    n_scenes: int = 4000  # scenes: training scenes (held-out scenes: a quarter of this)
    # model
    arch: str = "simple_cnn"  # simple_cnn (fastbook ch. 13), pooled_cnn (body + pooling head), fastai_head
    # (fastai_head: the body + fastai's create_head; efficientnet_lite0, resnet18/34: that body + create_head(ps=p))
    pretrained: bool = False  # efficientnet_lite0, resnet18/34: start from ImageNet weights, else random init
    size: int = 0  # resize the digits to size x size px (0: native 28); efficientnet/resnet also get 3 channels
    channels: tuple[int, ...] = (16, 32, 64)  # pooled_cnn, fastai_head: output channels per stride-2 stage
    bn: bool = True  # batchnorm after each conv
    bn_first: bool = True  # Conv-BN-act (fastai's ConvLayer); False: Conv-act-BN, the order of fastbook ch. 13's code
    act: str = "relu"  # non-linearity by name, see models.ACTIVATIONS
    down: str = "stride"  # the body's way down: stride (stride-2 conv), maxpool or avgpool (conv + 2x2 pool)
    pool: str = "avg"  # pooled_cnn: global pooling by name, see pooling.POOLS
    p: float = 0.0  # head dropout: before pooled_cnn's linear layer; fastai_head: create_head's ps (p/2, then p)
    p_body: float = 0.0  # spatial dropout (Dropout2d, whole channels) after every body stage
    # training
    epochs: int = 1  # passes over the training set
    lr: float = 0.06  # peak learning rate (one_cycle) or the constant rate
    schedule: str = "one_cycle"  # one_cycle, constant, fine_tune (1 frozen epoch + epochs - 1 unfrozen),
    # fine_tune_bn_kept (fine_tune, the body in eval mode so its batchnorm statistics stay as pretrained), or
    # frozen: fit_one_cycle of the head on the frozen body (fastai's freeze: batchnorm weights still train),
    # the body kept in eval mode likewise
    bs: int = 64  # batch size, images
    wd: float = 0.01  # decoupled weight decay (fastai's default)
    seed: int = 0  # seeds initialisation, batch order and dropout; data splits are fixed
    device: str = "cpu"  # cpu or cuda
    precision: str = "fp32"  # fp32, or bf16: training's forward pass and loss autocast (weights, scoring stay fp32)
    channels_last: bool = False  # NHWC weights, so convolutions run channels-last (the GPU's faster layout)

    def check(self) -> Config:
        "Raise ValueError naming the first field that is out of range."
        _choice("data", self.data, (*D.DATASETS, "scenes"))
        _choice("mode", self.mode, ("binary", "tenway"))
        _choice("split", self.split, ("heldout", "search"))
        _choice("arch", self.arch, ARCHS)
        _choice("act", self.act, models.ACTIVATIONS)
        _choice("down", self.down, models.DOWNS)
        _choice("pool", self.pool, POOLS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("device", self.device, ("cpu", "cuda"))
        _choice("precision", self.precision, ("fp32", "bf16"))
        for f in ("epochs", "bs", "canvas", "obj_size", "n_scenes"):
            if getattr(self, f) <= 0:
                raise ValueError(f"{f}: must be a positive integer, got {getattr(self, f)}")
        if not 0 <= self.target <= 9:
            raise ValueError(f"target: a digit class 0 to 9, got {self.target}")
        if self.num_dist < -1:
            raise ValueError(f"num_dist: -1 (the default density) or more, got {self.num_dist}")
        if self.size < 0:
            raise ValueError(f"size: 0 (native) or a side in px, got {self.size}")
        if self.schedule.startswith("fine_tune") and self.epochs < 2:
            raise ValueError(f"epochs: {self.schedule} needs at least 2 (1 frozen + 1 unfrozen), got {self.epochs}")
        if self.pretrained and self.arch not in pretrained.BODIES:
            raise ValueError(f"pretrained: only {', '.join(pretrained.BODIES)} have ImageNet weights, not {self.arch}")
        if self.n_train < 0:
            raise ValueError(f"n_train: 0 (all) or more, got {self.n_train}")
        for f in ("p", "p_body"):
            if not 0 <= getattr(self, f) < 1:
                raise ValueError(f"{f}: dropout must be in [0, 1), got {getattr(self, f)}")
        if self.lr <= 0:
            raise ValueError(f"lr: must be positive, got {self.lr}")
        if self.obj_size > self.canvas:
            raise ValueError(f"obj_size: {self.obj_size} px does not fit the {self.canvas} px canvas")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: cuda asked for but no CUDA GPU is visible; use cpu")
        return self

    def replace(self, **kw) -> Config:
        return dataclasses.replace(self, **kw)

    @property
    def run_id(self) -> str:
        "A short hash of the fields that differ from the defaults: the key a sweep resumes by."
        return _hash(self._changed())

    @property
    def cell_id(self) -> str:
        "The same hash without seed and device: runs that differ only by those are one table cell."
        return _hash({k: v for k, v in self._changed().items() if k not in ("seed", "device")})

    def _changed(self) -> dict:
        # a field added later with a default that keeps the old behaviour leaves every old id as it was
        default = Config()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name) or f.name in ("seed", "device")}


def _hash(d: dict) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def show_progress() -> bool:
    "Progress bars for people at a terminal; none in tests, CI or when output goes to a file."
    return sys.stdout.isatty() and os.environ.get("CNN_EXP_PROGRESS", "1") != "0"


def tensors(cfg: Config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    "Train and held-out tensors, normalised with the training set's statistics, and the number of classes."
    if cfg.data == "scenes":
        from .scenes import scene_split
        xt, yt, xv, yv = scene_split(cfg)
    else:
        d = D.load_digits(cfg.data, search=cfg.split == "search")
        xt, yt, xv, yv = d.x_train, d.y_train, d.x_valid, d.y_valid
    if cfg.n_train:
        keep = torch.randperm(len(xt), generator=torch.Generator().manual_seed(D.SPLIT_SEED))[:cfg.n_train]
        xt, yt = xt[keep], yt[keep]
    n_out = 2 if cfg.data == "scenes" and cfg.mode == "binary" else 10
    if cfg.arch in pretrained.BODIES:  # an ImageNet body sees RGB with ImageNet statistics, pretrained or not
        return pretrained.to_rgb(xt, cfg.size), yt, pretrained.to_rgb(xv, cfg.size), yv, n_out
    if cfg.size:
        xt, xv = (torch.nn.functional.interpolate(x, size=(cfg.size, cfg.size), mode="bilinear") for x in (xt, xv))
    mean, std = xt.mean().item(), xt.std().item()
    return D.normalize(xt, mean, std), yt, D.normalize(xv, mean, std), yv, n_out


def build_model(cfg: Config, n_out: int) -> torch.nn.Module:
    if cfg.arch in pretrained.BODIES:
        return pretrained.create_model(cfg.arch, n_out, cfg.pretrained, p=cfg.p)[0]
    if cfg.arch == "simple_cnn":
        return models.simple_cnn(bn=cfg.bn, act=cfg.act, down=cfg.down, n_out=n_out, bn_first=cfg.bn_first)
    body_kw = dict(bn=cfg.bn, act=cfg.act, down=cfg.down, bn_first=cfg.bn_first, p_body=cfg.p_body)
    if cfg.arch == "fastai_head":
        return models.fastai_head_cnn(cfg.channels, n_out, p=cfg.p, **body_kw)
    return models.pooled_cnn(cfg.channels, n_out, pool=cfg.pool, p=cfg.p, **body_kw)


def learner(cfg: Config, progress: bool | None = None) -> Learner:
    "A fastai Learner for `cfg`, seeded before data and model exist, fed by device-resident batch slicers."
    cfg.check()
    set_seed(cfg.seed, reproducible=True)
    xt, yt, xv, yv, n_out = tensors(cfg)
    dls = D.tensor_dls(xt, yt, xv, yv, bs=cfg.bs, device=cfg.device)
    model = build_model(cfg, n_out).to(cfg.device)
    # a pretrained body's splitter gives body and head their own parameter groups: freeze, discriminative rates
    split = dict(splitter=pretrained.splitter(cfg.arch)) if cfg.arch in pretrained.BODIES else {}
    learn = Learner(dls, model, loss_func=CrossEntropy(), metrics=accuracy, wd=cfg.wd, cbs=StopOnNaN(), **split)
    learn.n_out = n_out
    without_host_sync(learn)
    speedups(learn, cfg)
    learn.logger = noop  # the sweep prints one line per run; fastai's per-epoch lists would flood it
    if not (show_progress() if progress is None else progress):
        learn.remove_cb(ProgressCallback)
    return learn


class StopOnNaN(Callback):
    "Stop a run whose training loss is no longer finite; checked once an epoch, so no host sync per batch."
    order = 60  # after the Recorder has updated its smoothed loss

    def after_train(self):  # the end of an epoch's training phase: only ever inside fit
        if not math.isfinite(float(self.learn.recorder.smooth_loss.value)):
            raise CancelFitException


class DeviceSmoothLoss(AvgSmoothLoss):
    "fastai's smoothed training loss, kept on the loss's device: its own copies the loss to the host every batch."
    def accumulate(self, learn):
        self.count += 1
        loss = learn.loss.detach().mean()
        self.val = torch.lerp(loss, self.val.to(loss.device), self.beta)


def without_host_sync(learn: Learner) -> Learner:
    "No host sync per training batch: the smoothed loss stays on the device (read once an epoch)."
    learn.recorder.smooth_loss = DeviceSmoothLoss(learn.recorder.smooth_loss.beta)
    return learn


class Autocast(Callback):
    """Training batches' forward pass and loss in bf16 autocast, on the CPU or the GPU (fastai's MixedPrecision
    is CUDA only); weights, optimiser and every scoring pass stay fp32. bf16 has fp32's range: no grad scaler."""
    order = 10

    def __init__(self, device: str):
        self.ctx = torch.autocast(device, torch.bfloat16)

    def before_batch(self):
        if self.training:
            self.ctx.__enter__()

    def after_pred(self):
        if self.training:
            self.learn.pred = self.pred.float()

    def after_loss(self):
        if self.training:
            self.ctx.__exit__(None, None, None)


def speedups(learn: Learner, cfg: Config) -> Learner:
    "The config's precision and memory layout (benchmarks/precision.py measures what they cost and give)."
    if cfg.precision == "bf16":
        learn.add_cb(Autocast(cfg.device))
    if cfg.channels_last:  # NHWC weights make PyTorch pick channels-last kernels for every convolution
        learn.model.to(memory_format=torch.channels_last)
    return learn


class SkipValidation(Callback):
    "No held-out pass after each epoch: `evaluate` scores the model once, at the end (it changes no number)."
    def before_validate(self):
        raise CancelValidException


class BodyInEvalMode(Callback):
    """Keep the body's batchnorm on its pretrained running statistics while the model trains (fastai's train_bn
    would re-estimate them on the new data); its batchnorm weights still train."""
    def before_batch(self):
        if self.training:
            self.learn.model[0].eval()


def fit(learn: Learner, cfg: Config) -> int:
    "Train; return the epochs run (fewer than asked when the loss stopped being finite)."
    if cfg.schedule.startswith("fine_tune"):  # fastai's recipe: the head alone for an epoch, then all, body at lr/100
        kept = [BodyInEvalMode()] if cfg.schedule == "fine_tune_bn_kept" else []
        learn.fine_tune(cfg.epochs - 1, cfg.lr, cbs=[SkipValidation(), *kept])
    elif cfg.schedule == "frozen":
        learn.freeze()
        learn.fit_one_cycle(cfg.epochs, cfg.lr, cbs=[SkipValidation(), BodyInEvalMode()])
    elif cfg.schedule == "one_cycle":
        learn.fit_one_cycle(cfg.epochs, cfg.lr, cbs=SkipValidation())
    else:
        learn.fit(cfg.epochs, cfg.lr, cbs=SkipValidation())
    return learn.epoch + (2 if cfg.schedule.startswith("fine_tune") else 1)  # the frozen epoch was its own fit


def evaluate(learn: Learner, n_out: int) -> dict:
    "Losses in eval mode on the whole training and held-out sets, held-out accuracy, and ROC AUC when binary."
    train = learn.dls.train.new(shuffle=False, drop_last=False)
    train_loss = float(learn.validate(dl=train)[0])
    return scores(train_loss, *learn.get_preds(), n_out)


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


def train(cfg: Config, progress: bool | None = None) -> tuple[Learner, dict]:
    "Train one run; the Learner (for figures) and its metrics."
    learn = learner(cfg, progress)
    t0 = time.perf_counter()  # training time only: scenes are generated (and cached) before
    epochs = fit(learn, cfg)
    seconds = time.perf_counter() - t0
    metrics = evaluate(learn, learn.n_out)
    diverged = not np.isfinite(metrics["train_loss"])
    if diverged:  # a NaN model's accuracy is an artefact: the report shows the cell as diverged instead
        metrics = {k: float("nan") for k in metrics}
    return learn, dict(**metrics, diverged=diverged, seconds=round(seconds, 3), epochs=epochs,
                       device=device_name(cfg.device))


def run(cfg: Config, progress: bool | None = None) -> dict:
    "One run = one config -> metrics: train_loss, valid_loss, accuracy, (auc), seconds, epochs run, device."
    return train(cfg, progress)[1]


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    import platform
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
