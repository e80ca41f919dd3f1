"""What every benchmark script shares: options parsed as the CLI's are, where its report goes, the report's
provenance (command, date, versions, code revision, CPU, the code it measures), and writing it.

    from cnn_experiments.reports.benchmark import Parser, script, output_options, benchmark_file, write_benchmark
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UserError
from ..options import DEVICES, Parser, positive_int
from ..runs.files import write_atomic
from .publish import write_index

__all__ = ["DEVICES", "MEASURES", "Parser", "benchmark_file", "benchmark_provenance", "output_options",
           "positive_int", "script", "write_benchmark"]


def script(parser: Parser, body, argv: list[str] | None = None) -> int:
    "A benchmark's entry point: its options parsed as the CLI's are; a user's mistake is one line and exit 2."
    try:
        body(parser.parse_args(argv))
    except UserError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


BENCHMARKS = Path("benchmark_results")  # a benchmark's report by default: git-ignored, so a run leaves git clean
PUBLISHED = Path("results/benchmarks")  # --publish: the committed report, and docs/benchmarks.md refreshed


def output_options(parser) -> None:
    "A benchmark's --out and --publish (where its report goes: benchmark_file)."
    parser.add_argument("--out", default="", help=f"markdown file for the report (default {BENCHMARKS}/NAME.md)")
    parser.add_argument("--publish", action="store_true",
                        help=f"replace the committed report in {PUBLISHED}/ and refresh docs/benchmarks.md")


def benchmark_file(name: str, args) -> Path:
    "Where a benchmark writes `name`.md: --out as given, else the committed folder with --publish, else BENCHMARKS."
    return Path(args.out) if args.out else (PUBLISHED if args.publish else BENCHMARKS) / f"{name}.md"


MEASURES = "- measures:"  # a benchmark report's line naming the code it measures (checks.stale_benchmarks)


def benchmark_provenance(command: str, measures: tuple[str, ...]) -> list[str]:
    "A benchmark report's command, where it ran (date, library versions, code revision) and the code it measures."
    from ..runs.machine import identity
    from ..runs.store import provenance
    prov, cpu = provenance(), identity("cpu")
    return [f"- command: `{command}`",
            f"- date: {prov['date']}; torch {prov['torch']}, fastai {prov['fastai']}; code {prov['git_rev']}",
            f"- CPU: {cpu['cpu']}; kernel features {cpu['cpu_features'] or 'none listed'}; ATen "
            f"{cpu['cpu_capability']}, oneDNN {cpu['onednn'] or 'absent'}",
            f"{MEASURES} {', '.join(measures)}"]


def write_benchmark(text: str, out: Path) -> None:
    "Print a benchmark's markdown and save it; one under results/benchmarks also refreshes the index and README."
    print(text)
    write_atomic(out, text)
    if out.parent.name == "benchmarks":
        write_index(out.parent.parent)


