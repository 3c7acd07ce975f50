import pytest
import torch

from animatediff import save_motion_module
from helpers import random_motion_module, save_tiny_base, tiny_config

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def parity_dtype(request, monkeypatch):
    """`--dtype auto` takes bfloat16 on CPUs that run it natively. The tests compare the command line's frames
    with float32 references on whatever CPU runs them, so here auto sees a CPU without native bfloat16; tests
    marked `host_dtype` (the README's commands, the rule's own tests) see the CPU as it is."""
    if "host_dtype" not in request.keywords:
        monkeypatch.setattr("animatediff.planner.fast_bfloat16", lambda: False)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    return save_tiny_base(tmp_path_factory.mktemp("tiny_base"))


@pytest.fixture(scope="session")
def tiny_motion_module_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("motion") / "motion_module.safetensors"
    return save_motion_module(random_motion_module(), path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny base and a random motion module with its GroupNorm pooled over frames, as diffusers computes it:
    the weights the parity tests against diffusers' pipelines share (fresh for each test module)."""
    folder = save_tiny_base(tmp_path_factory.mktemp("base"), seed=3)
    return folder, random_motion_module(tiny_config(norm_over_frames=True), seed=5)
