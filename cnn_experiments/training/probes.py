"""Head-only probes: every pooling head fitted on the frozen feature maps of a trained body.

A pooling run's body was trained under one head. Fitting each head afresh on that body's features tells
whether a head fails because it cannot pool the evidence (its probe fails on a good body) or because it
trains a worse body (every probe fails on the body it trained)."""
from __future__ import annotations

import numpy as np
import torch

from ..models.pooling import POOLS, global_pool

CS = (0.01, 0.1, 1.0, 10.0)  # inverse regularisation strengths, chosen by 3-fold cross-validation on train scenes


@torch.no_grad()
def feature_maps(body: torch.nn.Module, loader) -> torch.Tensor:
    "The final feature maps of every image of a batch slicer, in order, on the CPU."
    body.eval()
    return torch.cat([body(xb).float().cpu() for xb, _ in loader.new(shuffle=False, drop_last=False)])


def head_only(learn) -> dict[str, float]:
    """probe_<head>: held-out accuracy of a logistic regression on the body's features pooled by <head>, fitted
    on the training scenes (its strength chosen by cross-validation there: the held-out scenes only score it)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits
    body = learn.model[0]
    ft, fv = feature_maps(body, learn.dls.train), feature_maps(body, learn.dls.valid)
    yt, yv = learn.dls.train.y.cpu().numpy(), learn.dls.valid.y.cpu().numpy()
    out = {}
    with threadpool_limits(1), torch.no_grad():  # BLAS sums round by thread count, as torch's do
        for name in POOLS:
            pool = global_pool(name).eval()  # GeM at its initial p = 3, LSE at r = 5: fixed, not learned here
            zt, zv = (pool(f).flatten(1).numpy().astype(np.float64) for f in (ft, fv))
            clf = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                               {"logisticregression__C": list(CS)}, cv=3, scoring="accuracy")
            out[f"probe_{name}"] = float(clf.fit(zt, yt).score(zv, yv))
    return out


