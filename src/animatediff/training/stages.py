"""The training stages: what each builds and trains, its loss, and how it saves its result.

Every stage is a `TrainingStage` in `STAGES`; the trainer runs any of them without naming one, and a
new stage is one class and one entry here.

0. The image model itself, for a base trained from nothing (the shapes world's): `vae` trains the
   autoencoder on images (reconstruction + a light KL term) and sets its latent scaling factor from
   the data; `text_to_image` trains the UNet and the text encoder together on captioned images. Both
   save a complete diffusers model folder (the base folder with the trained parts replaced).
1. `domain_adapter`: a LoRA on the image UNet's self- and cross-attention q, k, v, out, on single
   video frames; saved in the official v3 adapter layout. (`image_finetune`: the whole image UNet,
   e.g. DreamBooth-style; `image_lora`: the same LoRA as the adapter, saved as a diffusers image LoRA
   for `--lora`, e.g. a personalization style. Both can keep the base's prior, as DreamBooth does.)
2. `motion_module`: a fresh (zero-output) motion module, base and domain adapter frozen; saved in the
   official motion-module layout.
3. `motion_lora`: a LoRA on the motion module's attention projections, everything else frozen; saved
   in the official MotionLoRA layout.

Beside them, `controlnet`: a ControlNet made from the image UNet (its encoder copied, zero convolutions
at zero), trained on single frames with their Canny edges as the control image, the UNet frozen;
saved as a diffusers ControlNet folder (`--controlnet`).

And `sparsectrl` (the official release never published SparseCtrl training): an RGB SparseCtrl encoder
made from the image UNet (its down blocks copied, fresh one-attention motion modules, zero convolutions
at zero, the condition's convolution starting as the UNet's own input convolution), trained on clips
whose own frames, at random sparse indices, are the keyframes (their VAE latents and the mask); the base
and the motion module frozen; saved in the official layout.

And `distill`: a few-step model by latent consistency distillation, as AnimateLCM does it: the student
(the teacher's motion module, trained whole, and a LoRA on the image UNet's attention) learns the
consistency function of the guided teacher (the base with its motion module, frozen); saved as a folder
with the motion module (its metadata naming the `distilled` family and the LoRA beside it, which loading
then applies) and the image LoRA.
"""

from __future__ import annotations

import copy
import shutil
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

import torch
from diffusers import ControlNetModel, DDPMScheduler
from einops import rearrange, repeat
from torch import nn

from animatediff.control.preprocess import canny
from animatediff.control.sparsectrl import keyframe_latents
from animatediff.errors import ConfigError
from animatediff.families import FAMILIES
from animatediff.files import atomic_path, holds_only
from animatediff.formats import DIFFUSERS_MODEL_FILES, load_motion_module, save_motion_module, save_state_dict
from animatediff.formats.sparsectrl import save_sparsectrl
from animatediff.image_models import load_base
from animatediff.inflation import AnimateDiffUNet, Residuals
from animatediff.lora import TrainableLoRA, apply_domain_adapter, attention_projections
from animatediff.motion_module import MotionModule, MotionModuleConfig
from animatediff.sparsectrl import SparseCtrl, SparseCtrlConfig, build_sparsectrl
from animatediff.training.data import VideoClips
from animatediff.training.losses import autoencoder_loss, consistency_losses, prior_preservation_loss, sample_losses
from animatediff.training.settings import TrainConfig

# a model folder as the image stages write it: the base's parts, some of them retrained
MODEL_FOLDER = holds_only(
    "model_index.json",
    "*/config.json",
    "*/*.safetensors",
    "*/*.bin",
    "tokenizer/*",
    "scheduler/*",
    "*/*.json",
    "*/*.txt",
)


SCALING_IMAGES = 256  # the training images whose latents set a trained autoencoder's scaling factor


class StageName(StrEnum):
    VAE = "vae"
    TEXT_TO_IMAGE = "text_to_image"
    IMAGE_FINETUNE = "image_finetune"
    IMAGE_LORA = "image_lora"
    DOMAIN_ADAPTER = "domain_adapter"
    MOTION_MODULE = "motion_module"
    MOTION_LORA = "motion_lora"
    CONTROLNET = "controlnet"
    DISTILL = "distill"
    SPARSECTRL = "sparsectrl"


