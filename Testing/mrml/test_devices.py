"""The device menu on this CPU machine and, with torch's CUDA queries stood in for, on a GPU
one; and the bridge modules never import torch when they are imported."""

import subprocess
import sys
import types
from pathlib import Path

import torch

from IMSESlicerLib import devices


def test_the_cpu_menu():
    assert devices.torch_available()
    if not torch.cuda.is_available():
        assert devices.device_choices() == [("Auto (CPU)", "auto"), ("CPU", "cpu")]


def test_the_gpu_menu_names_each_gpu_and_its_memory(monkeypatch):
    gpus = {0: ("NVIDIA H100 80GB HBM3", 79.2), 1: ("NVIDIA A10", 22.5)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties",
        lambda index: types.SimpleNamespace(name=gpus[index][0], total_memory=int(gpus[index][1] * 2**30)),
    )
    assert devices.device_choices() == [
        ("Auto (CUDA: NVIDIA H100 80GB HBM3, 79 GiB)", "auto"),
        ("CUDA 0: NVIDIA H100 80GB HBM3, 79 GiB", "cuda:0"),
        ("CUDA 1: NVIDIA A10, 22 GiB", "cuda:1"),
        ("CPU", "cpu"),
    ]


def test_without_torch_the_menu_still_offers_auto_and_cpu(monkeypatch):
    monkeypatch.setattr(devices, "torch_available", lambda: False)
    assert devices.device_choices() == [("Auto (CPU)", "auto"), ("CPU", "cpu")]


def test_importing_the_bridge_does_not_import_torch():
    bridge = Path(__file__).resolve().parents[2] / "IMSESlicer"
    code = (
        f"import sys; sys.path.insert(0, {str(bridge)!r});"
        "import IMSESlicerLib.devices, IMSESlicerLib.overlays, IMSESlicerLib.sequences, IMSESlicerLib.sample_data, IMSESlicerLib.planar;"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
