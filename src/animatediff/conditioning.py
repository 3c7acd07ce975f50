"""From a `ControlSpec` (files) to the `Conditions` of one clip (tensors and loaded models).

Videos and images are read by `media` at the clip's size; ControlNets are loaded by diffusers'
`ControlNetModel` loaders (a diffusers folder, or a single SD1.x file with its config taken from the
base's UNet); the IP-Adapter goes into the pipeline's UNet through diffusers' IP-Adapter loader, with
the CLIP image encoder folder the user gives; CameraCtrl plugs its pose layers into the pipeline's motion
module, and its camera path is read from a pose file or made from a preset. Each ControlNet is loaded once per
command."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from PIL import Image

from animatediff.camera_poses import PRESETS, check_frame_count, preset_poses, read_camera_poses
from animatediff.cameractrl import CameraCtrl, attach
from animatediff.control import Conditions, ControlNetInput, Extension, InitImage, InitVideo
from animatediff.control.camera import CameraInput, pose_embedding
from animatediff.control.image_input import ImageInput
from animatediff.control.image_prompt import image_prompt, load_ip_adapter, reads_hidden_states
from animatediff.control.sparsectrl import SparseCtrlInput, crop_like_official, normalize_condition
from animatediff.errors import CheckpointError, ConfigError, first_line
from animatediff.families import pia_affinity
from animatediff.formats import Kind, read_checkpoint, read_state_dict
from animatediff.formats.sparsectrl import load_sparsectrl
from animatediff.image_models import TEXT_WIDTHS
from animatediff.media import read_frames, read_image
from animatediff.motion_module import MotionModule
from animatediff.pipeline import AnimateDiffPipeline
from animatediff.settings import ControlSpec, Sample, default_mask_blur
from animatediff.sparsectrl import check_keyframes

_CONTROLNET_SHAPE = ("block_out_channels", "cross_attention_dim", "layers_per_block")


def as_tensor(frames) -> torch.Tensor:
    """F×H×W×3 uint8 frames as f 3 H W floats in [0, 1] (on the CPU)."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


