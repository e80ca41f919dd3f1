"""The fastai callbacks a run uses: stop on NaN, no host sync per batch, bf16 autocast, frozen batchnorm statistics,
and the training curve (with, for scenes, the share of the gradient that reaches the object's cells)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from fastai.callback.core import Callback, CancelFitException, CancelValidException
from fastai.learner import AvgSmoothLoss


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


def without_host_sync(learn):
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


class SkipValidation(Callback):
    "No held-out pass after each epoch: the run scores the model once, at the end (it changes no number)."
    def before_validate(self):
        raise CancelValidException


class BodyInEvalMode(Callback):
    """Keep the body's batchnorm on its pretrained running statistics while the model trains (fastai's train_bn
    would re-estimate them on the new data); its batchnorm weights still train."""
    def before_batch(self):
        if self.training:
            self.learn.model[0].eval()


class TrainingCurve(Callback):
    """The smoothed training loss at steps 0, 1, 2, 4, 8, ... and at each epoch's end. With a probe (scenes with
    the object's boxes), also the share of the loss's gradient on the final feature map that falls in the cells
    the object covers: average pooling spreads it evenly, max pooling sends it to each channel's top cell."""
    order = 61  # after the Recorder's smoothed loss

    def __init__(self, probe: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
        # counted here, not from the Learner: fine_tune is two fits, and validate calls before_fit too
        self.probe, self.rows, self.step, self.epochs, self.next = probe, [], 0, 0, 0

    def before_batch(self):
        if self.training and self.step == self.next:
            self.record()
            self.next = max(1, 2 * self.next)

    def after_batch(self):
        if self.training:
            self.step += 1

    def after_train(self):
        self.epochs += 1
        self.record()

    def record(self):
        if self.rows and self.rows[-1]["step"] == self.step:  # a power of two that ends an epoch: once
            self.rows.pop()
        loss = float(self.learn.recorder.smooth_loss.value) if self.step else float("nan")
        row = dict(step=self.step, epoch=self.epochs, train_loss=loss)
        if self.probe is not None:
            row.update(object_grad_share(self.learn.model, *self.probe))
        self.rows.append(row)


def object_grad_share(model, x: torch.Tensor, y: torch.Tensor, boxes: torch.Tensor) -> dict:
    """Where the loss's gradient on the final feature map goes, for scenes `x` with the object at `boxes`
    (top, left, size in px): its share in the object's cells, and the object's share of the cells (an even
    spread). Measured as training sees it (train mode) without changing the model, its statistics or the RNG."""
    body, head = model[0], model[1]
    buffers = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith(("weight", "bias"))}
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if x.is_cuda else None
    was_training = model.training
    model.train()
    with torch.enable_grad():
        feats = body(x)
        (grad,) = torch.autograd.grad(F.cross_entropy(head(feats), y), feats)
    model.train(was_training)
    model.load_state_dict(buffers, strict=False)
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state_all(cuda_rng)
    mass = grad.abs().sum(1)  # (N, h, w): gradient magnitude per cell
    mask = object_cells(boxes, x.shape[-1], mass.shape[-1]).to(mass.device)
    share = (mass * mask).sum((1, 2)) / mass.sum((1, 2)).clamp_min(1e-30)
    return dict(object_grad_share=float(share.mean()), object_cell_share=float(mask.mean()))


def object_cells(boxes: torch.Tensor, canvas: int, side: int) -> torch.Tensor:
    "(N, side, side) masks of the final map's cells that an object box (top, left, size in px) overlaps."
    cell = canvas / side
    idx = torch.arange(side)
    first, last = (boxes[:, :2] / cell).floor().long(), ((boxes[:, :2] + boxes[:, 2:3] - 1) / cell).floor().long()
    rows = (idx >= first[:, :1]) & (idx <= last[:, :1])
    cols = (idx >= first[:, 1:2]) & (idx <= last[:, 1:2])
    return (rows[:, :, None] & cols[:, None, :]).float()
