"""The run's frozen config: every field a run depends on, its validation, and the ids a sweep resumes by.

    from cnn_experiments.runs.config import Config; Config(epochs=1).check().run_id
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from ..errors import UserError

DATA = ("mnist", "mnist_shuffled", "mnist_full", "scenes", "folder")
ARCHS = ("simple_cnn", "pooled_cnn", "fastai_head", "efficientnet_lite0", "resnet18", "resnet34")
PRETRAINED = ("efficientnet_lite0", "resnet18", "resnet34")  # the bodies with ImageNet weights
# fit_one_cycle, fit at a constant rate, Learner.fine_tune, fine_tune with the body's batchnorm statistics kept,
# or fit_one_cycle of the head on a frozen body
AUGS = ("fastbook", "none")
SCHEDULES = ("one_cycle", "constant", "fine_tune", "fine_tune_bn_kept", "frozen")
POOLS = ("avg", "max", "concat", "avgmax", "gem", "lse")
# fastai's create_head as fastai builds it (concat pool), the pooling study's pool -> dropout -> linear, or
# fastai's create_head with its global pooling swapped for `pool`
HEAD_KINDS = ("fastai", "pool", "fastai_pool")
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid", "identity")
DOWNS = ("stride", "maxpool", "avgpool")
SPLIT_SEED = 42  # the held-out split never changes with the run's seed (fastbook's RandomSplitter seed)
NOT_IDENTITY = ("device", "folder")  # where a run executes, or where its folder sits: recorded, not what it is


@dataclass(frozen=True)
class Config:
    """Everything one run depends on. Same config, same numbers on the same kind of device."""
    # data
    data: str = "mnist"  # mnist (embedded 5,000 digits), mnist_shuffled (their training labels permuted: a
    # control), mnist_full (70,000, downloads), scenes, or folder
    n_train: int = 0  # training images used, a seeded subset (fixed unless vary_data), every class equally; 0 = all
    split: str = "heldout"  # evaluate on held-out data, or "search": on a fifth of the train data (to pick lr)
    canvas: int = 64  # scenes: side of the square scene, px
    obj_size: int = 28  # scenes: side of the object (the "bear"), px; 28 is a digit's native size
    num_dist: int = -1  # scenes: clutter fragments (8x8 crops of other digits); -1 = the default density
    target: int = 3  # scenes, binary mode: the digit class that is the bear
    mode: str = "binary"  # scenes: binary (bear vs another digit) or tenway (which digit)
    n_scenes: int = 4000  # scenes: training scenes (held-out scenes: a quarter of this)
    folder: str = ""  # data=folder: where the folder of class sub-folders is (fastbook's bears); not its identity
    folder_id: str = ""  # data=folder: a hash of the folder's content (files and classes): what the run is of
    aug: str = "fastbook"  # data=folder: fastbook's RandomResizedCrop(min_scale=0.5) + aug_transforms, or none:
    # the whole image squished to size, unaugmented (objects a crop would lose, images a flip or warp changes)
    vary_data: bool = False  # the seed also draws the data: scenes, the labelled subset, a folder's split; else fixed
    # model
    arch: str = "simple_cnn"  # simple_cnn (fastbook ch. 13), pooled_cnn (body + pooling head), fastai_head,
    # or a pretrained body (efficientnet_lite0 offline, resnet18/34 online) + fastai's create_head(ps=p)
    pretrained: bool = False  # efficientnet_lite0, resnet18/34: start from ImageNet weights, else random init
    size: int = 0  # resize the images to size x size px (0: native); efficientnet/resnet also get 3 channels
    channels: tuple[int, ...] = (16, 32, 64)  # pooled_cnn, fastai_head: output channels per stride-2 stage
    bn: bool = True  # batchnorm after each conv
    bn_first: bool = True  # Conv-BN-act (fastai's ConvLayer); False: Conv-act-BN, the order of fastbook ch. 13's code
    act: str = "relu"  # non-linearity by name, one of ACTIVATIONS
    down: str = "stride"  # the body's way down: stride (stride-2 conv), maxpool or avgpool (conv + 2x2 pool)
    pool: str = "avg"  # pooled_cnn, and a pretrained body with head="pool": global pooling by name, one of POOLS
    head: str = "fastai"  # a pretrained body's or fastai_head's head: fastai's create_head (concat pool, two linear
    # layers); "pool" (pretrained bodies): global pooling by `pool` -> dropout p -> linear; "fastai_pool": fastai's
    # create_head with its global pooling by `pool`
    p: float = 0.0  # head dropout: before pooled_cnn's linear layer; fastai_head: create_head's ps (p/2, then p)
    p_body: float = 0.0  # spatial dropout (Dropout2d, whole channels) after every body stage
    width: float = 1.0  # multiplies every stage's channels (rounded): models of matched cost
    probe: bool = False  # pooled_cnn: after training, fit each pooling head on the frozen body (head-only probes)
    # training
    epochs: int = 1  # passes over the training set
    lr: float = 0.06  # peak learning rate (one_cycle, fine_tune's base_lr) or the constant rate
    schedule: str = "one_cycle"  # one of SCHEDULES; fine_tune: freeze_epochs frozen + the rest of `epochs` unfrozen
    freeze_epochs: int = 1  # fine_tune: epochs of the head alone on the frozen body first (fastai's default, 1)
    bs: int = 64  # batch size, images
    wd: float = 0.01  # decoupled weight decay (fastai's default)
    seed: int = 0  # seeds initialisation, batch order and dropout; data splits are fixed unless vary_data
    device: str = "cpu"  # cpu or cuda: recorded with the run, not part of its identity
    precision: str = "fp32"  # fp32, or bf16: training's forward pass and loss autocast (weights, scoring stay fp32)
    channels_last: bool = False  # NHWC weights, so convolutions run channels-last (the GPU's faster layout)

    def check(self) -> Config:
        "Raise UserError naming the first field that is out of range; return self."
        for name, allowed in (("data", DATA), ("mode", ("binary", "tenway")), ("split", ("heldout", "search")),
                              ("arch", ARCHS), ("act", ACTIVATIONS), ("down", DOWNS), ("pool", POOLS),
                              ("schedule", SCHEDULES), ("device", ("cpu", "cuda")), ("precision", ("fp32", "bf16")),
                              ("head", HEAD_KINDS), ("aug", AUGS)):
            check_choice(name, getattr(self, name), allowed)
        for f in ("epochs", "bs", "canvas", "obj_size", "n_scenes"):
            if getattr(self, f) <= 0:
                raise UserError(f"{f}: must be a positive integer, got {getattr(self, f)}")
        if not 0 <= self.target <= 9:
            raise UserError(f"target: a digit class 0 to 9, got {self.target}")
        if self.num_dist < -1:
            raise UserError(f"num_dist: -1 (the default density) or more, got {self.num_dist}")
        if self.size < 0:
            raise UserError(f"size: 0 (native) or a side in px, got {self.size}")
        if self.schedule.startswith("fine_tune") and not 1 <= self.freeze_epochs < self.epochs:
            raise UserError(f"epochs: {self.schedule} needs freeze_epochs ({self.freeze_epochs}) frozen and at least "
                            f"1 unfrozen, got {self.epochs} in all")
        if self.head != "fastai" and self.arch not in (*PRETRAINED, "fastai_head"):
            raise UserError(f"head: {self.head!r} goes with the pretrained bodies and fastai_head, not {self.arch}")
        if self.head == "pool" and self.arch == "fastai_head":
            raise UserError("head: 'pool' on a body from scratch is arch pooled_cnn; fastai_head takes fastai or "
                            "fastai_pool")
        if self.pretrained and self.arch not in PRETRAINED:
            raise UserError(f"pretrained: only {', '.join(PRETRAINED)} have ImageNet weights, not {self.arch}")
        if self.data == "folder" and (not self.folder or self.arch not in (*PRETRAINED, "pooled_cnn")):
            raise UserError("folder: data=folder needs a folder and one of the bodies " + ", ".join(PRETRAINED)
                            + " or pooled_cnn (from scratch)")
        if self.n_train < 0:
            raise UserError(f"n_train: 0 (all) or more, got {self.n_train}")
        for f in ("p", "p_body"):
            if not 0 <= getattr(self, f) < 1:
                raise UserError(f"{f}: dropout must be in [0, 1), got {getattr(self, f)}")
        for f in ("lr", "width"):
            if getattr(self, f) <= 0:
                raise UserError(f"{f}: must be positive, got {getattr(self, f)}")
        if self.obj_size > self.canvas:
            raise UserError(f"obj_size: {self.obj_size} px does not fit the {self.canvas} px canvas")
        if self.probe and self.arch != "pooled_cnn":
            raise UserError(f"probe: head-only probes need arch pooled_cnn, not {self.arch}")
        if self.device == "cuda":
            import torch
            if not torch.cuda.is_available():
                raise UserError("device: cuda asked for but no CUDA GPU is visible; use cpu")
        return self

    def replace(self, **kw) -> Config:
        return dataclasses.replace(self, **kw)

    @property
    def run_id(self) -> str:
        "A short hash of the fields that differ from the defaults, and the seed: the key a sweep resumes by."
        return _hash(self.identity())

    @property
    def cell_id(self) -> str:
        "The same hash without the seed: runs that differ only by seed are one table cell."
        return _hash({k: v for k, v in self.identity().items() if k != "seed"})

    def identity(self) -> dict:
        "The fields that make the run what it is: those changed from the defaults, and the seed."
        # a field added later with a default that keeps the old behaviour leaves every old id as it was
        default = Config()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in NOT_IDENTITY
                and (getattr(self, f.name) != getattr(default, f.name) or f.name == "seed")}


def _hash(d: dict) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def check_choice(field: str, value, choices) -> str:
    if value not in choices:
        raise UserError(f"{field}: unknown value {value!r}; choose one of {', '.join(map(str, choices))}")
    return value


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def to_row(cfg: Config) -> dict:
    "The config as CSV cells: a tuple of channels becomes one cell, 8-16-32."
    row = dataclasses.asdict(cfg)
    row["channels"] = "-".join(map(str, cfg.channels))
    return row


def from_row(row) -> Config:
    "The config a runs-file row was made with (cells as pandas or the csv module read them; missing: default)."
    kw = {}
    default = Config()
    for name in FIELDS:
        if name not in row or _missing(row[name]):
            continue
        v, d = row[name], getattr(default, name)
        if isinstance(d, bool):
            kw[name] = v if isinstance(v, bool) else str(v).strip().lower() == "true"
        elif isinstance(d, tuple):
            kw[name] = tuple(int(c) for c in str(v).split("-") if c)
        elif isinstance(d, int):
            kw[name] = int(float(v))
        elif isinstance(d, float):
            kw[name] = float(v)
        elif name == "device":  # the row records the device's name
            kw[name] = "cpu" if str(v).startswith("cpu") else "cuda"
        else:
            kw[name] = str(v)
    return Config(**kw)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v) or v == ""


FUSED_ARCHS = ("simple_cnn", "pooled_cnn")  # the architectures a fused model stacks (training/fused.py)
MAY_DIFFER = ("seed", "pool", "lr", "probe")  # what members of one fused model may differ by


def fusable(cfg: Config) -> bool:
    "Whether runs of this config can train fused: an architecture a fused model stacks, on tensors."
    return cfg.arch in FUSED_ARCHS and cfg.data != "folder"


def group_key(cfg: Config) -> str:
    "Runs with the same key can train as one fused model: the same body, data and schedule."
    if cfg.arch != "pooled_cnn":  # simple_cnn has no head to differ by
        return cfg.cell_id
    return cfg.replace(pool="avg", lr=1.0, probe=False).cell_id
