"""Image folders of class sub-folders (fastbook chapter 2's bears: grizzly / black / teddy), checked, then loaded.

    from cnn_experiments.data.folders import check_folder, folder_dls; dls = folder_dls(check_folder("bears"))

A folder holds one sub-folder per class, or `train/` and `valid/` each holding them (a validation set of one's own,
used as it is). Every problem is one `DataError` line that names the files or classes; unreadable files are listed
and skipped. A folder is known by its content (`folder_id`): moved, it is the same folder; a file changed or a class
renamed, it is another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..models.pretrained import IMAGENET_MEAN, IMAGENET_STD
from ..runs.config import SPLIT_SEED

VALID_PCT = 0.2  # fastbook's RandomSplitter(valid_pct=0.2, seed=SPLIT_SEED)


@dataclass(frozen=True)
class Folder:
    "The readable images of a checked folder, their classes, the files skipped (with why), and its split's layout."
    path: Path
    files: list[Path]
    classes: list[str]
    skipped: list[tuple[Path, str]]
    valid_folder: bool = False  # train/ and valid/ sub-folders: the validation set is the user's own

    def label(self, f: Path) -> str:
        "An image's class: the folder it sits in under the root (or under train/, valid/)."
        return f.relative_to(self.path).parts[1 if self.valid_folder else 0]


def folder_id(folder: Folder) -> str:
    "A hash of what the folder holds: each readable image's path under the root and its bytes."
    import hashlib
    h = hashlib.sha1()
    for f in folder.files:
        h.update(f.relative_to(folder.path).as_posix().encode() + b"\0" + hashlib.sha1(f.read_bytes()).digest())
    return h.hexdigest()[:12]


def check_folder(path: Path | str, valid_pct: float = VALID_PCT) -> Folder:
    """The folder's readable images by class (fastai's `get_image_files` and `verify_image`); a DataError for a
    folder that cannot be trained on. Other files and images that do not decode are listed and skipped."""
    from fastai.data.transforms import get_files, get_image_files
    from fastai.vision.utils import verify_image
    from fastcore.parallel import parallel
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"--data: {path} is not a folder; give a folder of class sub-folders (e.g. grizzly/ black/)")
    if (path / "train").is_dir() and (path / "valid").is_dir():
        return _split_folder(path)
    dirs = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise DataError(f"{path}: no class sub-folders; put each class's images in a sub-folder named for it")
    images = sorted(get_image_files(path, folders=dirs))
    # fastai's verify_images in threads: a sweep's worker process (daemonic) may not start processes of its own
    broken = {f for f, ok in zip(images, parallel(verify_image, images, threadpool=True)) if not ok}
    others = sorted(set(get_files(path, folders=dirs)) - set(images))  # hidden files are not the user's images
    skipped = sorted([(f, "not an image") for f in others] + [(f, "corrupt") for f in broken])
    files = [f for f in images if f not in broken]
    classes = sorted({f.relative_to(path).parts[0] for f in files})
    empty = [d for d in dirs if d not in classes]
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


def _split_folder(path: Path) -> Folder:
    "A folder of train/ and valid/, each checked as a folder of classes; both must hold the same classes."
    train, valid = check_folder(path / "train", valid_pct=0.5), check_folder(path / "valid", valid_pct=1.0)
    if train.classes != valid.classes:
        raise DataError(f"{path}: train/ has classes {', '.join(train.classes)} but valid/ has "
                        f"{', '.join(valid.classes)}; give both the same class sub-folders")
    return Folder(path, train.files + valid.files, train.classes, train.skipped + valid.skipped, valid_folder=True)


def readable(f: Path) -> str | None:
    "None if `f` is a file PIL can decode whole, else a short reason."
    from PIL import Image, UnidentifiedImageError
    if f.is_dir():
        return "a folder, not an image"
    if not f.is_file():
        return "no such file"
    try:
        with Image.open(f) as im:
            im.load()
        return None
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, ValueError, SyntaxError) as e:
        return f"corrupt ({type(e).__name__})"


def _names(paths, root: Path, k: int = 5) -> str:
    names = [str(p.relative_to(root)) for p in paths]
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def skipped_line(folder: Folder) -> str:
    "One line naming the files skipped and why ('' when none)."
    if not folder.skipped:
        return ""
    k = 20  # a folder of thousands of bad files gets a line, not a page
    more = f" and {len(folder.skipped) - k} more" if len(folder.skipped) > k else ""
    return f"skipped {len(folder.skipped)} unreadable file(s): " + ", ".join(
        f"{f.relative_to(folder.path)} ({why})" for f, why in folder.skipped[:k]) + more


def folder_dls(folder: Folder, size: int = 224, bs: int = 16, seed: int = SPLIT_SEED, device: str = "cpu",
               aug: str = "fastbook"):
    """fastbook's bear DataBlock: RandomSplitter(0.2, seed) (or the folder's own train/ and valid/: fastai's
    GrandparentSplitter), RandomResizedCrop(size, min_scale=0.5), aug_transforms; aug "none": Resize(size, squish)
    alone, so the whole image is seen as it is."""
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import GrandparentSplitter, RandomSplitter
    from fastai.vision.data import ImageBlock, Normalize
    if folder.valid_folder:
        valid = {f for f in folder.files if f.relative_to(folder.path).parts[0] == "valid"}
        splitter = GrandparentSplitter(train_name="train", valid_name="valid")
    else:
        splitter = RandomSplitter(valid_pct=VALID_PCT, seed=seed)
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=lambda _: folder.files, splitter=splitter,
                      get_y=lambda f: folder.label(f), item_tfms=item_tfms(size, aug),
                      batch_tfms=[*batch_augs(aug), Normalize.from_stats(IMAGENET_MEAN, IMAGENET_STD)])
    n_train = len(folder.files) - (len(valid) if folder.valid_folder else int(VALID_PCT * len(folder.files)))
    # the training loader drops a last partial batch: a batch larger than the train set would leave none
    return block.dataloaders(folder.path, bs=min(bs, n_train), num_workers=0, device=device)


def item_tfms(size: int, aug: str):
    "fastbook's random crop (its centre crop on validation images), or the whole image squished to size."
    from fastai.vision.augment import RandomResizedCrop, Resize
    return RandomResizedCrop(size, min_scale=0.5) if aug == "fastbook" else Resize(size, method="squish")


def batch_augs(aug: str) -> list:
    from fastai.vision.augment import aug_transforms
    return aug_transforms() if aug == "fastbook" else []


def inference_dls(files: list[Path], size: int, vocab: list[str], mean, std, aug: str = "fastbook"):
    """DataLoaders whose validation pipeline is the training's (RandomResizedCrop's centre crop at `size`, or the
    squished whole image; the same normalisation): `test_dl` of them prepares images as validation images were."""
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.vision.data import ImageBlock, Normalize
    everything = list(range(len(files)))
    block = DataBlock(blocks=(ImageBlock, CategoryBlock(vocab=vocab)), get_items=lambda _: files,
                      splitter=lambda items: (everything, everything), get_y=lambda _: vocab[0],
                      item_tfms=item_tfms(size, aug), batch_tfms=Normalize.from_stats(mean, std))
    return block.dataloaders(files, bs=min(16, len(files)), num_workers=0)


def split_seed(cfg) -> int:
    "fastbook's fixed split, or (vary_data) a split of the run's seed's own."
    if not cfg.vary_data:
        return SPLIT_SEED
    import numpy as np
    return int(np.random.SeedSequence(SPLIT_SEED, spawn_key=(cfg.seed,)).generate_state(1)[0])


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
