"""SDXL: the official SDXL beta motion module's layout (three levels, motion GroupNorm pooled over frames) on
an SDXL base with both text encoders, pooled embeddings and size ids; diffusers' AnimateDiffSDXLPipeline
reproduced on tiny SDXL-shaped weights; SD1.5 and SDXL parts refused together."""

import json
import shutil
from functools import partial

import numpy as np
import pytest
import torch
from diffusers import (
    AnimateDiffSDXLPipeline,
    ControlNetModel,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.free_noise_utils import AnimateDiffFreeNoiseMixin
from einops import rearrange
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from animatediff import AnimateDiffPipeline, load_base, read_video
from animatediff.cli import main
from animatediff.control import Conditions, ControlNetInput
from animatediff.control.image_prompt import image_prompt, load_ip_adapter, reads_hidden_states
from animatediff.formats import to_motion_adapter
from animatediff.loading import build_pipeline
from animatediff.motion_module import MotionModuleConfig
from animatediff.pipeline import official_scheduler
from animatediff.planner import with_family
from animatediff.sampling.options import ContextSettings
from animatediff.settings import ModelSpec
from helpers import (
    TOKENIZER,
    assert_bfloat16_close,
    random_motion_module,
    tiny_image_encoder,
    tiny_text_encoder,
    tiny_vae,
)

SDXL_WIDTHS = (32, 64, 64)  # SDXL's three levels, its block types and size embedding, made tiny


def tiny_sdxl_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=SDXL_WIDTHS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        transformer_layers_per_block=(1, 1, 2),
        attention_head_dim=(2, 4, 8),
        use_linear_projection=True,
        cross_attention_dim=64,  # the two encoders' hidden states side by side (32 + 32)
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six size ids + the pooled projection
        norm_num_groups=32,
    ).eval()


def tiny_projection_encoder(seed: int = 1) -> CLIPTextModelWithProjection:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=514,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
        projection_dim=32,
    )
    return CLIPTextModelWithProjection(config).eval()


def save_tiny_sdxl_base(folder):
    """A diffusers folder of a tiny SDXL-shaped image model, both text encoders and tokenizers."""
    tiny_sdxl_unet().save_pretrained(folder / "unet")
    tiny_vae(2).save_pretrained(folder / "vae")
    tiny_text_encoder(3).save_pretrained(folder / "text_encoder")
    tiny_projection_encoder(4).save_pretrained(folder / "text_encoder_2")
    for name in ("tokenizer", "tokenizer_2"):
        shutil.copytree(TOKENIZER, folder / name)
    return folder


@pytest.fixture(scope="module")
def sdxl_base(tmp_path_factory):
    return save_tiny_sdxl_base(tmp_path_factory.mktemp("sdxl") / "base")


@pytest.fixture(scope="module")
def sdxl_module(tmp_path_factory):
    config = MotionModuleConfig(block_out_channels=SDXL_WIDTHS, layers_per_block=2, mid_block=False)
    module = random_motion_module(config, seed=5, std=0.05)
    path = tmp_path_factory.mktemp("sdxl_module") / "mm_sdxl_v10_beta.ckpt"  # as released: a pickled state dict
    torch.save(module.state_dict(), path)
    return path


def animatediff_sdxl(folder, ours, **extra) -> AnimateDiffSDXLPipeline:
    """diffusers' AnimateDiffSDXLPipeline on the SDXL base with our motion module as a `MotionAdapter`."""
    base = load_base(folder)
    reference = AnimateDiffSDXLPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        text_encoder_2=base.text_encoder_2,
        tokenizer=base.tokenizer,
        tokenizer_2=base.tokenizer_2,
        unet=base.unet,
        scheduler=official_scheduler(),
        motion_adapter=to_motion_adapter(ours.unet.motion_module),
        **extra,
    )
    # diffusers' `UNetMotionModel.from_unet2d` leaves SDXL's `add_embedding` (pooled text and size ids) at its
    # random initialization (noted in the review of diffusers PR #6721); copy it over as a correct conversion would
    reference.unet.add_embedding.load_state_dict(base.unet.add_embedding.state_dict())
    reference.set_progress_bar_config(disable=True)
    return reference


