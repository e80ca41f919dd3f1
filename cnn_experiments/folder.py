"""Image folders of class sub-folders (fastbook chapter 2's bears: grizzly / black / teddy), checked, then loaded.

    from cnn_experiments.folder import folder_dls; dls = folder_dls("bears")   # validates first

Every problem is one `DataError` line that names the files or classes; unreadable files are listed and skipped.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

from .data import DataError
from .pretrained import IMAGENET_MEAN, IMAGENET_STD

VALID_PCT, SPLIT_SEED = 0.2, 42  # fastbook's RandomSplitter(valid_pct=0.2, seed=42)


@dataclass(frozen=True)
class Folder:
    "The readable images of a checked folder, their classes, and the files skipped (with why)."
    path: Path
    files: list[Path]
    classes: list[str]
    skipped: list[tuple[Path, str]]


def readable(f: Path) -> str | None:
    "None if PIL can decode the whole image, else a short reason."
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(f) as im:
            im.load()  # verify() misses truncated data; load decodes it all
        return None
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, ValueError, SyntaxError) as e:
        return f"corrupt ({type(e).__name__})"


def _names(paths, root: Path, k: int = 5) -> str:
    names = [str(p.relative_to(root)) for p in paths]
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def check_folder(path: Path | str, valid_pct: float = VALID_PCT) -> Folder:
    "The folder's readable images by class; a DataError for a folder that cannot be trained on."
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"--data: {path} is not a folder; give a folder of class sub-folders (e.g. grizzly/ black/)")
    dirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise DataError(f"{path}: no class sub-folders; put each class's images in a sub-folder named for it")
    files, skipped, empty = [], [], []
    for d in dirs:
        ok = []
        # hidden files and folders (.DS_Store, .ipynb_checkpoints) are not the user's images
        for f in sorted(p for p in d.rglob("*") if p.is_file()
                        and not any(part.startswith(".") for part in p.relative_to(d).parts)):
            why = readable(f)
            if why:
                skipped.append((f, why))
            else:
                ok.append(f)
        files.extend(ok)
        if not ok:
            empty.append(d.name)
    classes = [d.name for d in dirs if d.name not in empty]
    if empty:
        bad = [f for f, _ in skipped if f.relative_to(path).parts[0] in empty]
        raise DataError(f"{path}: no readable images in class folder(s) {', '.join(empty)}"
                        + (f" (skipped: {_names(bad, path)})" if bad else ""))
    if len(classes) < 2:
        raise DataError(f"{path}: only one class ({classes[0]}); a classifier needs at least two class sub-folders")
    need = max(math.ceil(1 / valid_pct), 2 * len(classes))  # one validation image at least, and a train image a class
    if len(files) < need:
        raise DataError(f"{path}: {len(files)} readable images; RandomSplitter(valid_pct={valid_pct}) over "
                        f"{len(classes)} classes needs at least {need}")
    return Folder(path, files, classes, skipped)


def skipped_line(folder: Folder) -> str:
    "One line naming the files skipped and why ('' when none)."
    if not folder.skipped:
        return ""
    k = 20  # a folder of thousands of bad files gets a line, not a page
    more = f" and {len(folder.skipped) - k} more" if len(folder.skipped) > k else ""
    return f"skipped {len(folder.skipped)} unreadable file(s): " + ", ".join(
        f"{f.relative_to(folder.path)} ({why})" for f, why in folder.skipped[:k]) + more


def folder_dls(folder: Folder, size: int = 224, bs: int = 16, seed: int = SPLIT_SEED, device: str = "cpu"):
    "fastbook's bear DataBlock: RandomSplitter(0.2, seed=42), RandomResizedCrop(size, min_scale=0.5), aug_transforms."
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import RandomSplitter
    from fastai.vision.augment import RandomResizedCrop, aug_transforms
    from fastai.vision.data import ImageBlock, Normalize
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=lambda _: folder.files,
                      splitter=RandomSplitter(valid_pct=VALID_PCT, seed=seed),
                      get_y=lambda f: f.relative_to(folder.path).parts[0],  # the class folder, at any depth
                      item_tfms=RandomResizedCrop(size, min_scale=0.5),
                      batch_tfms=[*aug_transforms(), Normalize.from_stats(IMAGENET_MEAN, IMAGENET_STD)])
    n_train = len(folder.files) - int(VALID_PCT * len(folder.files))
    # the training loader drops a last partial batch: a batch larger than the train set would leave none
    return block.dataloaders(folder.path, bs=min(bs, n_train), num_workers=0, device=device)


PHOTOS = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket", "astronaut": "astronaut"}  # skimage.data photos


def sample_folder(root: Path | str, per_class: int = 12, seed: int = 0) -> Path:
    """A folder of real photos to try the workflow offline: random crops (40 to 100% of the side, flips) of four
    skimage photos, one class each. Crops of one photo share a lot: it exercises the workflow, it is no benchmark."""
    import numpy as np
    from PIL import Image
    from skimage import data
    root, rng = Path(root), np.random.default_rng(seed)
    for cls, name in PHOTOS.items():
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            side = int(min(img.size) * rng.uniform(0.4, 1.0))
            x, y = (int(rng.integers(0, s - side + 1)) for s in img.size)
            crop = img.crop((x, y, x + side, y + side)).resize((256, 256))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            crop.save(root / cls / f"{name}_{i:02d}.jpg", quality=90)
    return root


def distributed(learn):
    """fastai's `distrib_ctx` when started by `accelerate launch` (which sets WORLD_SIZE), else nothing: one
    run's batches sharded over the processes' GPUs by fastai's DistributedDL, gradients averaged by DDP."""
    from fastai.torch_core import num_distrib
    if not num_distrib():
        return contextlib.nullcontext(learn)
    try:
        import fastai.distributed  # noqa: F401  (adds Learner.distrib_ctx; needs accelerate to import)
    except (ImportError, NameError):
        raise ValueError("WORLD_SIZE is set (a distributed launch) but accelerate is not installed: "
                         "pip install 'cnn-experiments[distributed]'") from None
    return learn.distrib_ctx()
