import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cnn_experiments import cli
from cnn_experiments.data import folders as F
from cnn_experiments.errors import DataError
from cnn_experiments.models import pretrained as P
from cnn_experiments.own_images import export
from cnn_experiments.runs.config import Config
from cnn_experiments.training import folder as T
from cnn_experiments.training.train import fit, learner
from experiments import fine_tune as FT

COLOURS = {"grizzly": (150, 90, 40), "black": (25, 25, 25), "teddy": (230, 200, 150)}


def make_folder(root: Path, per_class: int = 6, classes=tuple(COLOURS), px: int = 40) -> Path:
    "Generated 'photos': each class a colour with noise, so one short epoch has something to learn."
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            a = np.clip(np.array(COLOURS[c]) + rng.normal(0, 30, (px, px, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / c / f"{i}.jpg")
    return root


def spoil(root: Path) -> None:
    "A truncated JPEG and a text file among the images."
    (root / "grizzly" / "broken.jpg").write_bytes((root / "grizzly" / "0.jpg").read_bytes()[:200])
    (root / "black" / "notes.txt").write_text("not a photo")


def batch(files, size, vocab=("a", "b", "c")):
    "The images as `cnn-exp predict` prepares them: fastai's test_dl of the validation pipeline."
    dls = F.inference_dls(files, size, list(vocab), P.IMAGENET_MEAN, P.IMAGENET_STD)
    return torch.cat([b[0] for b in dls.test_dl(files)]).as_subclass(torch.Tensor)


def test_offline_weights_are_real_imagenet_weights(tmp_path):
    from skimage import data
    files = []
    for name in ("chelsea", "coffee"):
        Image.fromarray(getattr(data, name)()).save(tmp_path / f"{name}.png")
        files.append(tmp_path / f"{name}.png")
    with torch.no_grad():
        top = P.imagenet_classifier()(batch(files, 224)).argmax(1).tolist()
    assert top[0] in (281, 282, 285), top  # tabby, tiger cat, Egyptian cat
    assert top[1] in (967, 968), top  # espresso, cup


def test_package_weights_map_one_to_one_by_position():
    import timm
    src = P.efficientnet_lite0_weights()
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    mapped = P.map_by_position(src, model)
    plain = [v for k, v in src.items() if not k.endswith("num_batches_tracked")]
    assert len(mapped) == len(plain) == 247
    assert all(a is b for a, b in zip(mapped.values(), plain))  # same tensors, same order, renamed
    model.load_state_dict(mapped, strict=False)
    assert torch.equal(model.classifier.weight, src["_fc.weight"])


def test_weights_that_do_not_fit_are_one_clear_error():
    import timm
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    src = dict(P.efficientnet_lite0_weights())
    src["_conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(DataError, match=r"do not map onto the model: 247 tensors vs 247, first shape mismatch "
                                        r"_conv_stem.weight \(16, 3, 3, 3\) -> conv_stem.weight \(32, 3, 3, 3\)"):
        P.map_by_position(src, model)
    with pytest.raises(DataError, match="247 tensors vs 2"):
        P.map_by_position(src, torch.nn.Linear(3, 2))


def test_resnet_without_network_names_the_offline_body(monkeypatch):
    from urllib.error import URLError

    def offline(*a, **k):
        raise URLError("no route to host")
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(DataError, match=r"^resnet18: ImageNet weights could not be downloaded \(URLError\); the "
                                        r"offline body efficientnet_lite0 needs no network"):
        P.create_model("resnet18", 3, pretrained=True)


def test_resnet_from_random_init_needs_no_network():
    model, split = P.create_model("resnet18", 3, pretrained=False)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3) and len(split(model)) == 3


def test_unreadable_files_are_listed_and_skipped(tmp_path):
    root = make_folder(tmp_path / "bears")
    spoil(root)
    fold = F.check_folder(root)
    assert fold.classes == ["black", "grizzly", "teddy"] and len(fold.files) == 18
    line = F.skipped_line(fold)
    assert line.startswith("skipped 2 unreadable file(s): ")
    assert "black/notes.txt (not an image)" in line and "grizzly/broken.jpg (corrupt" in line


@pytest.mark.parametrize("setup,match", [
    (lambda r: r.mkdir(), "no class sub-folders"),
    (lambda r: None, "is not a folder"),
    (lambda r: make_folder(r, classes=("grizzly",)), r"only one class \(grizzly\); a classifier needs at least two"),
    (lambda r: (make_folder(r, classes=("grizzly", "black")), (r / "teddy").mkdir(),
                (r / "teddy" / "x.txt").write_text("?")),
     r"no readable images in class folder\(s\) teddy \(skipped: teddy/x.txt\)"),
    (lambda r: make_folder(r, per_class=2, classes=("grizzly", "black")),
     r"4 readable images; RandomSplitter\(valid_pct=0.2\) over 2 classes needs at least 5"),
])
def test_folder_problems_are_one_line_errors(tmp_path, setup, match):
    root = tmp_path / "bears"
    setup(root)
    with pytest.raises(DataError, match=match) as e:
        F.check_folder(root)
    assert "\n" not in str(e.value)


def test_folder_trains_end_to_end_resumes_then_predicts(tmp_path, capsys):
    root = make_folder(tmp_path / "bears")
    spoil(root)
    res = tmp_path / "results"
    argv = ["run", "fine_tune", "--data", str(root), "--size", "32", "--epochs", "1", "--results", str(res)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "skipped 2 unreadable file(s)" in out and "black/notes.txt" in out
    folder = next((res / "fine_tune").glob("folder_bears_*"))
    text = (folder / "summary.md").read_text()
    for part in ("classes: black, grizzly, teddy", "## Confusion matrix", "confusion_matrix.png", "top_losses.png",
                 "RandomSplitter(valid_pct=0.2, seed=42)", "RandomResizedCrop(32, min_scale=0.5)", "## Verdict",
                 "| comparison | predicted | test |", "cnn-exp predict"):
        assert part in text, part
    assert (folder / "confusion_matrix.png").stat().st_size > 0 and (folder / "top_losses.png").stat().st_size > 0
    assert cli.main(argv) == 0 and "2 already in" in capsys.readouterr().out  # resumed: nothing trained again
    meta = json.loads((folder / "model.json").read_text())
    assert meta["vocab"] == ["black", "grizzly", "teddy"] and meta["size"] == 32
    assert oct((folder / "model.safetensors").stat().st_mode)[-3:] == oct((folder / "model.json").stat().st_mode)[-3:]
    assert cli.main(["predict", str(folder / "model.safetensors"), str(root / "teddy" / "0.jpg"),
                     str(root / "black" / "1.jpg")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for ln in lines:
        _, label, prob = ln.split("\t")
        assert label in meta["vocab"] and 0 < float(prob) <= 1
    assert cli.main(["predict", str(folder / "model.safetensors"), str(root / "black" / "notes.txt"), str(root)]) == 2
    err = capsys.readouterr().err
    assert "cannot read image(s): " in err and "notes.txt (not an image)" in err and "(a folder, not an image)" in err


def head_perturbed_model():
    model = P.create_model(P.OFFLINE, 3, pretrained=False)[0].eval()
    with torch.no_grad():
        model[1][-1].weight.normal_(generator=torch.Generator().manual_seed(0))
    return model


def test_save_then_load_gives_the_same_predictions(tmp_path):
    make_folder(tmp_path / "imgs", per_class=2)
    files = sorted((tmp_path / "imgs").rglob("*.jpg"))
    model = head_perturbed_model()
    x = batch(files, 48)
    with torch.no_grad():
        want = model(x).softmax(1)
    path, _ = export.save(model, tmp_path / "m.safetensors", P.OFFLINE, ["a", "b", "c"], 48)
    loaded, meta = export.load(path)
    with torch.no_grad():
        assert torch.allclose(loaded(x).softmax(1), want, atol=1e-6)
    got = export.predict(path, files)
    assert [g[1] for g in got] == [meta["vocab"][i] for i in want.argmax(1).tolist()]
    assert np.allclose([g[2] for g in got], want.max(1).values.numpy(), atol=1e-6)
    # a torch.save state dict loads too, through the weights-only unpickler
    torch.save(model.state_dict(), tmp_path / "m.pt")
    # the same m.json serves both
    with torch.no_grad():
        assert torch.allclose(export.load(tmp_path / "m.pt")[0](x).softmax(1), want, atol=1e-6)


class Planted:
    "A pickle that would create a file when unpickled."
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["model.safetensors", "model.pt", "model.pkl"])
def test_a_planted_pickle_is_refused(tmp_path, capsys, name):
    marker = tmp_path / "code_ran"
    target = tmp_path / name
    target.write_bytes(pickle.dumps({"0.weight": Planted(marker)}))
    target.with_suffix(".json").write_text(json.dumps(dict(arch=P.OFFLINE, vocab=["a", "b"], size=32)))
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    assert cli.main(["predict", str(target), str(img)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cnn-exp: error: {target}: ") and err.count("\n") == 1
    assert "loads only weights" in err and not marker.exists()


def test_a_whole_pickled_module_is_refused(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "m.pt")  # what torch.save(model) writes: code to import
    (tmp_path / "m.json").write_text(json.dumps(dict(arch=P.OFFLINE, vocab=["a", "b"], size=32)))
    with pytest.raises(DataError, match=r"refused, not a plain state dict \(UnpicklingError\)"):
        export.load(tmp_path / "m.pt")


@pytest.mark.parametrize("argv,match", [
    (["run", "fine_tune", "--epochs", "2"], "--precision and --channels-last go with --data PATH"),
    (["run", "fine_tune", "--data", "x", "--arch", "vgg"], "--arch: unknown body 'vgg'; choose one of"),
    (["run", "fine_tune", "--data", "no/such/dir"], "--data: no/such/dir is not a folder"),
    (["predict", "no/such.safetensors", "x.jpg"], "no/such.safetensors: no such model file"),
])
def test_folder_cli_errors_are_one_line(argv, match, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


TINY = dict(data="mnist", n_train=20, bs=20, size=32, epochs=2, p=0.5, arch=P.OFFLINE, pretrained=True)


def test_fine_tune_trains_the_body_and_head_only_keeps_it():
    cfg = Config(**TINY, schedule="frozen", lr=1e-2)
    learn = learner(cfg, progress=False)
    before = {k: v.clone() for k, v in learn.model[0].state_dict().items()}
    head = learn.model[1][-1].weight.clone()
    fit(learn, cfg)
    after = learn.model[0].state_dict()
    frozen = [k for k in before if "running_" in k or k.endswith("conv_stem.weight") or "conv_pw" in k]
    assert len(frozen) > 100 and all(torch.equal(before[k], after[k]) for k in frozen)  # convs and BN statistics
    assert not torch.equal(head, learn.model[1][-1].weight)
    cfg = Config(**TINY, schedule="fine_tune", lr=2e-3)
    learn = learner(cfg, progress=False)
    assert fit(learn, cfg) == 2  # 1 frozen + 1 unfrozen
    stem, stats = "model.conv_stem.weight", [k for k in before if "running_" in k]
    assert not torch.equal(before[stem], learn.model[0].state_dict()[stem])
    assert not all(torch.equal(before[k], learn.model[0].state_dict()[k]) for k in stats)  # re-estimated
    cfg = Config(**TINY, schedule="fine_tune_bn_kept", lr=2e-3)
    learn = learner(cfg, progress=False)
    assert fit(learn, cfg) == 2
    assert not torch.equal(before[stem], learn.model[0].state_dict()[stem])  # the body trains ...
    assert all(torch.equal(before[k], learn.model[0].state_dict()[k]) for k in stats)  # ... on ImageNet's statistics


def test_sample_folder_of_real_photos_passes_the_check(tmp_path):
    fold = F.check_folder(F.sample_folder(tmp_path / "photos", per_class=3))
    assert fold.classes == sorted(F.PHOTOS) and len(fold.files) == 12 and not fold.skipped


def test_label_study_runs_end_to_end_and_reports(monkeypatch, tmp_path):
    from cnn_experiments.data import mnist as D
    monkeypatch.setitem(FT.PROFILES, "quick", dict(seeds=1, per_class=(1,), px=32, search=False))
    monkeypatch.setattr(FT, "STEPS", 2)  # 3 epochs of 10 digits a run: the pipeline, not the numbers
    d = D.mnist_embedded()
    few = D.Digits(d.x_train, d.y_train, d.x_valid[::20], d.y_valid[::20], d.name)  # 50 held out, 5 a class
    monkeypatch.setitem(D.DATASETS, "mnist", lambda: few)  # scoring 1,000 digits took most of the test's time
    assert cli.main(["run", "fine_tune", "--results", str(tmp_path), "--jobs", "1"]) == 0
    text = (tmp_path / "fine_tune" / "summary_quick.md").read_text()
    for part in ("command: `cnn-exp run fine_tune --profile quick`", "seeds per cell: 1", "at 32 px",
                 "| fine_tune ", "## The batchnorm fix", "## Verdict", "**C4 is indicative",
                 "quick_accuracy_vs_labels", "Recommended from these numbers: none, from fewer than 5 seeds"):
        assert part in text, part
    runs = tmp_path / "fine_tune" / "runs.csv"
    assert len(pd.read_csv(runs)) == 5
    rows = runs.read_text().splitlines()
    runs.write_text("\n".join(r for r in rows if "fine_tune_bn_kept" not in r) + "\n")  # one method not run yet
    assert cli.main(["report", "fine_tune", "--profile", "quick", "--results", str(tmp_path)]) == 0
    partial = (tmp_path / "fine_tune" / "summary_quick.md").read_text()
    for part in ("## Status: the grid is not complete", "| not run ", "One declared rate per method",
                 "| fine_tune, BN statistics kept - fine_tune, 1 per class | > 0 | paired t | 0 seeds | – [–] |"):
        assert part in partial, part


def test_a_folder_run_enters_fastais_distrib_ctx_only_under_a_launcher(monkeypatch):
    import contextlib

    import fastai.distributed  # noqa: F401  (its Learner.distrib_ctx, replaced below by a recorder)
    from fastai.learner import Learner
    entered = []

    @contextlib.contextmanager
    def recorder(self, **kw):
        entered.append(self)
        yield self
    monkeypatch.setattr(Learner, "distrib_ctx", recorder)
    learn = learner(Config(data="mnist", n_train=64, bs=32))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with T.distributed(learn):
        pass
    assert entered == []
    monkeypatch.setenv("WORLD_SIZE", "2")  # as `accelerate launch --num_processes 2` sets it
    with T.distributed(learn) as ctx:
        assert ctx is learn
    assert entered == [learn]


@pytest.mark.parametrize("outcomes, advice", [
    (["indicative"] * 4, "none, from fewer than 5 seeds"),
    (["supported", "inconclusive", "supported", "contradicted"], "keep the pretrained batchnorm statistics "
                                                                  "(better than fastai's default at 1, 20 labels"),
    (["inconclusive", "contradicted", "inconclusive", "equivalent"], "fastai's default (better at 5 labels"),
    (["inconclusive", "equivalent", "inconclusive", "inconclusive"], "either: neither is shown better")])
def test_the_batchnorm_advice_follows_the_declared_comparisons(outcomes, advice):
    assert FT.batchnorm_advice(pd.DataFrame({"outcome": outcomes}), (1, 5, 20, 50)).startswith(advice)
