"""The machine's kernel-relevant identity: parsed from cpuinfo's text, recorded with each run, named by reports."""
import pandas as pd
import pytest
import torch

from cnn_experiments.reports import report
from cnn_experiments.runs import machine

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 {flags} xsave
vmx flags\t: vnmi preemption_timer
bugs\t\t: sysret_ss_attrs spectre_v1
"""
ARM = """processor\t: 0
BogoMIPS\t: 2000.00
Features\t: fp asimd evtstrm aes {flags} cpuid
CPU implementer\t: 0x41
"""


@pytest.mark.parametrize("text,features,bf16", [
    (X86.format(flags="avx2 fma"), ["avx2"], False),
    (X86.format(flags="avx2 avx512f avx512_bf16"), ["avx2", "avx512f", "avx512_bf16"], True),
    (X86.format(flags="avx2 avx512f amx_tile amx_bf16"), ["avx2", "avx512f", "amx_tile", "amx_bf16"], True),
    (ARM.format(flags="sve"), ["asimd", "sve"], False),
    (ARM.format(flags="sve sve2 bf16 i8mm"), ["asimd", "sve", "sve2", "bf16", "i8mm"], True),
    ("", [], False),
])
def test_the_kernel_features_and_native_bf16_come_from_cpuinfos_text(text, features, bf16):
    assert machine.features_of(text) == features
    assert machine.has_bf16(machine.features_of(text)) is bf16


def test_the_cpu_model_is_cpuinfos_model_name():
    assert machine.field(X86.format(flags=""), "model name") == "AMD EPYC 7B13"
    assert machine.field(ARM.format(flags=""), "model name") == ""


def test_this_machines_identity_is_what_torch_and_cpuinfo_say():
    ident = machine.identity("cpu")
    assert tuple(ident) == machine.MACHINE and ident["gpu"] == ""
    assert ident["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert ident["cpu_features"].split() == machine.features_of(machine.cpuinfo())
    assert ident["cpu"] and machine.native_bf16() is machine.has_bf16(ident["cpu_features"].split())
    if torch.backends.mkldnn.is_available():
        assert f"v{ident['onednn']} " in torch.__config__.show()


def test_onednns_version_is_read_from_torchs_build_config_where_torch_has_no_version_call(monkeypatch):
    monkeypatch.delattr(torch.backends.mkldnn, "version", raising=False)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.__config__, "show", lambda: "  - Intel(R) oneDNN v3.5.3 (Git Hash 66f0cb9)\n")
    machine.onednn_version.cache_clear()
    try:
        assert machine.onednn_version() == "3.5.3"
    finally:
        machine.onednn_version.cache_clear()


def test_a_reports_device_line_names_each_machine_and_the_runs_that_record_none():
    cpu = "cpu (x86_64, 1 thread)"
    epyc = dict(device=cpu, cpu="AMD EPYC 7B13", cpu_features="avx2", cpu_capability="AVX2", onednn="3.5.3", gpu="")
    old = dict(device=cpu, cpu=float("nan"), cpu_features=float("nan"), cpu_capability=float("nan"),
               onednn=float("nan"), gpu=float("nan"))
    assert report.devices(pd.DataFrame([epyc] * 2)) == f"{cpu}, AMD EPYC 7B13, avx2, ATen AVX2, oneDNN 3.5.3"
    assert report.devices(pd.DataFrame([epyc] * 2 + [old])) == (f"{cpu}, AMD EPYC 7B13, avx2, ATen AVX2, oneDNN "
                                                                f"3.5.3 (2 runs); {cpu}, CPU not recorded (1 runs)")
    h100 = {**epyc, "device": "NVIDIA H100 80GB HBM3", "gpu": "sm_90, CUDA 13.0, cuDNN 92400"}
    assert report.devices(pd.DataFrame([h100])) == ("NVIDIA H100 80GB HBM3, sm_90, CUDA 13.0, cuDNN 92400, host AMD "
                                                    "EPYC 7B13, avx2, ATen AVX2, oneDNN 3.5.3")
    assert report.devices(pd.DataFrame([dict(device=cpu)])) == cpu  # a report without runs: this machine's device
