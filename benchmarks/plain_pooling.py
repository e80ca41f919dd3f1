"""The pooling finding outside fastai: the confirmatory study's threshold runs trained again by a plain PyTorch loop.

    python benchmarks/plain_pooling.py                   # avg and max at 12-14 px, the confirm study's 10 seeds
    python benchmarks/plain_pooling.py --sizes 12 13 14 15 16 --heads avg max concat

The engine must not be the cause of the finding that avg learns small objects where max fails to train. Each run
takes the committed confirm run's config (scenes of its seed, head, object size and searched rate), builds the same
model and trains it with a loop written out in PyTorch: AdamW with fastai's defaults (betas 0.9/0.99, eps 1e-5,
decoupled weight decay 0.01) under torch's OneCycleLR set to fastai's `fit_one_cycle` (a quarter warm-up, cosine
annealing, lr/25 to lr to lr/1e5, momentum 0.95 to 0.85 and back), the same batches in number and size. The report
sets each head's share of seeds that learn (held-out accuracy above the study's 0.6) beside the committed fastai
runs', tests max - avg in the plain loop with the study's own declared test (the seed-level exact sign-flip over
sizes), and counts the runs where the two engines agree.
"""
from __future__ import annotations

import multiprocessing
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments.errors import UserError
from cnn_experiments.reports import benchmark as B
from cnn_experiments.runs.config import from_row
from cnn_experiments.statistics import stats
from cnn_experiments.studies.study import load
from cnn_experiments.training.train import build_model, device_name, pinned_threads, tensors
from experiments import pooling

PROFILE = "confirm"
MEASURES = ("cnn_experiments/models/cnns.py", "cnn_experiments/models/pooling.py",
            "cnn_experiments/data/scenes.py")


def one_cycle(opt, lr: float, total: int):
    "torch's OneCycleLR as fastai's fit_one_cycle: lr/25 -> lr over a quarter (cosine) -> lr/1e5; momentum 0.95-0.85."
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.25, anneal_strategy="cos",
                                               div_factor=25.0, final_div_factor=1e5 / 25.0, base_momentum=0.85,
                                               max_momentum=0.95)


def plain_run(cfg) -> float:
    "Held-out accuracy of `cfg`'s model trained by a plain loop set to fastai's fit_one_cycle."
    with pinned_threads("cpu"):
        torch.manual_seed(cfg.seed)
        t = tensors(cfg)
        model = build_model(cfg, t.n_out)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), eps=1e-5, weight_decay=cfg.wd)
        steps = len(t.x_train) // cfg.bs  # fastai's training loader drops the last partial batch
        sched = one_cycle(opt, cfg.lr, cfg.epochs * steps)
        gen = torch.Generator().manual_seed(cfg.seed)
        model.train()
        for _ in range(cfg.epochs):
            order = torch.randperm(len(t.x_train), generator=gen)
            for i in range(steps):
                idx = order[i * cfg.bs:(i + 1) * cfg.bs]
                loss = F.cross_entropy(model(t.x_train[idx]), t.y_train[idx])
                loss.backward()
                opt.step()
                opt.zero_grad()
                sched.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(t.x_valid[i:i + 512]).argmax(1) for i in range(0, len(t.x_valid), 512)])
        return float((pred == t.y_valid).float().mean())


def timed(item):
    key, cfg = item
    started = time.monotonic()
    return key, plain_run(cfg), time.monotonic() - started


def parser() -> B.Parser:
    p = B.Parser(prog="plain_pooling.py", description="the pooling finding trained again by a plain PyTorch loop")
    p.add_argument("--sizes", type=B.positive_int, nargs="+", default=[12, 13, 14], help="object sides, px")
    p.add_argument("--heads", nargs="+", default=["avg", "max"], help="pooling heads (the confirm study's)")
    p.add_argument("--seeds", type=B.positive_int, default=10, help="the confirm study's first seeds")
    p.add_argument("--jobs", type=B.positive_int, default=2, help="runs at once, one thread each")
    p.add_argument("--results", type=Path, default=Path("results"), help="the committed results folder")
    B.output_options(p)
    return p


