"""Makes `encoder.safetensors`: AnimateLCM-I2V's image encoder as its release computes it, on tiny weights.

Run with the release's own `animatelcm_sd15/animatelcm/models/adapter.py` (github G-U-N/AnimateLCM, commit
f873122) on the path: `python make_reference.py PATH/TO/adapter.py`. It builds the release's `Adapter` as its
`UNet3DConditionModel` does (`cin=4, nums_rb=2, ksize=1, sk=True, use_conv=False`) with two tiny levels instead of
SD1.5's four, draws every weight from a seeded generator, and saves the weights (`img_encoder.…`, as the
release's checkpoint names them), an input (image latents on 5 frames of 6×10, odd sizes to exercise the
edge padding of its downsampling) and the features it returns for it.
"""

import importlib.util
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

spec = importlib.util.spec_from_file_location("release_adapter", sys.argv[1])
release = importlib.util.module_from_spec(spec)
spec.loader.exec_module(release)

torch.manual_seed(0)
adapter = release.Adapter(cin=4, channels=[8, 16], nums_rb=2, ksize=1, sk=True, use_conv=False)
with torch.no_grad():
    for parameter in adapter.parameters():
        parameter.normal_(0, 0.2)
latents = torch.randn(1, 4, 5, 6, 10)
with torch.no_grad():
    features = adapter(latents)
tensors = {f"img_encoder.{key}": value for key, value in adapter.state_dict().items()}
tensors["input"] = latents
tensors.update({f"feature.{level}": feature.contiguous() for level, feature in enumerate(features)})
save_file(tensors, Path(__file__).parent / "encoder.safetensors")