def _shape(config) -> dict:
    return {name: tuple(v) if isinstance(v := config[name], list) else v for name in _CONTROLNET_SHAPE}


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a checkpoint (a safetensors file's from its header alone)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception:  # not a safetensors file: read it (safely) as a checkpoint
        return {key: tuple(value.shape) for key, value in read_state_dict(path).items()}


def _hint_channels(shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    """The control image encoder's widths, read from a single file in either layout (None: not found)."""
    ldm = sorted(
        (int(key.split(".")[2]), shape[0])
        for key, shape in shapes.items()
        if key.startswith("control_model.input_hint_block.") and key.endswith(".weight")
    )
    blocks = [
        shapes[f"controlnet_cond_embedding.blocks.{i}.weight"][0]
        for i in range(len(shapes))
        if f"controlnet_cond_embedding.blocks.{i}.weight" in shapes
    ]
    if ldm:  # conv_in, then pairs of blocks (the second of each pair widens), then conv_out
        return (ldm[0][1], *(width for _, width in ldm[2:-1:2]))
    if "controlnet_cond_embedding.conv_in.weight" in shapes:
        return (shapes["controlnet_cond_embedding.conv_in.weight"][0], *blocks[1::2])
    return None


def _single_file_config(path: Path, unet: UNet2DConditionModel) -> dict:
    """A ControlNet config for a single file: the base UNet's shape, the file's control image encoder."""
    import inspect

    accepted = inspect.signature(ControlNetModel.__init__).parameters
    config = {key: value for key, value in unet.config.items() if key in accepted}
    channels = _hint_channels(_shapes(path))
    return {**config, **({"conditioning_embedding_out_channels": channels} if channels else {})}


def load_controlnet(path: Path, unet: UNet2DConditionModel) -> ControlNetModel:
    """A ControlNet from a diffusers folder or a single file, checked to fit the base model's UNet."""
    path = Path(path)
    try:
        if path.is_dir():
            controlnet = ControlNetModel.from_pretrained(path)
        else:
            with tempfile.TemporaryDirectory() as folder:  # the single file's config: the base UNet's shape
                ControlNetModel.from_config(_single_file_config(path, unet)).save_config(folder)
                controlnet = ControlNetModel.from_single_file(str(path), config=folder)
    except Exception as error:  # diffusers' loaders fail in many ways on a file that is not a ControlNet
        message = f"controlnet {path}: could not be loaded as a ControlNet ({first_line(error)})."
        raise CheckpointError(message) from error
    wanted, found = _shape(unet.config), _shape(controlnet.config)
    if wanted != found:
        kind = TEXT_WIDTHS.get(found["cross_attention_dim"])
        kind = f"an {kind}" if kind else "another base model's"
        raise ConfigError(
            f"controlnet {path} is {kind} ControlNet (widths {found['block_out_channels']}, text width "
            f"{found['cross_attention_dim']}); the base model's UNet has widths {wanted['block_out_channels']} "
            f"and text width {wanted['cross_attention_dim']}."
        )
    return controlnet.eval()


def load_image_encoder(folder: Path, device: torch.device):
    """A CLIP vision encoder folder and its image processor (CLIP's defaults when the folder has none)."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    encoder = CLIPVisionModelWithProjection.from_pretrained(folder).to(device).eval()
    has_processor = (Path(folder) / "preprocessor_config.json").is_file()
    return encoder, CLIPImageProcessor.from_pretrained(folder) if has_processor else CLIPImageProcessor()


def read_ip_adapter(path: Path) -> dict[str, torch.Tensor]:
    """An IP-Adapter's tensors with flat keys `image_proj.…` and `ip_adapter.…`: a .safetensors holds them
    so; a .bin nests them under `image_proj` and `ip_adapter` (read with `weights_only`)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        state = read_state_dict(path)
    else:
        with path.open("rb"):  # an unreadable file fails here, naming it
            pass
        nested = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(nested, dict) or not {"image_proj", "ip_adapter"} <= set(nested):
            raise CheckpointError(f"ip-adapter {path}: expected image_proj and ip_adapter weights.")
        state = {f"{part}.{key}": value for part in ("image_proj", "ip_adapter") for key, value in nested[part].items()}
    if not any(key.startswith("ip_adapter.") for key in state):
        raise CheckpointError(f"ip-adapter {path}: holds no ip_adapter.* weights; expected an IP-Adapter.")
    return state


def _check_ip_adapter_width(path: Path, state: dict[str, torch.Tensor], width: int) -> None:
    """Refuse an IP-Adapter whose extra keys and values read image tokens of another width than the base's
    cross-attention (an SD1.5 IP-Adapter on an SDXL base, or the reverse)."""
    found = {value.shape[1] for key, value in state.items() if key.endswith(("to_k_ip.weight", "to_v_ip.weight"))}
    if found and found != {width}:

        def named(size: int) -> str:
            return f"{size} wide ({TEXT_WIDTHS[size]})" if size in TEXT_WIDTHS else f"{size} wide"

        raise ConfigError(
            f"ip-adapter {path}: made for an image model whose cross-attention reads {named(max(found))}; this "
            f"base's reads {named(width)}. Use an IP-Adapter made for the base."
        )


def install_ip_adapter(pipeline: AnimateDiffPipeline, path: Path, scale: float) -> None:
    """An IP-Adapter's image projection and attention processors into the pipeline's UNet (diffusers'
    IP-Adapter loader): part of the model, loaded with it."""
    state = read_ip_adapter(path)
    _check_ip_adapter_width(path, state, pipeline.unet.unet.config.cross_attention_dim)
    try:
        load_ip_adapter(pipeline.unet.unet, state, scale)
    except (CheckpointError, ConfigError):
        raise
    except Exception as error:  # diffusers' loader on files that do not fit
        raise CheckpointError(f"ip-adapter {path}: could not be loaded ({first_line(error)}).") from error


class ConditionLoader:
    """Builds each clip's `Conditions`, keeping the ControlNets, the SparseCtrl encoder and the image encoder
    loaded between clips that use the same ones (`models`)."""

    def __init__(self, pipeline: AnimateDiffPipeline, spec: ControlSpec):
        self.pipeline, self.spec = pipeline, spec
        unet = pipeline.unet.unet
        self.controlnets = [load_controlnet(c.path, unet).to(pipeline.device, unet.dtype) for c in spec.controlnets]
        self.sparsectrl = None
        if spec.sparsectrl is not None:
            self.sparsectrl = load_sparsectrl(spec.sparsectrl, unet, spec.sparsectrl_settings)
        self.camera = None
        if spec.camera_ctrl is not None:
            self.camera = load_camera(pipeline, spec.camera_ctrl)
        self.encoder = None
        if spec.ip_adapter is not None:
            folder = spec.encoder_folder()
            try:
                self.encoder, self.processor = load_image_encoder(folder, pipeline.device)
            except Exception as error:  # transformers' loader on folders that do not fit
                raise CheckpointError(
                    f"ip-adapter {spec.ip_adapter} with image encoder {folder}: could not be "
                    f"loaded ({first_line(error)})."
                ) from error
        for model in (*self.controlnets, self.sparsectrl, self.camera, self.encoder):  # as build_pipeline's
            if isinstance(model, torch.nn.Module):
                model.requires_grad_(False)

    @staticmethod
    def models(spec: ControlSpec) -> tuple:
        """What a loader for `spec` loads: another spec with the same models shares it."""
        controlnets = tuple(c.path for c in spec.controlnets)
        settings = tuple(sorted((spec.sparsectrl_settings or {}).items()))
        return controlnets, spec.sparsectrl, repr(settings), spec.encoder_folder(), spec.camera_ctrl

    def __call__(self, sample: Sample, spec: ControlSpec | None = None) -> Conditions:
        """The conditions of one clip, from its own inputs (`spec`: the one the loader was made with, or
        another with the same `models`)."""
        spec = spec or self.spec
        size = (sample.width, sample.height)
        init = extension = None
        if spec.init_video is not None:
            frames = read_frames(spec.init_video, "init video", sample.frames, size, spec.stride)
            mask = read_mask(spec, sample)
            blur = spec.mask_blur if spec.mask_blur is not None else default_mask_blur(sample.width, sample.height)
            init = InitVideo(as_tensor(frames), spec.strength, mask, mask_blur=None if mask is None else blur)
        if spec.extend is not None:
            frames = as_tensor(read_frames(spec.extend, "extend", None, size))
            extension = Extension(frames, spec.extend_overlap, spec.extend_guidance)
        image_input = None
        if spec.init_image is not None:
            images = ((spec.init_image, "init image"), (spec.last_image, "last image"))
            first, last = (
                None if path is None else as_tensor(read_image(path, what, size)[None])[0] for path, what in images
            )
            if spec.image_input is None:
                init = InitImage(first, last, spec.init_strength, spec.init_falloff)
            else:  # PIA and AnimateLCM-I2V animate the image themselves
                affinity = pia_affinity(spec.pia_strength, sample.frames) if spec.pia_strength is not None else ()
                image_input = ImageInput(spec.image_input, first, affinity)
        controls = tuple(
            ControlNetInput(
                model,
                as_tensor(read_frames(c.video, "control video", sample.frames, size, spec.stride)),
                c.scale,
                spec.control_start,
                spec.control_end,
                spec.guess_mode,
            )
            for model, c in zip(self.controlnets, spec.controlnets, strict=True)
        )
        prompt = None
        if self.encoder is not None:
            image = read_image(spec.ip_image, "ip image")
            prompt = image_prompt(
                self.encoder,
                self.processor,
                image,
                reads_hidden_states(self.pipeline.unet.unet),
                guidance=sample.guidance_scale > 1.0,
            )
        return Conditions(
            init=init,
            extension=extension,
            controlnets=controls,
            image_prompt=prompt,
            sparsectrl=self._keyframes(sample, spec),
            image_input=image_input,
            camera=self._camera(sample, spec),
        )

    def _camera(self, sample: Sample, spec: ControlSpec) -> CameraInput | None:
        """CameraCtrl with the clip's camera path (a preset made for its frame count, or the pose file) as a
        Plücker embedding at the clip's size."""
        if self.camera is None:
            return None
        if spec.camera_poses in PRESETS:
            poses = preset_poses(spec.camera_poses, sample.frames)
        else:
            poses = read_camera_poses(spec.camera_poses)
            check_frame_count(poses, sample.frames, spec.camera_poses)
        return CameraInput(self.camera, pose_embedding(poses, sample.height, sample.width))

    def _keyframes(self, sample: Sample, spec: ControlSpec) -> SparseCtrlInput | None:
        """The SparseCtrl encoder with the clip's keyframes: control images cropped as the official script
        crops them (RGB ones encoded by the pipeline with the clip's generator), or the control latents."""
        if self.sparsectrl is None:
            return None
        if spec.control_latents is not None:
            latents = read_control_latents(spec.control_latents)
            check_keyframes(spec.keyframe_indices(len(latents)), len(latents), sample.frames)
            return SparseCtrlInput(
                self.sparsectrl, latents, spec.keyframe_indices(len(latents)), sample.frames, spec.sparsectrl_scale
            )
        check_keyframes(spec.keyframe_indices(), len(spec.control_images), sample.frames)
        size = (sample.width, sample.height)
        images = torch.stack(
            [
                as_tensor(read_image(path, "control image", size, crop_like_official)[None])[0]
                for path in spec.control_images
            ]
        )
        if spec.normalize_condition_images:
            images = normalize_condition(images)
        return SparseCtrlInput(
            self.sparsectrl,
            images,
            spec.keyframe_indices(),
            sample.frames,
            spec.sparsectrl_scale,
            encode=self.sparsectrl.config.latent_condition,
        )


def read_mask(spec: ControlSpec, sample: Sample) -> torch.Tensor | None:
    """The init video's mask (f 1 H W in [0, 1], white redrawn) at the clip's size, fitted as the video is: a
    mask video's frames (every `stride`-th, as the video's) or one image for every frame; None without one."""
    size = (sample.width, sample.height)
    if spec.mask_video is not None:
        frames = read_frames(spec.mask_video, "mask video", sample.frames, size, spec.stride)
    elif spec.mask is not None:
        frames = read_image(spec.mask, "mask", size)[None].repeat(sample.frames, axis=0)
    else:
        return None
    grey = np.stack([np.asarray(Image.fromarray(frame).convert("L")) for frame in frames])  # as diffusers' masks
    return torch.from_numpy(grey)[:, None].float() / 255


def load_cameractrl(path: str | Path, motion_module: MotionModule) -> CameraCtrl:
    """A CameraCtrl file (the release's `CameraCtrl.ckpt`, or its tensors flattened into a `.safetensors`)
    plugged into `motion_module`."""
    hint = " A CameraCtrl file holds a pose encoder ('pose_encoder_state_dict') and pose layers (qkv_merge)."
    return attach(motion_module, read_checkpoint(path, Kind.CAMERACTRL, hint), path)


def load_camera(pipeline: AnimateDiffPipeline, path: Path) -> CameraCtrl:
    """CameraCtrl from its file, its pose layers plugged into the pipeline's motion module, on the pipeline's
    device and in its dtype."""
    motion_module = pipeline.unet.motion_module
    if motion_module is None:
        raise ConfigError(f"camera-ctrl {path}: CameraCtrl steers a motion module; give the v3 one.")
    unet = pipeline.unet.unet
    return load_cameractrl(path, motion_module).to(pipeline.device, unet.dtype)


def read_control_latents(path: Path) -> torch.Tensor:
    """Precomputed keyframe latents from a `.npy` file: (keyframes, 4, h, w), already scaled by the VAE's
    scaling factor."""
    try:
        latents = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ConfigError(f"control latents {path}: not a readable .npy array ({first_line(error)}).") from error
    if latents.ndim != 4 or latents.shape[1] != 4 or not np.issubdtype(latents.dtype, np.floating):
        raise ConfigError(
            f"control latents {path}: expected floats of shape (keyframes, 4, latent height, latent "
            f"width); got {latents.dtype} of shape {latents.shape}."
        )
    if not np.isfinite(latents).all():
        raise ConfigError(f"control latents {path}: holds NaN or infinite values.")
    return torch.from_numpy(latents.astype(np.float32))
