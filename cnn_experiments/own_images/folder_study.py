"""What both comparisons on a user's image folder share: the folder opened, where its results go, its runs swept,
its models exported for `cnn-exp predict`, and the figures its report draws.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.folders import Folder, check_folder, skipped_line
from ..runs.config import Config
from ..runs.store import Store

RESULTS = Path("folder_results")  # where runs on one's own images land by default (git-ignored here)
BASE_LR, SCRATCH_LR, BS = 2e-3, 1e-2, 16  # fastai's fine_tune base_lr; fit_one_cycle from scratch; fastbook's bs


def open_folder(path: Path | str) -> Folder:
    "The checked folder; the files it skips are named in one line."
    fold = check_folder(path)
    if skipped_line(fold):
        print(skipped_line(fold))
    return fold


def out_folder(results: Path, study: str, fold: Folder, folder_id: str) -> Path:
    "Named by the folder and its content: a moved folder finds its runs, another folder of the same name does not."
    return Path(results) / study / f"folder_{fold.path.resolve().name}_{folder_id[:8]}"


def shown_name(out: Path) -> str:
    "The image folder's name from its results folder's (folder_<name>_<content hash>)."
    import re
    return re.sub(r"_[0-9a-f]{8}$", "", out.name.removeprefix("folder_"))


def speed_options(precision, channels_last) -> str:
    "The command-line options that repeat a folder run's precision and layout (a config's or a runs file row's)."
    return ((f" --precision {precision}" if str(precision) == "bf16" else "")
            + (" --channels-last" if str(channels_last).lower() == "true" else ""))


def export(store: Store, cfg: Config, fold: Folder, target: Path, **config) -> Path:
    "`target` (.safetensors + .json) from a run's saved model, when this machine made it."
    from safetensors.torch import load_file

    from .export import save
    src = store.models_dir / f"{cfg.run_id}.safetensors"
    if src.exists():
        save(load_file(str(src)), target, cfg.arch, fold.classes, cfg.size, cfg.p, **config)
    return target


def vocab_of(extra: dict) -> list[str]:
    "The class names a run saved with its extras."
    return bytes(extra["extra.vocab"].tolist()).decode().split("\n")


def confusion_figure(confusion: dict, vocab: list[str], title: str):
    "One confusion matrix per model (scikit-learn's display), its accuracy in its title."
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay
    fig, axs = plt.subplots(1, len(confusion), figsize=(3.2 * len(confusion) + 1, 3.6), squeeze=False)
    for ax, (name, cm) in zip(axs[0], confusion.items()):
        cm = np.asarray(cm)
        ConfusionMatrixDisplay(cm, display_labels=vocab).plot(ax=ax, cmap="Blues", colorbar=False)
        ax.set_title(f"{name}: accuracy {np.trace(cm) / cm.sum():.3f}")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def top_losses_figure(extras: dict, vocab: list[str], title: str):
    "Each model's validation images of highest loss, a row per model: predicted / actual class and the loss."
    import matplotlib.pyplot as plt
    k = max(len(e["extra.top_images"]) for e in extras.values())
    fig, axs = plt.subplots(len(extras), k, figsize=(2.2 * k, 2.6 * len(extras)), squeeze=False)
    for row, (name, e) in zip(axs, extras.items()):
        for ax in row:
            ax.axis("off")
        for ax, img, loss, p, t in zip(row, e["extra.top_images"], e["extra.top_losses"], e["extra.top_pred"],
                                       e["extra.top_true"]):
            ax.imshow(img.permute(1, 2, 0).numpy())
            ax.set_title(f"{name}: {vocab[int(p)]} / {vocab[int(t)]}\nloss {float(loss):.2f}", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