@pytest.mark.parametrize("negative", ["blurry", None])
def test_frames_match_diffusers_animatediff_sdxl_pipeline(sdxl_base, sdxl_module, negative):
    spec = with_family(ModelSpec(base=sdxl_base, motion_module=sdxl_module))
    assert (spec.family, spec.family_rule) == ("sdxl", "weights: levels 3")
    ours = build_pipeline(spec)
    assert ours.sdxl and ours.unet.motion_module.config.norm_over_frames  # pooled, as the SDXL beta runs it
    reference = animatediff_sdxl(sdxl_base, ours)
    settings = dict(num_frames=4, height=32, width=48, guidance_scale=6.0)
    expected = reference(
        "a red circle",
        negative_prompt=negative,
        num_inference_steps=3,
        output_type="np",
        generator=torch.Generator("cpu").manual_seed(7),
        **settings,
    ).frames[0]
    video = ours.generate("a red circle", negative_prompt=negative or "", steps=3, seed=7, progress=False, **settings)
    frames = video.permute(0, 2, 3, 1).numpy()
    assert frames.shape == expected.shape == (4, 32, 48, 3) and frames.std() > 0.01
    assert np.abs(frames - expected).max() < 1e-4


def test_the_cli_runs_an_sdxl_base_at_its_own_size_and_refuses_mixed_parts(
    tmp_path, sdxl_base, sdxl_module, tiny_base, tiny_motion_module_file, capsys
):
    output = tmp_path / "sdxl.gif"
    assert (
        main(
            [
                "generate",
                "a red circle",
                "--base",
                str(sdxl_base),
                "--motion-module",
                str(sdxl_module),
                "--frames",
                "3",
                "--steps",
                "2",
                "--seed",
                "1",
                "-o",
                str(output),
            ]
        )
        == 0
    )
    settings = json.loads((tmp_path / "sdxl.gif.json").read_text())
    assert (settings["width"], settings["height"], settings["family"]["name"]) == (16, 16, "sdxl")  # 8 latents × 2
    assert read_video(output).shape == (3, 16, 16, 3)
    assert (
        main(
            [
                "generate",
                "a red circle",
                "--base",
                str(sdxl_base),
                "--motion-module",
                str(sdxl_module),
                "--frames",
                "3",
                "--steps",
                "2",
                "--seed",
                "1",
                "--dtype",
                "bfloat16",
                "-o",
                str(tmp_path / "bf16.gif"),
            ]
        )
        == 0
    )
    assert_bfloat16_close(read_video(output), read_video(tmp_path / "bf16.gif"))
    capsys.readouterr()
    common = ["--frames", "3", "--steps", "2", "-o", str(tmp_path / "x.gif")]
    assert (
        main(["generate", "a", "--base", str(sdxl_base), "--motion-module", str(tiny_motion_module_file), *common]) == 2
    )
    assert "an SD1.x motion module (two levels) on an SDXL base" in capsys.readouterr().err
    assert main(["generate", "a", "--base", str(tiny_base), "--motion-module", str(sdxl_module), *common]) == 2
    assert "an SDXL motion module (three levels) on an SD1.x base" in capsys.readouterr().err
    assert (
        main(["generate", "a", "--base", str(sdxl_base), "--motion-module", str(sdxl_module), "--width", "35", *common])
        == 2
    )
    assert "multiples of 2" in capsys.readouterr().err


def test_an_sdxl_lora_merges_into_the_sdxl_base_and_changes_the_frames(tmp_path, sdxl_base, sdxl_module):
    from safetensors.torch import save_file

    from animatediff.lora import TrainableLoRA, attention_projections

    unet = load_base(sdxl_base).unet
    lora = TrainableLoRA(unet, attention_projections(unet, ("attn1", "attn2")), 2)
    torch.manual_seed(0)
    for up in lora.up:
        torch.nn.init.normal_(up.weight, std=0.5)
    path = tmp_path / "style_xl.safetensors"
    save_file({k: v.contiguous() for k, v in lora.diffusers_state_dict().items()}, str(path))
    common = [
        "generate",
        "a red circle",
        "--base",
        str(sdxl_base),
        "--motion-module",
        str(sdxl_module),
        "--frames",
        "3",
        "--steps",
        "2",
        "--seed",
        "1",
    ]
    assert main([*common, "-o", str(tmp_path / "plain.gif")]) == 0
    assert main([*common, "--lora", str(path), "-o", str(tmp_path / "lora.gif")]) == 0
    plain, styled = read_video(tmp_path / "plain.gif"), read_video(tmp_path / "lora.gif")
    assert np.abs(plain.astype(int) - styled).mean() > 1


