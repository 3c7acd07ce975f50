import os
import pickle

import pytest
import torch

from animatediff import CheckpointError, load_motion_module, read_state_dict, save_motion_module
from animatediff.embedded import MODELS
from animatediff.formats import Kind, infer_motion_module_config, kind_of
from helpers import GOLDEN, random_motion_module, tiny_config


def assert_same_weights(a, b):
    assert a.state_dict().keys() == b.state_dict().keys()
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_saved_motion_module_loads_bit_exact_with_its_config(tmp_path):
    module = random_motion_module(tiny_config(norm_over_frames=True, num_attention_heads=4))
    loaded = load_motion_module(save_motion_module(module, tmp_path / "mm.safetensors"))
    assert loaded.config == module.config
    assert_same_weights(module, loaded)


def test_official_ckpt_nested_under_state_dict_with_a_config_entry(tmp_path):
    module = random_motion_module(tiny_config(mid_block=False))
    path = tmp_path / "official.ckpt"
    torch.save({"state_dict": module.state_dict(), "animatediff_config": {"note": "not a tensor"}}, path)
    loaded = load_motion_module(path)
    assert not loaded.config.mid_block and loaded.config.max_frames == 32
    assert_same_weights(module, loaded)


def test_version_is_inferred_from_the_weights():
    v1 = infer_motion_module_config(random_motion_module(tiny_config(mid_block=False, max_frames=24)).state_dict())
    assert (v1.mid_block, v1.max_frames, v1.image_norm_over_frames) == (False, 24, True)
    v2 = infer_motion_module_config(read_state_dict(GOLDEN / "mm_tiny_v2.ckpt"))
    assert (v2.mid_block, v2.max_frames, v2.image_norm_over_frames) == (True, 32, False)
    assert v2.block_out_channels == (32, 32, 32, 64) and v2.layers_per_block == 2
    overridden = infer_motion_module_config(read_state_dict(GOLDEN / "mm_tiny_v2.ckpt"), norm_over_frames=True)
    assert overridden.norm_over_frames


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("write", [torch.save, lambda obj, path: path.write_bytes(pickle.dumps(obj))])
def test_pickle_that_runs_code_is_refused(tmp_path, write):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ckpt"
    write({"down_blocks.0.motion_modules.0.x": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="evil.ckpt: refused to load.*run code"):
        load_motion_module(path)
    assert not marker.exists()


def test_truncated_file_is_named_in_the_error(tmp_path):
    data = (GOLDEN / "mm_tiny_v2.ckpt").read_bytes()
    for name in ("cut.ckpt", "cut.safetensors"):
        path = tmp_path / name
        if name.endswith(".safetensors"):
            save_motion_module(random_motion_module(), path)
            data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match=f"{name}: not a readable"):
            load_motion_module(path)


def test_file_without_motion_module_keys_is_refused(tmp_path):
    path = tmp_path / "lora.ckpt"
    torch.save({"lora_unet_down_blocks_0_attentions_0.lora_down.weight": torch.zeros(4, 32)}, path)
    with pytest.raises(
        CheckpointError, match=r"lora.ckpt: this file is an image LoRA \(kohya layout\), not a motion module"
    ):
        load_motion_module(path)


def test_corrupt_position_table_is_refused(tmp_path):
    state = read_state_dict(GOLDEN / "mm_tiny_v2.ckpt")
    key = next(k for k in state if k.endswith("pos_encoder.pe"))
    state[key] = torch.randn_like(state[key])
    path = tmp_path / "bad_pe.ckpt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="position table"):
        load_motion_module(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.ckpt: no such file"):
        read_state_dict(tmp_path / "nothing.ckpt")


def test_kind_of_tells_a_file_or_folder_from_its_header_or_config(tmp_path):
    sparsectrl = read_state_dict(MODELS["shapes-sparsectrl"].path)
    torch.save({"controlnet": sparsectrl}, tmp_path / "sparsectrl.ckpt")  # nested as the official release's
    assert kind_of(tmp_path / "sparsectrl.ckpt") == Kind.SPARSECTRL
    assert kind_of(MODELS["shapes-motion"].path) == Kind.MOTION_MODULE
    assert kind_of(MODELS["shapes-edges"].path) == Kind.CONTROLNET
    assert kind_of(GOLDEN / "base_model") == Kind.IMAGE_MODEL