def main(a) -> None:
    labelled = load("pooling", PROFILE, a.results).labelled
    thr = labelled[(labelled["arm"] == "threshold") & labelled["obj_size"].isin(a.sizes)
                   & labelled["pool"].isin(a.heads)]
    thr = thr[thr["seed"] < thr["seed"].min() + a.seeds] if len(thr) else thr
    missing = sorted(set(a.heads) - set(thr["pool"])) or sorted(set(a.sizes) - set(thr["obj_size"].astype(int)))
    if thr.empty or missing:
        raise UserError(f"--sizes/--heads: the committed {PROFILE} runs have none at {missing or 'these settings'}; "
                        f"sizes {sorted(labelled.loc[labelled['arm'] == 'threshold', 'obj_size'].unique())}, heads "
                        f"{sorted(labelled.loc[labelled['arm'] == 'threshold', 'pool'].unique())}")
    work = [((r["pool"], int(r["obj_size"]), int(r["seed"])), from_row(r)) for _, r in thr.iterrows()]
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(a.jobs) as pool:
        done = []
        for i, (key, acc, took) in enumerate(pool.imap_unordered(timed, work), 1):
            done.append((*key, acc))
            print(f"{i}/{len(work)} {key[0]} {key[1]} px seed {key[2]}: accuracy {acc:.3f} ({took:.0f} s)", flush=True)
    wall = time.monotonic() - started
    plain = pd.DataFrame(done, columns=["pool", "obj_size", "seed", "accuracy"]).assign(arm="threshold")
    plain["learned"] = plain["accuracy"] > pooling.LEARNED
    both = thr[["pool", "obj_size", "seed", "learned"]].merge(plain, on=["pool", "obj_size", "seed"],
                                                             suffixes=("_fastai", "_plain"))
    comparisons = [stats.Comparison(f"plain loop: {h} - avg, share of seeds that learn, "
                                    f"{min(a.sizes)}-{max(a.sizes)} px", dict(pool=h), dict(pool="avg"),
                                    test="share", learned=pooling.LEARNED, margin=0.1, strata=("obj_size",))
                   for h in a.heads if h != "avg"]
    table = stats.compare(plain, comparisons) if comparisons else None
    shares = both.groupby(["pool", "obj_size"]).agg(fastai=("learned_fastai", "mean"), plain=("learned_plain", "mean"),
                                                    runs=("seed", "size"))
    agree = int((both["learned_fastai"] == both["learned_plain"]).sum())
    cell = 16  # px per cell of the confirm study's 7x7 map
    word = {"supported": "max learns at smaller objects than avg", "contradicted": "avg learns where max fails",
            "inconclusive": "no difference between the heads resolved", "indicative": "too few seeds to say"}
    found = (word.get(table["outcome"].iloc[0], table["outcome"].iloc[0]) if table is not None else "one head only")
    text = "\n".join([
        "# Benchmark: the pooling finding trained by a plain PyTorch loop", "",
        f"**Result:** a plain PyTorch loop on the confirm study's scenes, heads and rates gives: {found} "
        f"(objects of {min(a.sizes)}-{max(a.sizes)} px, {min(a.sizes) / cell:.2f}-{max(a.sizes) / cell:.2f} cells); "
        f"it agrees with the fastai runs on whether a run learned in {agree} of {len(both)} runs.", "",
        *B.benchmark_provenance("python benchmarks/plain_pooling.py --sizes " + " ".join(map(str, a.sizes))
                              + " --heads " + " ".join(a.heads) + f" --seeds {a.seeds}", MEASURES),
        f"- work: {len(work)} runs, each the committed {PROFILE} run's config (its scenes, head, size, rate and "
        f"seed) trained by the loop in this file; {wall / 60:.1f} min of wall time with {a.jobs} at once on "
        f"{device_name('cpu')}", "",
        "## Share of seeds that learn (held-out accuracy above 0.6), by engine", "",
        shares.round(2).to_markdown(), "",
        "## The study's declared test, on the plain loop's runs", "",
        stats.markdown(table) if table is not None else "One head: nothing to compare.", ""])
    B.write_benchmark(text, B.benchmark_file("plain_pooling_cpu", a))


if __name__ == "__main__":
    sys.exit(B.script(parser(), main))
