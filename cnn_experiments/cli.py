"""`cnn-exp list | run | report | power | predict | reproduce | check`: the command line, parsing and dispatch.

    cnn-exp list
    cnn-exp run pooling --profile medium           # runs the grid into results/pooling/runs.csv (resumes), reports
    cnn-exp report pooling --profile medium        # rewrites results/pooling/summary_medium.md from its runs
    cnn-exp run pooling --data bears               # which pooling head for a folder of class sub-folders
    cnn-exp run fine_tune --data bears             # fine-tune a pretrained body on it, beside random init
    cnn-exp predict results/fine_tune/folder_bears/model.safetensors photo.jpg
    cnn-exp reproduce                              # the quick pooling study afresh, compared with the committed one
    cnn-exp check                                  # every committed summary regenerates; benchmarks are current
    cnn-exp power --write docs/statistics.md       # each committed family's simulated false-verdict rate and power
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import UserError
from .options import DEVICES, Parser, at_least, positive_int
from .runs.config import AUGS
from .studies.registry import NAMES, get

# the study pipeline, and torch and fastai with it, is imported by the commands that run or report


def parser() -> Parser:
    p = Parser(prog="cnn-exp", description="The claims of a lesson on CNNs, measured.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    sub.add_parser("list", help="the experiments and the claims they test")
    r = sub.add_parser("run", help="run an experiment's grid (resuming), then write its report")
    r.add_argument("name", help=f"one of {', '.join(NAMES)}")
    r.add_argument("--profile", default=None,
                   help="quick: minutes on a CPU; medium: hours on a CPU; full: the study as designed (a GPU's work); "
                        "confirm: the confirmatory study of a pilot, declared before its runs; an experiment may "
                        "declare more (`cnn-exp list`; default quick)")
    r.add_argument("--device", default="cpu", choices=DEVICES, help="where to train")
    r.add_argument("--seeds", type=positive_int, default=None, help="seeds per cell (default: the profile's)")
    r.add_argument("--jobs", type=positive_int, default=None,
                   help="runs at once, each in its own process (default: one per CPU core on the CPU, 1 on a GPU)")
    r.add_argument("--fuse", type=positive_int, default=1,
                   help="train up to this many runs of one body and data (seeds, heads, rates) as one fused model")
    r.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local: this machine (--jobs processes); ray: tasks on a Ray cluster (pip install ray)")
    r.add_argument("--address", default=None, help="ray: the cluster's address (default: start a local one)")
    r.add_argument("--results", type=Path, default=None,
                   help="results folder (default results; with --data, folder_results)")
    # one's own images: pooling compares its heads on the folder, fine_tune fine-tunes beside random init
    r.add_argument("--data", type=Path, default=None, help="pooling, fine_tune: a folder of class sub-folders")
    r.add_argument("--arch", default=None, help="with --data: efficientnet_lite0 (offline, default), resnet18/34")
    r.add_argument("--size", type=at_least(32), default=None, help="with --data: input side in px (default 224)")
    r.add_argument("--epochs", type=positive_int, default=None, help="with --data: fine_tune(epochs) (default 4)")
    r.add_argument("--heads", default=None, help="pooling --data: the heads to compare (default avg,max,concat)")
    r.add_argument("--precision", default=None, choices=("fp32", "bf16"),
                   help="with --data: bf16 autocasts training's forward pass (faster on CPUs with AVX-512 BF16 and on "
                        "GPUs; weights and scoring stay fp32); default fp32. A profile declares its own")
    r.add_argument("--channels-last", action="store_true", help="with --data: NHWC weights (faster convolutions)")
    r.add_argument("--aug", default=None, choices=AUGS,
                   help="pooling --data: fastbook (random crops, flips, warps: photos, the default) or none (the whole "
                        "image as it is: objects a crop would lose, images a flip changes)")
    s = sub.add_parser("report", help="rewrite an experiment's summary from its runs file (trains nothing)")
    s.add_argument("name", help=f"one of {', '.join(NAMES)}")
    s.add_argument("--profile", default=None, help="default: the profile of the last run")
    s.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    pr = sub.add_parser("predict", help="class and probability per image, from a model `run --data` saved")
    pr.add_argument("model", type=Path, help="model.safetensors (with its .json beside it)")
    pr.add_argument("images", type=Path, nargs="+", help="image files")
    rp = sub.add_parser("reproduce", help="run the quick pooling study afresh and compare it with the committed one")
    rp.add_argument("--results", type=Path, default=Path("results"), help="the committed results folder")
    rp.add_argument("--into", type=Path, default=Path(".reproduce"), help="where the fresh run goes (git-ignored)")
    pw = sub.add_parser("power", help="each committed family's simulated false-verdict rate and power")
    pw.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    pw.add_argument("--write", type=Path, default=None, help="also write the table into this file's power block")
    pw.add_argument("--simulations", type=positive_int, default=1000, help="families drawn per scenario")
    ck = sub.add_parser("check", help="every committed summary regenerates unchanged; every benchmark is current")
    ck.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    ck.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1,
                    help="summaries rewritten at once, each in its own process (default: one per CPU core)")
    return p


def run_data(a) -> None:
    "`run pooling|fine_tune --data FOLDER`: the options a folder run takes, and a one-line error for the others."
    for given, option in ((a.profile, "--profile"), (a.fuse > 1, "--fuse"), (a.executor != "local", "--executor")):
        if given:
            raise UserError(f"{option}: does not apply to a folder run (--data); its options are --heads, --seeds, "
                            "--size, --epochs, --arch, --aug, --precision, --channels-last, --jobs, --device, "
                            "--results")
    # only what the user gave: the defaults are run_heads' and run_folder's own
    given = {k: v for k, v in dict(seeds=a.seeds, arch=a.arch, size=a.size, epochs=a.epochs, results=a.results,
                                   precision=a.precision).items() if v is not None}
    if a.precision == "bf16" and a.device == "cpu":
        from .runs.machine import native_bf16
        if not native_bf16():  # emulated bf16 runs 4-5x slower than fp32 there
            raise UserError("--precision: bf16 needs a CPU with native bf16 (AVX512_BF16 or AMX, or ARM's BF16); "
                            "this one has none, so choose fp32 (--channels-last speeds fp32 on every CPU)")
    if a.name == "pooling":
        from .own_images.heads import check_heads, run_heads
        if a.heads:
            given["heads"] = check_heads(a.heads)
        if a.aug:
            given["aug"] = a.aug
        run_heads(a.data, device=a.device, jobs=a.jobs, channels_last=a.channels_last, **given)
    elif a.name == "fine_tune":
        if a.heads or a.aug:
            raise UserError(f"{'--heads' if a.heads else '--aug'}: goes with `run pooling --data`; fine_tune "
                            "compares pretraining, not heads, on fastbook's pipeline")
        from .own_images.fine_tune import run_folder
        run_folder(a.data, device=a.device, channels_last=a.channels_last, **given)
    else:
        raise UserError(f"--data: pooling and fine_tune train on an image folder, not {a.name}")


def main(argv: list[str] | None = None) -> int:
    try:
        a = parser().parse_args(argv)
        if a.cmd == "list":
            for name in NAMES:
                print(f"{name:14} {get(name).claim}")
        elif a.cmd == "run":
            if a.data is not None:
                run_data(a)
            elif any(v is not None for v in (a.arch, a.size, a.epochs, a.heads, a.aug, a.precision)) or a.channels_last:
                raise UserError("--arch, --size, --epochs, --heads, --aug, --precision and --channels-last go with "
                                "--data PATH (one's own images); a profile declares its own precision and layout")
            else:
                from .studies.study import do_run
                do_run(a.name, a.profile or "quick", a.device, a.seeds, a.results or Path("results"), a.jobs, a.fuse,
                       a.executor, a.address)
        elif a.cmd == "report":
            from .studies.study import do_report
            do_report(a.name, a.profile, a.results)
        elif a.cmd == "predict":
            from .own_images.export import predict
            for f, label, prob in predict(a.model, a.images):
                print(f"{f}\t{label}\t{prob:.4f}")
        elif a.cmd == "power":
            from .studies.power import power
            print(power(a.results, a.write, a.simulations))
        elif a.cmd == "reproduce":
            from .studies.reproduction import reproduce
            print(reproduce(a.results, a.into))
        else:
            from .studies.checks import check
            problems = check(a.results, a.jobs)
            for line in problems:
                print(line)
            return 1 if problems else 0
    except UserError as e:
        print(f"cnn-exp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnn-exp: interrupted; finished runs are saved, run the same command again to resume",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
