"""Save a trained model as weights + a JSON of its config and vocab; load it without running code from the file.

    cnn-exp predict results/fine_tune/folder_bears/model.safetensors grizzly.jpg teddy.jpg

Weights are written with safetensors. Loading reads safetensors, or a `torch.save` state dict with
`weights_only=True`; anything else (a `learn.export` pickle, a planted file) is refused in one line.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import DataError
from ..models.pretrained import IMAGENET_MEAN, IMAGENET_STD, create_model

FORMAT = 1  # the JSON's layout version
REFUSED = "this suite loads only weights (safetensors, or a torch state dict with weights_only=True)"


def save(model: nn.Module | dict, path: Path | str, arch: str, vocab: list[str], size: int, p: float = 0.5,
         pool: str | None = None, channels: tuple[int, ...] = (), aug: str = "fastbook") -> tuple[Path, Path]:
    "Write `path` (.safetensors: a model or its state dict) and its `.json` (arch, head, size, normalisation, vocab)."
    from safetensors.torch import save as to_bytes

    from ..runs.files import write_atomic
    path = Path(path).with_suffix(".safetensors")
    state = model.state_dict() if isinstance(model, nn.Module) else model
    write_atomic(path, to_bytes({k: v.detach().cpu().contiguous() for k, v in state.items()}))
    meta = dict(format=FORMAT, arch=arch, n_out=len(vocab), vocab=list(map(str, vocab)), size=size, p=p, pool=pool,
                mean=IMAGENET_MEAN, std=IMAGENET_STD, **({"channels": list(channels)} if channels else {}),
                **({"aug": aug} if aug != "fastbook" else {}))
    write_atomic(path.with_suffix(".json"), json.dumps(meta, indent=1) + "\n")
    return path, path.with_suffix(".json")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    "A state dict from safetensors or a weights-only torch file; a DataError for anything else."
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:  # a header that does not parse: not a safetensors file
            raise DataError(f"{path}: not a safetensors file ({type(e).__name__}); {REFUSED}") from None
    if path.suffix in (".pt", ".pth"):
        try:
            with warnings.catch_warnings():  # torch's note about pickle protocols: the refusal below says it all
                warnings.simplefilter("ignore")
                sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # the weights-only unpickler refuses classes and callables
            raise DataError(f"{path}: refused, not a plain state dict ({type(e).__name__}); {REFUSED}") from None
        if isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values()):
            return sd
        raise DataError(f"{path}: refused, holds a {type(sd).__name__}, not a state dict of tensors; {REFUSED}")
    raise DataError(f"{path}: unknown model file type {path.suffix or '(none)'}; {REFUSED}")


def load(path: Path | str) -> tuple[nn.Module, dict]:
    "The model (eval mode) and its JSON, from `path` (.safetensors/.pt) or a folder holding model.safetensors."
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.exists():
        raise DataError(f"{path}: no such model file")
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        arch, vocab = meta["arch"], meta["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{meta_path}: missing or not this suite's model JSON ({type(e).__name__})") from None
    sd = read_weights(path)
    if arch == "pooled_cnn":  # a body trained from scratch on the folder
        from ..models.cnns import pooled_cnn
        model = pooled_cnn(tuple(meta["channels"]), len(vocab), pool=meta.get("pool") or "avg", p=meta.get("p", 0.0),
                           n_in=3)
    else:
        model = create_model(arch, len(vocab), pretrained=False, p=meta.get("p", 0.5), pool=meta.get("pool"))[0]
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise DataError(f"{path}: weights do not fit a {arch} with {len(vocab)} classes "
                        f"({str(e).splitlines()[0]})") from None
    return model.eval(), meta


def predict(model_path: Path | str, files: list[Path | str]) -> list[tuple[str, str, float]]:
    """Per image: (file, predicted class, its probability). Images go through fastai's `test_dl` of the training's
    validation pipeline (the same centre crop and normalisation as the validation images)."""
    import fastai.callback.progress  # noqa: F401  (it gives Learner its no_bar)
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat

    from ..data.folders import inference_dls, readable
    model, meta = load(model_path)
    files = [Path(f) for f in files]
    bad = [f"{f} ({why})" for f in files if (why := readable(f))]
    if bad:
        raise DataError(f"cannot read image(s): {', '.join(bad)}")
    dls = inference_dls(files, meta["size"], meta["vocab"], meta.get("mean", IMAGENET_MEAN),
                        meta.get("std", IMAGENET_STD), meta.get("aug", "fastbook"))
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat())
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=dls.test_dl(files))
    conf, idx = probs.max(1)
    return [(str(f), meta["vocab"][i], float(c)) for f, i, c in zip(files, idx.tolist(), conf)]