# ---------------------------------------------------------------------------------------------------
# Prompt maps, IP-Adapters and ControlNets on SDXL
#
# diffusers' AnimateDiffSDXLPipeline takes an IP-Adapter image and is the reference for it. It has no prompt
# travel and no ControlNet, and diffusers has no AnimateDiff SDXL ControlNet pipeline: for those the reference
# is diffusers' SDXL image pipelines (StableDiffusionXLPipeline with per-frame embeddings,
# StableDiffusionXLControlNetPipeline) run on the clip's frames as one batch, against our clip without a
# motion module (`--motion-module none`), where the frames are independent.

FRAMES, SEED = 5, 7
XL_SIZE = dict(height=32, width=48)


def clip_noise(frames: int, factor: int) -> torch.Tensor:
    """The noise contract's draw for a clip, as a batch of frame latents (f c h w) for an image pipeline."""
    generator = torch.Generator("cpu").manual_seed(SEED)
    noise = torch.randn((1, 4, frames, XL_SIZE["height"] // factor, XL_SIZE["width"] // factor), generator=generator)
    return rearrange(noise, "1 c f h w -> f c h w")


def still_pipeline(folder) -> AnimateDiffPipeline:
    """Our pipeline on the SDXL base without a motion module: every frame an SDXL image."""
    return AnimateDiffPipeline.from_components(load_base(folder), None)


def our_xl_frames(pipeline, prompt="a red circle", conditions=None, **settings) -> np.ndarray:
    settings = {"num_frames": FRAMES, "negative_prompt": "blurry", "guidance_scale": 6.0, **XL_SIZE, **settings}
    clip = pipeline.generate(prompt, steps=3, seed=SEED, progress=False, conditions=conditions, **settings)
    return clip.permute(0, 2, 3, 1).numpy()


def image_pipeline(kind, folder, **extra):
    """diffusers' SDXL image pipeline `kind` on the SDXL base (`extra`: its ControlNet)."""
    base = load_base(folder)
    parts = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet")
    pipeline = kind(**{name: getattr(base, name) for name in parts}, scheduler=official_scheduler(), **extra)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def image_pipeline_frames(pipeline, factor: int, **inputs) -> np.ndarray:
    """An SDXL image pipeline's images with the clip's frames as its batch, from the clip's noise."""
    latents = clip_noise(FRAMES, factor)
    output = pipeline(num_inference_steps=3, guidance_scale=6.0, latents=latents, output_type="np", **XL_SIZE, **inputs)
    return output.images


def test_an_sdxl_prompt_map_travels_the_pooled_embeddings_with_the_text_states(sdxl_base, sdxl_module):
    """Per frame, the text states and the pooled embeddings both interpolated between the keyframes as
    diffusers' FreeNoise prompt travel interpolates text states (`_lerp`), then diffusers' SDXL pipeline."""
    pipeline = still_pipeline(sdxl_base)
    travel = ((0, "a red circle"), (3, "a blue square"))
    reference = image_pipeline(StableDiffusionXLPipeline, sdxl_base)
    states, negative, pooled, negative_pooled = reference.encode_prompt(
        [text for _, text in travel], negative_prompt=["blurry"] * 2, device="cpu"
    )
    lerp = partial(AnimateDiffFreeNoiseMixin._lerp, None)
    per_frame = [torch.cat([lerp(0, 3, s[:1], s[1:]), s[1:]]) for s in (states, pooled)]  # frames 0-3, then 4
    expected = image_pipeline_frames(
        reference,
        pipeline.vae_scale_factor,
        prompt_embeds=per_frame[0],
        pooled_prompt_embeds=per_frame[1],
        negative_prompt_embeds=negative[:1].expand(FRAMES, -1, -1),
        negative_pooled_prompt_embeds=negative_pooled[:1].expand(FRAMES, -1),
    )
    frames = our_xl_frames(pipeline, prompt_map=travel)
    assert frames.shape == expected.shape == (FRAMES, 32, 48, 3)
    assert np.abs(frames - expected).max() < 1e-4
    windowed = our_xl_frames(pipeline, prompt_map=travel, context=ContextSettings(length=3, overlap=1))
    assert np.abs(windowed - expected).max() < 1e-4  # each window gets its own frames' pooled embeddings
    assert np.abs(frames[-1] - our_xl_frames(pipeline)[-1]).mean() > 1e-3  # the second prompt changed the end
    video = build_pipeline(with_family(ModelSpec(base=sdxl_base, motion_module=sdxl_module)))
    same = ((0, "a red circle"), (2, "a red circle"))
    assert np.abs(our_xl_frames(video, prompt_map=same) - our_xl_frames(video)).max() < 1e-5


def tiny_ip_adapter_plus(unet, image_width: int = 32, hidden: int = 32, queries: int = 4) -> dict[str, torch.Tensor]:
    """An IP-Adapter Plus in its release layout (`ip-adapter-plus_sdxl_vit-h`: a four-layer resampler of the
    image encoder's hidden states into `queries` tokens as wide as the UNet's cross-attention, one 64-wide
    head; key/value weights per cross-attention), every weight random."""
    generator = torch.Generator().manual_seed(6)

    def weight(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * shape[-1] ** -0.5

    def norm(name: str, width: int) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": 1 + 0.1 * torch.randn(width, generator=generator), f"{name}.bias": torch.zeros(width)}

    width, inner = unet.config.cross_attention_dim, 64
    proj = {"latents": weight(1, queries, hidden), "proj_in.weight": weight(hidden, image_width)}
    proj |= {"proj_in.bias": torch.zeros(hidden), "proj_out.weight": weight(width, hidden)}
    proj |= {"proj_out.bias": torch.zeros(width), **norm("norm_out", width)}
    for layer in range(4):
        attention, ff = f"layers.{layer}.0", f"layers.{layer}.1"
        proj |= {**norm(f"{attention}.norm1", hidden), **norm(f"{attention}.norm2", hidden)}
        proj |= {
            f"{attention}.to_q.weight": weight(inner, hidden),
            f"{attention}.to_kv.weight": weight(2 * inner, hidden),
        }
        proj |= {f"{attention}.to_out.weight": weight(hidden, inner), **norm(f"{ff}.0", hidden)}
        proj |= {f"{ff}.1.weight": weight(4 * hidden, hidden), f"{ff}.3.weight": weight(hidden, 4 * hidden)}
    state = {f"image_proj.{key}": value for key, value in proj.items()}
    names = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for number, name in enumerate(names):
        inner_width = unet.get_submodule(name.removesuffix(".processor")).to_k.out_features
        for kind in ("to_k_ip", "to_v_ip"):
            state[f"ip_adapter.{2 * number + 1}.{kind}.weight"] = weight(inner_width, width)
    return state


def test_an_sdxl_ip_adapter_plus_reproduces_diffusers_animatediff_sdxl_pipeline(sdxl_base, sdxl_module):
    encoder, processor = tiny_image_encoder()
    image = np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    state = tiny_ip_adapter_plus(load_base(sdxl_base).unet)
    ours = build_pipeline(with_family(ModelSpec(base=sdxl_base, motion_module=sdxl_module)))
    reference = animatediff_sdxl(sdxl_base, ours, image_encoder=encoder, feature_extractor=processor)
    parts = {
        part: {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(part)}
        for part in ("image_proj", "ip_adapter")
    }
    reference.load_ip_adapter(parts, subfolder="", weight_name="", image_encoder_folder=None)
    reference.set_ip_adapter_scale(0.7)
    settings = dict(num_frames=4, negative_prompt="blurry", guidance_scale=6.0, **XL_SIZE)
    generator = torch.Generator("cpu").manual_seed(SEED)
    expected = reference(
        "a red circle", num_inference_steps=3, generator=generator, output_type="np", ip_adapter_image=image, **settings
    ).frames[0]
    plain = our_xl_frames(ours, num_frames=4)
    load_ip_adapter(ours.unet.unet, state, scale=0.7)
    assert reads_hidden_states(ours.unet.unet)  # Plus: the encoder's penultimate hidden states, resampled
    prompt = image_prompt(encoder, processor, image, hidden_states=True, guidance=True)
    frames = our_xl_frames(ours, conditions=Conditions(image_prompt=prompt), num_frames=4)
    assert frames.shape == expected.shape == (4, 32, 48, 3)
    assert np.abs(frames - expected).max() < 1e-4
    assert np.abs(frames - plain).mean() > 1e-3  # the image prompt changed the clip


def random_sdxl_controlnet(folder, seed: int = 7) -> ControlNetModel:
    """An SDXL ControlNet (pooled text embeddings and size ids: `addition_embed_type` text_time) shaped for the
    tiny SDXL base, every weight random (its zero convolutions too)."""
    controlnet = ControlNetModel.from_unet(load_base(folder).unet, conditioning_embedding_out_channels=(16, 32))
    assert controlnet.config.addition_embed_type == "text_time"
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in controlnet.parameters():
            parameter.normal_(0, 0.05)
    return controlnet.eval()


def control_frames(frames: int) -> np.ndarray:
    """F×32×48×3 uint8: a bar that moves right, over noise."""
    rng = np.random.default_rng(2)
    clip = rng.integers(0, 64, (frames, 32, 48, 3), dtype=np.uint8)
    for frame in range(frames):
        clip[frame, 8:24, 6 * frame : 6 * frame + 10] = 255
    return clip


@pytest.mark.parametrize("guess_mode", [False, True])
def test_an_sdxl_controlnet_reproduces_diffusers_sdxl_controlnet_pipeline_per_frame(sdxl_base, guess_mode):
    controlnet, control = random_sdxl_controlnet(sdxl_base), control_frames(FRAMES)
    pipeline = still_pipeline(sdxl_base)
    reference = image_pipeline(StableDiffusionXLControlNetPipeline, sdxl_base, controlnet=controlnet)
    expected = image_pipeline_frames(
        reference,
        pipeline.vae_scale_factor,
        prompt=["a red circle"] * FRAMES,
        negative_prompt=["blurry"] * FRAMES,
        image=[Image.fromarray(frame) for frame in control],
        controlnet_conditioning_scale=0.8,
        control_guidance_start=0.2,
        control_guidance_end=0.9,
        guess_mode=guess_mode,
    )
    frames_in = torch.from_numpy(control).permute(0, 3, 1, 2).float() / 255
    inputs = ControlNetInput(controlnet, frames_in, scale=0.8, start=0.2, end=0.9, guess_mode=guess_mode)
    frames = our_xl_frames(pipeline, conditions=Conditions(controlnets=(inputs,)))
    assert frames.shape == expected.shape == (FRAMES, 32, 48, 3)
    assert np.abs(frames - expected).max() < 1e-4
    assert np.abs(frames - our_xl_frames(pipeline)).mean() > 1e-3  # the ControlNet changed the clip


# ---------------------------------------------------------------------------------------------------
# The command line: every control on an SDXL base; parts made for SD1.x refused


@pytest.fixture(scope="module")
def xl_inputs(tmp_path_factory, sdxl_base, tiny_base):
    """An SDXL ControlNet folder with its control video, an SDXL IP-Adapter Plus with its image encoder folder
    and image; an SD1.x ControlNet and IP-Adapter for the tiny SD1.x base."""
    from safetensors.torch import save_file

    from animatediff.export import write_video
    from test_control import tiny_ip_adapter

    folder = tmp_path_factory.mktemp("xl_inputs")
    random_sdxl_controlnet(sdxl_base).save_pretrained(folder / "controlnet")
    write_video(control_frames(3), folder / "edges")
    encoder, processor = tiny_image_encoder()
    encoder.save_pretrained(folder / "image_encoder")
    processor.save_pretrained(folder / "image_encoder")
    save_file(tiny_ip_adapter_plus(load_base(sdxl_base).unet), folder / "ip-adapter-plus_sdxl.safetensors")
    Image.fromarray(control_frames(1)[0]).save(folder / "look.png")
    sd1 = load_base(tiny_base).unet
    ControlNetModel.from_unet(sd1, conditioning_embedding_out_channels=(16, 32)).save_pretrained(folder / "sd1-cn")
    save_file(tiny_ip_adapter(sd1), folder / "sd1-ip.safetensors")
    return folder


def xl_cli(sdxl_base, sdxl_module, output, *extra) -> int:
    models = ["--base", str(sdxl_base), "--motion-module", str(sdxl_module)]
    small = ["--frames", "3", "--steps", "2", "--seed", "1", "-o", str(output)]
    return main(["generate", "a red circle", *models, *small, *extra])


def test_the_cli_runs_an_sdxl_clip_with_a_prompt_map_a_controlnet_and_an_ip_adapter(
    tmp_path, sdxl_base, sdxl_module, xl_inputs, capsys
):
    flags = ["--prompt-at", "2:a blue square", "--controlnet", f"{xl_inputs / 'controlnet'}:0.7"]
    flags += ["--control-video", str(xl_inputs / "edges"), "--ip-image", str(xl_inputs / "look.png")]
    flags += ["--ip-adapter", f"{xl_inputs / 'ip-adapter-plus_sdxl.safetensors'}:0.6"]
    assert xl_cli(sdxl_base, sdxl_module, tmp_path / "all.gif", *flags) == 0
    assert read_video(tmp_path / "all.gif").shape == (3, 16, 16, 3)
    settings = json.loads((tmp_path / "all.gif.json").read_text())
    assert settings["prompt_map"] == {"0": "a red circle", "2": "a blue square"}
    assert settings["controlnets"] == [
        {"path": str(xl_inputs / "controlnet"), "scale": 0.7, "video": str(xl_inputs / "edges")}
    ]
    assert settings["ip_adapter"] == {"path": str(xl_inputs / "ip-adapter-plus_sdxl.safetensors"), "scale": 0.6}
    capsys.readouterr()
    assert main(["inspect", str(xl_inputs / "controlnet")]) == 0
    assert "a ControlNet (diffusers layout)\n  folder: True\n  family: sdxl" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (
            ["--controlnet", "{inputs}/sd1-cn", "--control-video", "{inputs}/edges"],
            "is another base model's ControlNet (widths (32, 64), text width 32); the base model's UNet has widths "
            "(32, 64, 64)",
        ),
        (
            ["--ip-adapter", "{inputs}/sd1-ip.safetensors", "--ip-image", "{inputs}/look.png"],
            "sd1-ip.safetensors: made for an image model whose cross-attention reads 32 wide; this base's reads "
            "64 wide",
        ),
    ],
)
def test_sd1_controls_on_an_sdxl_base_exit_2_with_one_sentence(
    tmp_path, sdxl_base, sdxl_module, xl_inputs, capsys, flags, said
):
    flags = [flag.format(inputs=xl_inputs) for flag in flags]
    assert xl_cli(sdxl_base, sdxl_module, tmp_path / "o.gif", *flags) == 2
    error = capsys.readouterr().err
    assert said in error and error.count("\n") == 1 and "Traceback" not in error, error
    assert not (tmp_path / "o.gif").exists()


def test_the_library_refuses_sparsectrl_and_controlnets_made_for_another_base(sdxl_base, tiny_base):
    from animatediff.control.sparsectrl import SparseCtrlInput
    from animatediff.errors import AnimateDiffError

    pipeline = still_pipeline(sdxl_base)
    sparse = SparseCtrlInput(torch.nn.Identity(), torch.zeros(1, 4, 16, 24), (0,), FRAMES)
    with pytest.raises(AnimateDiffError, match="SparseCtrl encoders are made for SD1.5"):
        our_xl_frames(pipeline, conditions=Conditions(sparsectrl=sparse))
    sd1 = ControlNetModel.from_unet(load_base(tiny_base).unet, conditioning_embedding_out_channels=(16, 32))
    control = ControlNetInput(sd1, torch.zeros(FRAMES, 3, 32, 48))
    with pytest.raises(AnimateDiffError, match="ControlNet 1 is made for another image model .text width 32.; the "):
        our_xl_frames(pipeline, conditions=Conditions(controlnets=(control,)))
