"""The lean Learner: fastai's events, order and numbers, with only the callbacks that handle an event asked."""
import fastai.learner
import torch
from fastai.callback.core import Callback
from fastai.losses import CrossEntropyLossFlat
from fastcore.basics import noop

from cnn_experiments.data import mnist as D
from cnn_experiments.models.cnns import simple_cnn
from cnn_experiments.training import train
from cnn_experiments.training.learner import CrossEntropy, Learner
from cnn_experiments.training.train import Config


def test_a_run_gives_fastais_numbers_bit_for_bit(monkeypatch):
    cfg = Config(data="mnist", n_train=512, epochs=2, bs=64, lr=3e-3)  # one_cycle: its scheduler joins in fit
    ours, ours_metrics = train.train(cfg)
    monkeypatch.setattr(train, "Learner", fastai.learner.Learner)
    monkeypatch.setattr(train, "CrossEntropy", CrossEntropyLossFlat)
    stock, stock_metrics = train.train(cfg)
    assert type(stock) is fastai.learner.Learner and type(ours) is Learner
    drop = ("seconds",)
    assert {k: v for k, v in ours_metrics.items() if k not in drop} == \
           {k: v for k, v in stock_metrics.items() if k not in drop}
    for a, b in zip(ours.model.state_dict().values(), stock.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [float(v) for v in ours.recorder.losses] == [float(v) for v in stock.recorder.losses]


class Spy(Callback):
    "Records (name, event) for the events it handles."
    def __init__(self, name, log, order=0, **flags):
        super().__init__()
        self.name_, self.events, self.order = name, log, order
        for k, v in flags.items():
            setattr(self, k, v)

    def before_fit(self):
        self.events.append((self.name_, "before_fit"))

    def before_batch(self):
        self.events.append((self.name_, "before_batch", self.training))

    def after_batch(self):
        self.events.append((self.name_, "after_batch", self.training))


class LeavesAfterOneBatch(Spy):
    def after_batch(self):
        super().after_batch()
        self.learn.remove_cb(self)


class SilentUntilRearmed(Callback):
    "Turns itself off in its first batch; fastai turns every callback back on after each fit."
    def before_batch(self):
        self.run = False


def tiny_learner(cls, digits):
    x, y = digits.x_train[:128], digits.y_train[:128]
    dls = D.tensor_dls(x, y, digits.x_valid[:64], digits.y_valid[:64], bs=32)
    learn = cls(dls, simple_cnn(), loss_func=CrossEntropy())
    learn.logger = noop
    return learn


def events_of(cls, digits) -> list:
    log = []
    learn = tiny_learner(cls, digits)
    learn.add_cbs([Spy("late", log, order=90), Spy("early", log, order=-5),
                   Spy("train_only", log, order=1, run_valid=False)])
    silent = SilentUntilRearmed()
    learn.add_cb(silent)
    with learn.no_bar():
        learn.fit(1, 1e-3, cbs=[LeavesAfterOneBatch("once", log, order=2)])
        assert silent.run  # re-armed by after_fit
        learn.fit(1, 1e-3)
    return log


def test_callbacks_see_fastais_events_in_fastais_order(digits):
    ours, stock = events_of(Learner, digits), events_of(fastai.learner.Learner, digits)
    assert ours == stock
    assert ours[:3] == [("early", "before_fit"), ("train_only", "before_fit"), ("once", "before_fit")]
    assert sum(e[0] == "once" for e in ours) == 3  # before_fit, then its one batch: removed itself
    assert ("train_only", "before_batch", False) not in ours  # run_valid=False: no validation batches
    assert sum(e == ("early", "before_batch", False) for e in ours) == 2  # 64 held-out at 64 a batch, 2 fits


def test_get_preds_gives_probabilities_as_fastais_loss_does(digits):
    learn = tiny_learner(Learner, digits)
    probs, targs = learn.get_preds()
    learn.loss_func = CrossEntropyLossFlat()
    stock, _ = learn.get_preds()
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)))
    assert torch.equal(probs, stock)
    assert torch.equal(CrossEntropy().decodes(probs), probs.argmax(1))
