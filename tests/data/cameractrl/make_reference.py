"""Make `reference.npz` and the tiny weights beside it by running CameraCtrl's own release code.

Run from the repository root with a checkout of github.com/hehao13/CameraCtrl (main branch, commit af45a7a)
on the path: `python tests/data/cameractrl/make_reference.py /path/to/CameraCtrl`. It builds a tiny
camera-conditioned video UNet with the release's `UNet3DConditionModelPoseCond` (the tests' tiny image UNet
inside, the release's config for everything else: v3 motion modules without a mid block, pose layers on the
first temporal attention of every block, query and key/value conditioned), its `CameraPoseEncoder` with the
release's `pose_encoder_kwargs` at the tiny widths, every CameraCtrl weight random; then, from `poses.txt`,
the release's dataset code (`RealEstate10KPose.get_batch`: relative poses, intrinsics rescaled from a
1280×720 video, `ray_condition`) gives the Plücker embedding, the encoder its features, and the UNet one
noise prediction. Saved: the weights as the release saves them (`cameractrl.ckpt`: `pose_encoder_state_dict`
and `attention_processor_state_dict`; `motion_module.ckpt`: the UNet's `motion_modules` keys) and the
outputs (`reference.npz`).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/, for the tiny image UNet
WIDTHS = [32, 64]
FRAMES, HEIGHT, WIDTH, DOWNSCALE = 8, 16, 24, 2  # the tiny VAE's factor is 2


def release_modules(checkout: str):
    """The release's modules, with the two imports this diffusers moved or this machine lacks shimmed."""
    import diffusers.models.transformers.transformer_2d as transformer_2d

    sys.modules["diffusers.models.transformer_2d"] = transformer_2d
    for name in ("decord", "torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["decord"].VideoReader = None
    sys.path.insert(0, checkout)
    from cameractrl.data.dataset import RealEstate10KPose
    from cameractrl.models.pose_adaptor import CameraPoseEncoder
    from cameractrl.models.unet import UNet3DConditionModelPoseCond

    return RealEstate10KPose, CameraPoseEncoder, UNet3DConditionModelPoseCond


class _Video:
    """A stand-in 1280×720 video for the dataset's reader: only its size is read for the poses."""

    def __len__(self):
        return FRAMES

    def get_batch(self, indices):
        return types.SimpleNamespace(asnumpy=lambda: np.zeros((len(indices), 720, 1280, 3), dtype=np.uint8))


def plucker(dataset_class) -> np.ndarray:
    dataset = dataset_class.__new__(dataset_class)
    settings = dict(
        root_path=str(HERE),
        dataset=[{"pose_file": "poses.txt", "clip_name": "tiny", "caption": ""}],
        sample_stride=1,
        minimum_sample_stride=1,
        sample_n_frames=FRAMES,
        relative_pose=True,
        zero_t_first_frame=True,
        sample_size=[HEIGHT, WIDTH],
        sample_wh_ratio=WIDTH / HEIGHT,
        rescale_fxy=True,
        shuffle_frames=False,
        use_flip=False,
    )
    dataset.__dict__.update(settings)
    dataset.load_video_reader = lambda idx: ("tiny", _Video(), "")
    _, _, embedding, _, _ = dataset.get_batch(0)
    return embedding.numpy()  # f 6 H W


def randomize(module: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


def main(checkout: str) -> None:
    from helpers import tiny_unet

    dataset_class, encoder_class, unet_class = release_modules(checkout)
    embedding = plucker(dataset_class)

    image_unet = tiny_unet(0)
    config = dict(image_unet.config)
    config["down_block_types"] = ["CrossAttnDownBlock3D", "DownBlock3D"]
    config["up_block_types"] = ["UpBlock3D", "CrossAttnUpBlock3D"]
    motion = dict(
        num_attention_heads=8,
        num_transformer_block=1,
        attention_block_types=["Temporal_Self", "Temporal_Self"],
        temporal_position_encoding=True,
        temporal_position_encoding_max_len=32,
        temporal_attention_dim_div=1,
        zero_initialize=False,
    )
    unet = unet_class.from_config(
        config,
        use_motion_module=True,
        motion_module_resolutions=[1, 2, 4, 8],
        motion_module_mid_block=False,
        motion_module_type="Vanilla",
        motion_module_kwargs=motion,
    )
    _, unexpected = unet.load_state_dict(image_unet.state_dict(), strict=False)
    assert not unexpected, unexpected
    unet.set_all_attn_processor(
        add_spatial=False,
        spatial_attn_names="attn1",
        add_temporal=True,
        temporal_attn_names="0",
        pose_feature_dimensions=WIDTHS,
        add_spatial_lora=False,
        add_motion_lora=False,
        lora_kwargs={"lora_rank": 2, "lora_scale": 1.0},
        motion_lora_kwargs={"lora_rank": -1, "lora_scale": 1.0},
        query_condition=True,
        key_value_condition=True,
        scale=1.0,
    )
    encoder = encoder_class(
        downscale_factor=DOWNSCALE,
        channels=WIDTHS,
        nums_rb=2,
        cin=6 * DOWNSCALE**2,
        ksize=1,
        sk=True,
        use_conv=False,
        compression_factor=1,
        temporal_attention_nhead=8,
        attention_block_types=["Temporal_Self"],
        temporal_position_encoding=True,
        temporal_position_encoding_max_len=16,
    )
    generator = torch.Generator().manual_seed(48)
    randomize(encoder, generator)
    for name, module in unet.named_modules():
        if name.endswith("motion_modules"):
            randomize(module, generator)
    unet.eval(), encoder.eval()

    state = unet.state_dict()
    merges = {k: v for k, v in state.items() if "qkv_merge" in k}
    motion_module = {k: v for k, v in state.items() if "motion_modules." in k and "qkv_merge" not in k}
    torch.save(
        {"pose_encoder_state_dict": encoder.state_dict(), "attention_processor_state_dict": merges},
        HERE / "cameractrl.ckpt",
    )
    torch.save(motion_module, HERE / "motion_module.ckpt")

    latents = torch.randn((1, 4, FRAMES, HEIGHT // DOWNSCALE, WIDTH // DOWNSCALE), generator=generator)
    text = torch.randn((1, 77, 32), generator=generator)
    with torch.no_grad():
        pose = torch.from_numpy(embedding)[None].permute(0, 2, 1, 3, 4)  # b c f h w
        features = encoder(pose)
        features = [x.reshape(1, FRAMES, *x.shape[1:]).permute(0, 2, 1, 3, 4) for x in features]  # b c f h w
        eps = unet(latents, torch.tensor([500]), text, pose_embedding_features=features).sample
    arrays = {"plucker": embedding, "latents": latents.numpy(), "text": text.numpy(), "eps": eps.numpy()}
    arrays.update({f"feature_{i}": x.numpy() for i, x in enumerate(features)})
    np.savez_compressed(HERE / "reference.npz", **arrays)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1])