class TrainingModel(nn.Module):
    """The video UNet the loss runs through, with the trained module registered beside it (a LoRA
    acts through hooks and is not otherwise a submodule), so data-parallel training syncs it."""

    def __init__(self, video_unet: AnimateDiffUNet, trainable: nn.Module):
        super().__init__()
        self.video_unet = video_unet
        self.trainable = trainable

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.video_unet(sample, timestep, encoder_hidden_states)


class AutoencoderTraining(nn.Module):
    """The `vae` stage's model: reconstruction of single frames through the VAE's posterior."""

    def __init__(self, vae):
        super().__init__()
        self.trainable = vae

    def forward(self, pixels: torch.Tensor, seeds: list[int]):
        """Reconstructions of `pixels` (one frame per seed) from posterior samples drawn with each seed."""
        posterior = self.trainable.encode(pixels).latent_dist
        draws = [torch.randn(posterior.mean.shape[1:], generator=torch.Generator().manual_seed(s)) for s in seeds]
        latents = posterior.mean + posterior.std * torch.stack(draws).to(posterior.mean.device)
        return self.trainable.decode(latents).sample, posterior


class TrainingStage:
    """One stage: the base loaded and frozen, then `build` makes what trains (`model.trainable`).

    A batch holds its `instances` personalization samples first and, for a stage that keeps the base's
    prior, as many class images after them."""

    name: ClassVar[StageName]
    result_name: ClassVar[str]  # the file or folder the result is saved as, in the run's output folder
    clips: ClassVar[bool] = False  # learns from clips (else from single frames)
    takes_prior: ClassVar[bool] = False  # can keep the base's class prior (DreamBooth's prior preservation)
    default_rank: ClassVar[int] = 0  # a LoRA's rank, where the stage trains one
    default_learning_rate: ClassVar[float] = 1e-4

    def __init__(self, config: TrainConfig):
        self.config = config
        self.components = load_base(config.base)
        for model in (self.components.unet, self.components.vae, self.components.text_encoder):
            model.requires_grad_(False)
        self.noise_scheduler = DDPMScheduler(**config.noise_scheduler)
        self.model = self.build()

    @classmethod
    def check(cls, config: TrainConfig) -> None:
        """Refuse settings this stage cannot train with, naming the field."""

    @property
    def rank(self) -> int:
        """The rank of the LoRA the stage trains: `lora_rank` if the config sets it, else the stage's default."""
        return self.config.lora_rank or self.default_rank

    def build(self) -> nn.Module:
        raise NotImplementedError

    def save(self, path: Path) -> Path:
        """Write the trained result at `path` in its official layout."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict, device) -> torch.Tensor:
        settings = self.config.train
        losses = sample_losses(model, self.components, self.noise_scheduler, batch, device, settings)
        if batch["instances"] == len(losses):
            return losses.mean()
        return prior_preservation_loss(losses, batch["instances"], settings.prior_loss_weight)

    def checkpointed(self) -> nn.Module:
        """The model whose gradient checkpointing `train.gradient_checkpointing` turns on."""
        return self.model.video_unet

    def video_unet(self, model: nn.Module) -> AnimateDiffUNet | None:
        """The video UNet that validation clips are sampled with, from the (unwrapped) model; None if
        the stage trains no UNet path."""
        return model.video_unet

    def _video_model(self, trainable: nn.Module, motion_module: MotionModule | None = None) -> TrainingModel:
        return TrainingModel(AnimateDiffUNet(self.components.unet, motion_module), trainable)


def _save_model_folder(base: Path, path: Path, parts: dict[str, nn.Module]) -> Path:
    """Save as a copy of the base folder with the trained parts (vae, unet, text_encoder) replaced."""
    with atomic_path(path, directory=True, replaceable=MODEL_FOLDER) as temporary:
        shutil.copytree(base, temporary, ignore=shutil.ignore_patterns(*parts), dirs_exist_ok=True)
        for name, model in parts.items():
            model.save_pretrained(temporary / name)
    return path


@torch.no_grad()
def latent_scaling_factor(vae, config: TrainConfig) -> float:
    """1 / the standard deviation of the latents of `SCALING_IMAGES` training images (as SD chose 0.18215)."""
    clips = VideoClips(config.items, 1, 1, config.data.size, 0.0)
    pixels = torch.cat([clips[(index % len(clips), index)]["pixels"] for index in range(SCALING_IMAGES)])
    was_training = vae.training
    vae.eval()
    latents = torch.cat([vae.encode(chunk.to(vae.device)).latent_dist.mean for chunk in pixels.split(64)])
    vae.train(was_training)
    return float(1.0 / latents.std())


class VaeStage(TrainingStage):
    """The whole autoencoder, or (`decoder_only`) its decoder alone: then the encoder, and so the latents
    a UNet was trained on and their scaling factor, stay as they are (as SD's fine-tuned VAE decoders)."""

    name, result_name = StageName.VAE, "model"

    def build(self) -> nn.Module:
        vae = self.components.vae
        if self.config.train.decoder_only:
            vae.decoder.requires_grad_(True)
            vae.post_quant_conv.requires_grad_(True)
        else:
            vae.requires_grad_(True)
        return AutoencoderTraining(vae)

    def loss(self, model: nn.Module, batch: dict, device) -> torch.Tensor:
        return autoencoder_loss(model, batch, device, self.config.train.contrast_weight)

    def save(self, path: Path) -> Path:
        vae = self.components.vae
        if not self.config.train.decoder_only:
            vae.register_to_config(scaling_factor=latent_scaling_factor(vae, self.config))
        return _save_model_folder(self.config.base, path, {"vae": vae})

    def checkpointed(self) -> nn.Module:
        return self.components.vae

    def video_unet(self, model: nn.Module) -> None:
        return None


class TextToImageStage(TrainingStage):
    """The image UNet (and, unless `train_text_encoder` is false, the text encoder) on captioned images."""

    name, result_name = StageName.TEXT_TO_IMAGE, "model"

    def build(self) -> nn.Module:
        self.parts = {"unet": self.components.unet.requires_grad_(True)}
        if self.config.train.train_text_encoder:
            self.parts["text_encoder"] = self.components.text_encoder.requires_grad_(True)
        return self._video_model(nn.ModuleDict(self.parts))

    def save(self, path: Path) -> Path:
        return _save_model_folder(self.config.base, path, self.parts)


class ImageFinetuneStage(TrainingStage):
    """The whole image UNet, DreamBooth-style; saved as a diffusers UNet folder (`--dreambooth`)."""

    name, result_name = StageName.IMAGE_FINETUNE, "unet"
    takes_prior, default_learning_rate = True, 1e-5

    def build(self) -> nn.Module:
        unet = self.components.unet.requires_grad_(True)
        return self._video_model(unet)

    def save(self, path: Path) -> Path:
        with atomic_path(path, directory=True, replaceable=DIFFUSERS_MODEL_FILES) as temporary:
            self.components.unet.save_pretrained(temporary)
        return path


class _AttentionLoRAStage(TrainingStage):
    """A LoRA on the image UNet's self- and cross-attention projections."""

    def build(self) -> nn.Module:
        unet = self.components.unet
        self.lora = TrainableLoRA(unet, attention_projections(unet, ("attn1", "attn2")), self.rank)
        return self._video_model(self.lora)


class ImageLoraStage(_AttentionLoRAStage):
    """A personalization LoRA, saved as a diffusers image LoRA (`--lora`)."""

    name, result_name = StageName.IMAGE_LORA, "image_lora.safetensors"
    takes_prior, default_rank = True, 8

    def save(self, path: Path) -> Path:
        return save_state_dict(self.lora.diffusers_state_dict(), path)


class DomainAdapterStage(_AttentionLoRAStage):
    """Stage 1: the domain adapter on single video frames, saved in the official v3 adapter layout."""

    name, result_name = StageName.DOMAIN_ADAPTER, "domain_adapter.safetensors"
    default_rank = 128

    def save(self, path: Path) -> Path:
        return save_state_dict(self.lora.official_state_dict(), path)


class _MotionStage(TrainingStage):
    """A stage on clips, over the base with the domain adapter (if given) merged at scale 1 and frozen."""

    clips = True

    @classmethod
    def check(cls, config: TrainConfig) -> None:
        if config.data.frames < 2:
            raise ConfigError(f"'data.frames': the {cls.name} stage trains on clips; got {config.data.frames} frame.")

    def build(self) -> nn.Module:
        if self.config.domain_adapter is not None:
            apply_domain_adapter(self.components.unet, self.config.domain_adapter, 1.0)
        return self.build_motion()

    def build_motion(self) -> nn.Module:
        raise NotImplementedError


class MotionModuleStage(_MotionStage):
    """Stage 2: a fresh motion module of the release `motion_module_version` (or `motion_module` to go on
    from), saved in the official layout."""

    name, result_name = StageName.MOTION_MODULE, "motion_module.safetensors"

    @classmethod
    def check(cls, config: TrainConfig) -> None:
        super().check(config)
        release = FAMILIES[config.motion_module_version]
        if config.data.frames > release.max_frames:
            raise ConfigError(
                f"'data.frames': a {release.name} module's position table has {release.max_frames} "
                f"frames; got {config.data.frames}."
            )

    def build_motion(self) -> nn.Module:
        config = self.config
        self.module = load_motion_module(config.motion_module) if config.motion_module else self._fresh_module()
        self.module.requires_grad_(True)
        return self._video_model(self.module, self.module)

    def _fresh_module(self) -> MotionModule:
        unet = self.components.unet
        widths = tuple(unet.config.block_out_channels)
        if any(width % 32 for width in widths):
            raise ConfigError(
                f"'base': the motion module's GroupNorm(32) needs UNet widths that are multiples of 32; got {widths}."
            )
        return MotionModule(
            MotionModuleConfig(
                block_out_channels=widths,
                layers_per_block=unet.config.layers_per_block,
                kind=self.config.motion_module_kind,
                position_encoding=self.config.position_encoding,
                **FAMILIES[self.config.motion_module_version].fresh_module_settings(),
            )
        )

    def save(self, path: Path) -> Path:
        return save_motion_module(self.module, path)


class MotionLoraStage(_MotionStage):
    """Stage 3: a MotionLoRA on a frozen motion module, saved in the official layout."""

    name, result_name = StageName.MOTION_LORA, "motion_lora.safetensors"
    default_rank = 64

    @classmethod
    def check(cls, config: TrainConfig) -> None:
        super().check(config)
        if config.motion_module is None:
            raise ConfigError("'motion_module' is required: the motion_lora stage adapts a trained motion module.")

    def build_motion(self) -> nn.Module:
        module = load_motion_module(self.config.motion_module).requires_grad_(False)
        targets = attention_projections(module, ("attention_blocks.0", "attention_blocks.1"))
        self.lora = TrainableLoRA(module, targets, self.rank)
        return self._video_model(self.lora, module)

    def save(self, path: Path) -> Path:
        return save_state_dict(self.lora.official_state_dict(), path)


class ControlNetTraining(nn.Module):
    """The `controlnet` stage's model: the frozen video UNet with the ControlNet's residuals added."""

    def __init__(self, video_unet: AnimateDiffUNet, controlnet: ControlNetModel):
        super().__init__()
        self.video_unet = video_unet
        self.trainable = controlnet

    def forward(self, sample, timestep, encoder_hidden_states, control: torch.Tensor):
        """`control`: the control images of every frame, `(b f) 3 H W` in [0, 1]."""
        frames = sample.shape[2]
        down, mid = self.trainable(
            rearrange(sample, "b c f h w -> (b f) c h w"),
            repeat(timestep, "b -> (b f)", f=frames),
            encoder_hidden_states=repeat(encoder_hidden_states, "b n d -> (b f) n d", f=frames),
            controlnet_cond=control,
            return_dict=False,
        )
        return self.video_unet(sample, timestep, encoder_hidden_states, residuals=Residuals(list(down), mid))


class ControlNetStage(TrainingStage):
    """A ControlNet on Canny edges of the training frames (thresholds `controlnet_thresholds`)."""

    name, result_name = StageName.CONTROLNET, "controlnet"
    default_learning_rate = 1e-5

    def build(self) -> nn.Module:
        unet, vae = self.components.unet, self.components.vae
        halvings = len(vae.config.block_out_channels) - 1  # the control image enters at the latents' size
        channels = ((16,) * halvings + (16, 32, 96, 256))[-halvings - 1 :]  # SD's (16, 32, 96, 256) for 3 halvings
        self.controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)
        self.controlnet.requires_grad_(True)
        return ControlNetTraining(AnimateDiffUNet(unet), self.controlnet)

    def loss(self, model: nn.Module, batch: dict, device) -> torch.Tensor:
        pixels = rearrange(batch["pixels"], "b f c h w -> (b f) h w c")
        frames = ((pixels.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        edges = torch.from_numpy(canny(frames)).permute(0, 3, 1, 2).float().to(device) / 255

        def with_control(sample, timestep, text):
            return model(sample, timestep, text, edges)

        return sample_losses(
            with_control, self.components, self.noise_scheduler, batch, device, self.config.train
        ).mean()

    def save(self, path: Path) -> Path:
        with atomic_path(path, directory=True, replaceable=DIFFUSERS_MODEL_FILES) as temporary:
            self.controlnet.save_pretrained(temporary)
        return path

    def checkpointed(self) -> nn.Module:
        return self.controlnet

    def video_unet(self, model: nn.Module) -> None:
        return None  # its clips need control frames: measured by `shapes results`, not by validation


class SparseCtrlTraining(nn.Module):
    """The `sparsectrl` stage's model: the frozen video UNet with the SparseCtrl encoder's residuals added."""

    def __init__(self, video_unet: AnimateDiffUNet, sparsectrl: SparseCtrl):
        super().__init__()
        self.video_unet = video_unet
        self.trainable = sparsectrl

    def forward(self, sample, timestep, encoder_hidden_states, condition: torch.Tensor, mask: torch.Tensor):
        """`condition` (b c f h w) and `mask` (b 1 f h w): each clip's keyframe latents where it has keyframes."""
        residuals = self.trainable(sample, timestep, encoder_hidden_states, condition, mask)
        return self.video_unet(sample, timestep, encoder_hidden_states, residuals=residuals)


def sparse_keyframes(frames: int, generator: torch.Generator) -> list[int]:
    """Which frames of a training clip are its keyframes: the first alone (half the clips), the first and the
    last (a quarter), or one to three frames anywhere (the rest): image to video, interpolation, and the
    sparse keyframes in between."""
    draw = torch.rand((), generator=generator).item()
    if draw < 0.5:
        return [0]
    if draw < 0.75:
        return [0, frames - 1]
    count = int(torch.randint(1, 4, (), generator=generator))
    return sorted(torch.randperm(frames, generator=generator)[:count].tolist())


class SparseCtrlStage(_MotionStage):
    """An RGB SparseCtrl encoder for the base with `motion_module` (frozen), saved in the official layout."""

    name, result_name = StageName.SPARSECTRL, "sparsectrl.safetensors"
    default_learning_rate = 1e-4

    @classmethod
    def check(cls, config: TrainConfig) -> None:
        super().check(config)
        if config.motion_module is None:
            raise ConfigError("'motion_module' is required: the sparsectrl stage steers the base with that module.")
        if config.data.frames > SparseCtrlConfig.max_frames:
            raise ConfigError(
                f"'data.frames': the SparseCtrl encoder's position table has "
                f"{SparseCtrlConfig.max_frames} frames; got {config.data.frames}."
            )

    def build_motion(self) -> nn.Module:
        unet = self.components.unet
        video_unet = AnimateDiffUNet(unet, load_motion_module(self.config.motion_module).requires_grad_(False))
        self.sparsectrl = build_sparsectrl(unet, SparseCtrlConfig()).train().requires_grad_(True)
        embedding = self.sparsectrl.controlnet.controlnet_cond_embedding
        with torch.no_grad():  # it starts by reading a keyframe's latents as the UNet reads latents
            embedding.weight[:, : unet.config.in_channels] = unet.conv_in.weight
        return SparseCtrlTraining(video_unet, self.sparsectrl)

    @torch.no_grad()
    def keyframes(self, batch: dict, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Each clip's condition and mask: its own frames' latents (a posterior sample, as inference takes
        them) at its keyframes, drawn from generators seeded by the clip's seed."""
        vae, pixels = self.components.vae, batch["pixels"]
        conditions, masks = [], []
        for clip, seed in zip(pixels, batch["seeds"], strict=True):
            generator = torch.Generator().manual_seed(seed + 1)  # the seed itself draws the clip's noise
            index = sparse_keyframes(len(clip), generator)
            latents = keyframe_latents(vae, (clip[index].float() + 1) / 2, generator)
            condition = torch.zeros(latents.shape[1], len(clip), *latents.shape[2:])
            mask = torch.zeros(1, len(clip), *latents.shape[2:])
            condition[:, index], mask[:, index] = rearrange(latents.cpu(), "n c h w -> c n h w"), 1
            conditions.append(condition)
            masks.append(mask)
        return torch.stack(conditions).to(device), torch.stack(masks).to(device)

    def loss(self, model: nn.Module, batch: dict, device) -> torch.Tensor:
        condition, mask = self.keyframes(batch, device)

        def with_keyframes(sample, timestep, text):
            return model(sample, timestep, text, condition, mask)

        return sample_losses(
            with_keyframes, self.components, self.noise_scheduler, batch, device, self.config.train
        ).mean()

    def save(self, path: Path) -> Path:
        return save_sparsectrl(self.sparsectrl, path)

    def video_unet(self, model: nn.Module) -> None:
        return None  # its clips need keyframes: measured by `shapes results`


class DistillTraining(nn.Module):
    """The `distill` stage's model: the student video UNet (trainable: its motion module and the image LoRA)
    beside the frozen teacher."""

    def __init__(self, student: AnimateDiffUNet, teacher: AnimateDiffUNet, lora: TrainableLoRA):
        super().__init__()
        self.video_unet, self.teacher = student, teacher
        self.trainable = nn.ModuleDict({"motion_module": student.motion_module, "lora": lora})

    def forward(self, sample, timestep, encoder_hidden_states, teacher: bool = False):
        return (self.teacher if teacher else self.video_unet)(sample, timestep, encoder_hidden_states)


class DistillStage(_MotionStage):
    """A few-step student of the base with `motion_module` (the teacher), saved as a folder: the motion module
    (family `distilled` in its metadata, naming the image LoRA beside it) and the image LoRA."""

    name, result_name = StageName.DISTILL, "distilled"
    default_rank, default_learning_rate = 32, 1e-4
    lora_name = "image_lora.safetensors"

    @classmethod
    def check(cls, config: TrainConfig) -> None:
        super().check(config)
        if config.motion_module is None:
            raise ConfigError("'motion_module' is required: the distill stage's teacher is the base with it.")
        if config.train.solver_steps > config.noise_scheduler["num_train_timesteps"]:
            raise ConfigError(
                f"'train.solver_steps' must be at most the noise schedule's "
                f"{config.noise_scheduler['num_train_timesteps']} timesteps; "
                f"got {config.train.solver_steps}."
            )

    def build_motion(self) -> nn.Module:
        unet = copy.deepcopy(self.components.unet)  # before the teacher's motion module hooks into the original
        teacher = AnimateDiffUNet(self.components.unet, load_motion_module(self.config.motion_module))
        teacher.requires_grad_(False)
        self.module = load_motion_module(self.config.motion_module).requires_grad_(True)
        self.lora = TrainableLoRA(unet, attention_projections(unet, ("attn1", "attn2")), self.rank)
        return DistillTraining(AnimateDiffUNet(unet, self.module), teacher, self.lora)

    def loss(self, model: nn.Module, batch: dict, device) -> torch.Tensor:
        return consistency_losses(model, self.components, self.noise_scheduler, batch, device, self.config.train).mean()

    def save(self, path: Path) -> Path:
        with atomic_path(path, directory=True, replaceable=DISTILLED_FOLDER) as temporary:
            save_state_dict(self.lora.diffusers_state_dict(), temporary / self.lora_name)
            save_motion_module(
                self.module, temporary / "motion_module.safetensors", family="distilled", image_lora=self.lora_name
            )
        return path

    def video_unet(self, model: nn.Module) -> None:
        return None  # its clips sample with the LCM scheduler in a few steps: measured by `shapes results`


DISTILLED_FOLDER = holds_only("motion_module.safetensors", DistillStage.lora_name)
STAGES: dict[StageName, type[TrainingStage]] = {
    stage.name: stage
    for stage in (
        VaeStage,
        TextToImageStage,
        ImageFinetuneStage,
        ImageLoraStage,
        DomainAdapterStage,
        MotionModuleStage,
        MotionLoraStage,
        ControlNetStage,
        DistillStage,
        SparseCtrlStage,
    )
}


def build_stage(config: TrainConfig) -> TrainingStage:
    """Load the models `config.stage` needs and freeze everything but what it trains."""
    return STAGES[config.stage](config)
