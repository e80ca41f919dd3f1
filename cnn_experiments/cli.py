"""`cnn-exp list | run NAME | report NAME`: run an experiment's grid and write its report.

    cnn-exp list
    cnn-exp run pooling --profile quick            # runs the grid into results/pooling/runs.csv, then reports
    cnn-exp run mnist_scratch --profile full --seeds 5
    cnn-exp report pooling                          # rewrites results/pooling/summary.md from runs.csv
    cnn-exp run fine_tune --data bears               # fine-tune a pretrained body on a folder of class sub-folders
    cnn-exp predict results/fine_tune/folder_bears/model.safetensors photo.jpg
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pandas as pd
import torch

from . import report as R
from .sweep import read_runs, run_sweep

EXPERIMENTS = ("pooling", "mnist_scratch", "edge_filter", "activations", "downsampling", "dropout", "fine_tune")
PROFILES = ("quick", "medium", "full")
DEVICES = ("cpu", "cuda")


class UsageError(Exception):
    "A user's mistake: printed as one line, exit code 2."


def experiment(name: str, profile: str | None = None):
    "The experiment module `name`, checked to have `profile`."
    if name not in EXPERIMENTS:
        raise UsageError(f"experiment: unknown name {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    mod = importlib.import_module(f"experiments.{name}")
    if profile is not None and profile not in mod.PROFILES:
        raise UsageError(f"--profile: {name} has no profile {profile!r}; choose one of {', '.join(mod.PROFILES)}")
    return mod


def configs(cells, seeds: int, device: str):
    "Each cell repeated over seeds 0..seeds-1, on `device`."
    return [c.replace(seed=s, device=device) for c in cells for s in range(seeds)]


def search_cells(mod, profile: str) -> list:
    "An experiment's declared search for nuisance parameters (one seed), if it has one."
    return mod.search(profile) if hasattr(mod, "search") else []


def command(name: str, profile: str, seeds: int, default_seeds: int, device: str, jobs: int = 1,
            fuse: int = 1, any_device: bool = False) -> str:
    return " ".join(["cnn-exp run", name, "--profile", profile]
                    + (["--seeds", str(seeds)] if seeds != default_seeds else [])
                    + (["--device", device] if device != "cpu" else [])
                    + (["--jobs", str(jobs)] if jobs > 1 else [])
                    + (["--fuse", str(fuse)] if fuse > 1 else [])
                    + (["--any-device"] if any_device else []))


def do_run(name: str, profile: str, device: str, seeds: int | None, results: Path,
           benchmark: str | None = None, jobs: int = 1, fuse: int = 1, executor: str = "local",
           address: str | None = None, any_device: bool = False) -> Path:
    mod = experiment(name, profile)
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device: cuda asked for but no CUDA GPU is visible; choose cpu")
    if benchmark is not None:
        if not hasattr(mod, "BENCHMARKS"):
            raise UsageError(f"--benchmark: experiment {name!r} has no benchmarks")
        if benchmark not in mod.BENCHMARKS:
            raise UsageError(f"--benchmark: unknown {benchmark!r}; choose one of {', '.join(mod.BENCHMARKS)}")
        return mod.run_benchmark(benchmark, profile, device, seeds, results / name)
    default = mod.PROFILES[profile]["seeds"]
    n = seeds or default
    path = results / name / "runs.csv"
    how = dict(jobs=jobs, fuse=fuse, executor=executor, address=address, any_device=any_device)
    searched = run_sweep(configs(search_cells(mod, profile), 1, device), path, profile, **how) \
        if search_cells(mod, profile) else None
    cfgs = configs(mod.grid(profile, searched), n, device)
    if cfgs:
        run_sweep(cfgs, path, profile, **how)
    return do_report(name, profile, results, command(name, profile, n, default, device, jobs, fuse, any_device))


def do_report(name: str, profile: str | None, results: Path, cmd: str | None = None) -> Path:
    out = results / name
    runs = read_runs(out / "runs.csv")
    if profile is None:  # the profile of the last run written
        profile = str(runs["profile"].iloc[-1]) if len(runs) else "quick"
    mod = experiment(name, profile)
    runs = runs[runs["profile"] == profile]
    cells = {c.cell_id for c in mod.grid(profile, runs) + search_cells(mod, profile)}
    runs = R.one_per_seed(runs[runs["cell_id"].isin(cells)])
    if cells and runs.empty:
        raise UsageError(f"report: no {profile} runs of {name} in {out / 'runs.csv'}; "
                         f"run `cnn-exp run {name} --profile {profile}` first")
    if cmd is None:
        n = int(runs.groupby("cell_id")["seed"].nunique().max()) if len(runs) else 0
        on_cpu = runs.get("device", pd.Series(dtype=str)).astype(str).str.startswith("cpu")  # kept by name
        seeds = (name, profile, n or mod.PROFILES[profile]["seeds"], mod.PROFILES[profile]["seeds"])
        cmd = command(*seeds, "cpu" if on_cpu.all() else "cuda")
        if on_cpu.any() and not on_cpu.all():  # a grid started on a GPU and finished on a CPU
            cmd += "; " + command(*seeds, "cpu", any_device=True)
    body, finding = mod.report(runs, out, profile)
    text = R.header(mod.TITLE, mod.CLAIM, runs, cmd, profile) + f"{R.FINDING} {finding}\n\n{body}\n"
    # summary.md is the latest report; summary_<profile>.md keeps each profile's beside it
    (out / f"summary_{profile}.md").write_text(text)
    (out / "summary.md").write_text(text)
    R.write_index(results)
    print(f"wrote {out / 'summary.md'} and {out / f'summary_{profile}.md'}\n{R.FINDING} {finding}")
    return out / "summary.md"


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="cnn-exp", description="The claims of a lesson on CNNs, measured.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    sub.add_parser("list", help="the experiments and the claims they test")
    r = sub.add_parser("run", help="run an experiment's grid (resuming), then write its report")
    r.add_argument("name", help=f"one of {', '.join(EXPERIMENTS)}")
    r.add_argument("--profile", default="quick", choices=PROFILES,
                   help="quick: minutes on a CPU; medium: under an hour on a CPU; full: the study (a GPU's work)")
    r.add_argument("--device", default="cpu", choices=DEVICES, help="where to train")
    r.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the profile's)")
    r.add_argument("--jobs", type=int, default=1,
                   help="runs at once, each in its own process with the CPU threads split between them")
    r.add_argument("--fuse", type=int, default=1,
                   help="train up to this many seeds of a cell as one fused model (simple_cnn, pooled_cnn)")
    r.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local: this machine (--jobs processes); ray: tasks on a Ray cluster (pip install ray)")
    r.add_argument("--address", default=None, help="ray: the cluster's address (default: start a local one)")
    r.add_argument("--any-device", action="store_true",
                   help="count a run of the same cell and seed made on another device as done "
                        "(finish here a grid started on another machine)")
    r.add_argument("--benchmark", default=None, help="pooling: cluttered60 or cluttered100 (RAM paper, Table 2)")
    r.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    # the image-folder workflow (fastbook's bear classifier): fine_tune only
    r.add_argument("--data", type=Path, default=None, help="fine_tune: a folder of class sub-folders to train on")
    r.add_argument("--arch", default=None, help="with --data: efficientnet_lite0 (offline, default), resnet18/34")
    r.add_argument("--size", type=int, default=None, help="with --data: input side in px (default 224)")
    r.add_argument("--epochs", type=int, default=None, help="with --data: fine_tune(epochs) (default 4)")
    s = sub.add_parser("report", help="rewrite an experiment's summary.md from its runs.csv")
    s.add_argument("name", help=f"one of {', '.join(EXPERIMENTS)}")
    s.add_argument("--profile", default=None, choices=PROFILES, help="default: the profile of the last run")
    s.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    pr = sub.add_parser("predict", help="class and probability per image, from a model `run --data` saved")
    pr.add_argument("model", type=Path, help="model.safetensors (with its .json beside it)")
    pr.add_argument("images", type=Path, nargs="+", help="image files")
    return p


def do_folder(a) -> Path:
    "`run fine_tune --data PATH`: the folder workflow, its options checked first."
    from .pretrained import BODIES, OFFLINE
    if a.name != "fine_tune":
        raise UsageError(f"--data: only fine_tune trains on an image folder, not {a.name}")
    arch, size, epochs = a.arch or OFFLINE, a.size or 224, a.epochs or 4
    if arch not in BODIES:
        raise UsageError(f"--arch: unknown body {arch!r}; choose one of {', '.join(BODIES)}")
    if size < 32 or epochs < 1:
        raise UsageError(f"--size must be at least 32 px and --epochs at least 1, got {size} and {epochs}")
    if a.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device: cuda asked for but no CUDA GPU is visible; choose cpu")
    mod = experiment("fine_tune")
    return mod.run_folder(a.data, arch, epochs, size, a.seeds or 1, a.results, a.device)


def main(argv: list[str] | None = None) -> int:
    try:
        a = parser().parse_args(argv)
        if a.cmd == "list":
            for name in EXPERIMENTS:
                print(f"{name:14} {experiment(name).CLAIM}")
        elif a.cmd == "run":
            if a.seeds is not None and a.seeds < 1:
                raise UsageError(f"--seeds: must be at least 1, got {a.seeds}")
            for flag in ("jobs", "fuse"):
                if getattr(a, flag) < 1:
                    raise UsageError(f"--{flag}: must be at least 1, got {getattr(a, flag)}")
            if a.data is not None:
                do_folder(a)
            elif any(v is not None for v in (a.arch, a.size, a.epochs)):
                raise UsageError("--arch, --size and --epochs go with --data PATH (the image-folder workflow)")
            else:
                do_run(a.name, a.profile, a.device, a.seeds, a.results, a.benchmark, a.jobs, a.fuse, a.executor,
                       a.address, a.any_device)
        elif a.cmd == "predict":
            from .export import predict
            for f, label, prob in predict(a.model, a.images):
                print(f"{f}\t{label}\t{prob:.4f}")
        else:
            do_report(a.name, a.profile, a.results)
    except (UsageError, ValueError) as e:
        print(f"cnn-exp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnn-exp: interrupted; finished runs are saved, run the same command again to resume",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
