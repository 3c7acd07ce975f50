"""Which device and dtype a run takes: CUDA, then an Apple GPU (MPS), then the CPU.

Only CUDA and the CPU run here; MPS is tested through torch's availability checks, monkeypatched.
"""

import pytest
import torch

from animatediff import ConfigError
from animatediff.app.requests import Limits
from animatediff.cli import main
from animatediff.planner import device_and_dtype, plan_run
from animatediff.request import Request


@pytest.fixture
def machine(monkeypatch):
    """Set which GPUs torch reports: `machine(cuda=…, mps=…)`."""

    def report(cuda: bool, mps: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return report


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [
        (True, True, ("cuda", "float16", "auto: float16 on CUDA")),
        (False, True, ("mps", "float16", "auto: float16 on MPS (an Apple GPU)")),
        (False, False, ("cpu", "float32", "auto: float32 on a CPU without native bfloat16")),
    ],
)
def test_auto_takes_cuda_then_mps_then_the_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert device_and_dtype(None, None) == expected


def test_mps_named_runs_in_float16(machine):
    machine(cuda=True, mps=True)
    assert device_and_dtype("mps", "auto") == ("mps", "float16", "auto: float16 on MPS (an Apple GPU)")


def test_a_dtype_given_on_mps_is_kept(machine):
    machine(cuda=False, mps=True)
    assert device_and_dtype("mps", "float32") == ("mps", "float32", "--dtype")


def test_mps_where_it_is_not_available_is_refused_in_one_sentence(machine):
    machine(cuda=False, mps=False)
    with pytest.raises(ConfigError) as error:
        device_and_dtype("mps", None)
    assert str(error.value) == "--device mps: MPS (an Apple GPU) is not available on this machine; use --device cpu."


def test_mps_where_it_is_not_available_exits_2(machine, tmp_path, capsys):
    machine(cuda=False, mps=False)
    assert main(["generate", "a cat", "--device", "mps", "-o", str(tmp_path / "o.gif")]) == 2
    error = capsys.readouterr().err
    assert "MPS (an Apple GPU) is not available on this machine" in error and "Traceback" not in error
    assert not (tmp_path / "o.gif").exists()


def test_a_run_planned_on_mps_records_it(machine, tmp_path, tiny_base, tiny_motion_module_file):
    machine(cuda=False, mps=True)
    request = Request(prompt="a cat", base=str(tiny_base), motion_module=str(tiny_motion_module_file), frames=2)
    (run,) = plan_run(request, output_dir=tmp_path)
    sidecar = run.sidecar()
    assert (sidecar["device"], sidecar["dtype"]) == ("mps", "float16")
    assert sidecar["dtype_chosen_by"] == "auto: float16 on MPS (an Apple GPU)"


def test_unknown_device_names_the_choices():
    with pytest.raises(ConfigError, match="not a device name such as cpu, cuda, cuda:0 or mps"):
        device_and_dtype("tpu", None)


@pytest.mark.parametrize(
    ("device", "frames", "size"), [("cuda:1", 128, 1024), ("mps", 64, 768), ("mps:0", 64, 768), ("cpu", 32, 256)]
)
def test_app_limits_treat_mps_as_a_smaller_gpu(device, frames, size):
    limits = Limits.for_device(device)
    assert (limits.frames, limits.size, limits.steps) == (frames, size, 100 if device != "cpu" else 50)
