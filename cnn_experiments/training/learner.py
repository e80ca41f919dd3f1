"""fastai's `Learner` with its per-batch Python overhead cut, and a cross-entropy that returns a plain tensor.

A small CNN's batch costs a few milliseconds, so fastai's event dispatch shows: for each of the eight
per-batch events it sorts every callback and asks each one, through `GetAttr`, whether it handles it.
Training, callbacks and numbers are fastai's; only who gets asked changes (see `Learner._call_one`).
benchmarks/fastai_vs_plain.py times fastai's stock Learner and this one side by side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from fastai import learner as fastai_learner


class Learner(fastai_learner.Learner):
    """fastai's Learner; each event goes only to the callbacks that handle it, in fastai's order.

    The per-event lists are rebuilt whenever the callbacks change (`fit(cbs=...)`, `add_cb`, `remove_cb`).
    `after_fit` still goes to every callback: fastai's `Callback.__call__` re-arms `run` there."""

    def _call_one(self, event_name: str):
        if event_name == "after_fit":
            return super()._call_one(event_name)
        cbs = tuple(self.cbs)
        if self.__dict__.get("_dispatch_for") != cbs:  # tuples compare callbacks by identity
            self.__dict__.update(_dispatch_for=cbs, _dispatch={})
        handlers = self._dispatch.get(event_name)
        if handlers is None:
            handlers = self._dispatch[event_name] = self.ordered_cbs(event_name)
        for cb in handlers:
            cb(event_name)

    def __call__(self, event_name):
        for name in [event_name] if isinstance(event_name, str) else event_name:
            self._call_one(name)


class CrossEntropy(torch.nn.Module):
    """`CrossEntropyLossFlat` for (batch, classes) logits, same numbers, but a plain tensor: fastai's returns a
    `TensorBase`, whose every later operation (clone, mean, the smoothed loss) runs a Python `__torch_function__`."""

    def forward(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(pred, targ)

    def activation(self, x: torch.Tensor) -> torch.Tensor:  # what get_preds applies, as fastai's loss does
        return F.softmax(x, dim=-1)

    def decodes(self, x: torch.Tensor) -> torch.Tensor:  # what Learner.predict applies
        return x.argmax(dim=-1)
