"""Save a trained model as weights + a JSON of its config and vocab; load it without running code from the file.

    cnn-exp predict results/fine_tune/folder_bears/model.safetensors grizzly.jpg teddy.jpg

Weights are written with safetensors. Loading reads safetensors, or a `torch.save` state dict with
`weights_only=True`; anything else (a `learn.export` pickle, a planted file) is refused in one line.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .data import DataError
from .pretrained import IMAGENET_MEAN, IMAGENET_STD, create_model

FORMAT = 1  # the JSON's layout version
REFUSED = "this suite loads only weights (safetensors, or a torch state dict with weights_only=True)"


def save(model: nn.Module, path: Path | str, arch: str, vocab: list[str], size: int, p: float = 0.5,
         pool: str | None = None) -> tuple[Path, Path]:
    "Write `path` (.safetensors) and its `.json` (arch, head, input size, normalisation, vocab)."
    from safetensors.torch import save_file
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))
    meta = dict(format=FORMAT, arch=arch, n_out=len(vocab), vocab=list(map(str, vocab)), size=size, p=p, pool=pool,
                mean=IMAGENET_MEAN, std=IMAGENET_STD)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
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
    model = create_model(arch, len(vocab), pretrained=False, p=meta.get("p", 0.5), pool=meta.get("pool"))[0]
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise DataError(f"{path}: weights do not fit a {arch} with {len(vocab)} classes "
                        f"({str(e).splitlines()[0]})") from None
    return model.eval(), meta


def preprocess(files: list[Path], size: int) -> torch.Tensor:
    "Images -> a normalised batch: the shorter side resized to `size`, centre-cropped (as validation crops)."
    from PIL import Image

    from .folder import readable
    bad = [f"{f} ({why})" for f in files if (why := readable(f) if Path(f).is_file() else "no such file")]
    if bad:
        raise DataError(f"cannot read image(s): {', '.join(bad)}")
    xs = []
    for f in files:
        with Image.open(f) as im:
            im = im.convert("RGB")
            s = size / min(im.size)
            im = im.resize((max(size, round(im.width * s)), max(size, round(im.height * s))), Image.BILINEAR)
            left, top = (im.width - size) // 2, (im.height - size) // 2
            im = im.crop((left, top, left + size, top + size))
            xs.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size, 3))
    x = torch.stack(xs).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def predict(model_path: Path | str, files: list[Path | str]) -> list[tuple[str, str, float]]:
    "Per image: (file, predicted class, its probability)."
    model, meta = load(model_path)
    files = [Path(f) for f in files]
    with torch.no_grad():
        probs = model(preprocess(files, meta["size"])).softmax(1)
    conf, idx = probs.max(1)
    return [(str(f), meta["vocab"][i], float(c)) for f, i, c in zip(files, idx.tolist(), conf)]
