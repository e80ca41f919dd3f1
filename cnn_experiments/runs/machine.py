"""The machine's kernel-relevant identity, recorded with each run: why two machines' runs of one config differ.

    from cnn_experiments.runs.machine import identity; identity("cpu")

ATen and oneDNN pick their CPU kernels per instruction set, and kernels that vectorise differently round float
sums differently: a run's CPU model, the features that change those kernels, the capability ATen chose, oneDNN's
version and, for CUDA, the GPU's compute capability with the CUDA and cuDNN versions, say where its numbers came
from. What /proc/cpuinfo lists is parsed by pure functions of its text.
"""
from __future__ import annotations

import functools
import platform
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

MACHINE = ("cpu", "cpu_features", "cpu_capability", "onednn", "gpu")  # the columns `identity` fills
# the instruction-set features whose presence changes ATen's or oneDNN's kernels, in the order they are recorded
KERNEL_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16",  # x86: cpuinfo's flags
                   "neon", "asimd", "sve", "sve2", "bf16", "i8mm")  # ARM: cpuinfo's Features
BF16 = ("avx512_bf16", "amx_bf16", "bf16")  # any of them: the CPU computes bf16 natively
CPUINFO = Path("/proc/cpuinfo")


def field(text: str, key: str) -> str:
    "The value of the first `key : value` line of cpuinfo-like text (the key in any case); '' where there is none."
    m = re.search(rf"^{re.escape(key)}\s*:[ \t]*(.*)$", text, re.M | re.I)
    return m.group(1).strip() if m else ""


def features_of(cpuinfo: str) -> list[str]:
    "The kernel-relevant features cpuinfo's text lists (x86 flags or ARM Features), in KERNEL_FEATURES order."
    listed = set((field(cpuinfo, "flags") or field(cpuinfo, "Features")).split())
    return [f for f in KERNEL_FEATURES if f in listed]


def has_bf16(features: Iterable[str]) -> bool:
    "Whether these features include native bf16 arithmetic (x86 avx512_bf16 or amx_bf16, ARM bf16)."
    return any(f in BF16 for f in features)


def _output(*command: str) -> str:
    "A command's output; '' where it is missing or fails."
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.cache
def cpuinfo() -> str:
    "/proc/cpuinfo's text; '' off Linux."
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


@functools.cache
def cpu_model() -> str:
    "The CPU's model name."
    if sys.platform == "darwin":
        name = _output("sysctl", "-n", "machdep.cpu.brand_string")
    else:  # ARM's cpuinfo has no model name; lscpu names its core (Neoverse-V2, ...)
        name = field(cpuinfo(), "model name") or field(_output("lscpu"), "Model name")
    return name or platform.processor() or platform.machine()


@functools.cache
def cpu_features() -> tuple[str, ...]:
    "This CPU's kernel-relevant features (none known off Linux)."
    return tuple(features_of(cpuinfo()))


@functools.cache
def native_bf16() -> bool:
    "True only where this CPU computes bf16 natively (x86 avx512_bf16 or amx_bf16, ARM bf16)."
    return has_bf16(cpu_features())


@functools.cache
def onednn_version() -> str:
    "The version of the oneDNN that torch was built with; '' where it has none."
    import torch
    if not torch.backends.mkldnn.is_available():
        return ""
    version = getattr(torch.backends.mkldnn, "version", None)
    if version is not None:
        return str(version())
    m = re.search(r"(?:oneDNN|MKL-DNN) v(\S+)", torch.__config__.show())  # named MKL-DNN in some builds
    return m.group(1) if m else ""


@functools.cache
def gpu() -> str:
    "The current CUDA GPU's compute capability and the CUDA and cuDNN versions that pick its kernels."
    import torch
    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"


def identity(device: str = "cpu") -> dict[str, str]:
    """The MACHINE columns of a run on `device` (cpu or cuda): the CPU's always, since it prepares every run's
    data; the GPU's for CUDA (the run's `device` column names the GPU)."""
    import torch
    return dict(cpu=cpu_model(), cpu_features=" ".join(cpu_features()),
                cpu_capability=torch.backends.cpu.get_cpu_capability(), onednn=onednn_version(),
                gpu=gpu() if device == "cuda" else "")
