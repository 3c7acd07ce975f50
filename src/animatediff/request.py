"""What a user may ask of a clip, each setting declared once.

A `Request` holds the settings a front end was given, as it was given them (None, an empty tuple or False:
not said): model references as written (a path or an embedded model's short name), numbers and choices
checked against their declaration. Every front end fills one: the command line from its flags (the
options are made from the declarations), prompt configs from their keys (the same names, plus the
official ones), the web app from its JSON body (its schema is made from the declarations too).
`animatediff.planner` turns a request into checked, complete `Settings`; the output's sidecar records
the request beside what it resolved to.

Adding a setting is one `setting(...)` field here, and its use where it acts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, get_args

from animatediff.errors import ConfigError
from animatediff.families import FAMILIES, PIA_DEFAULT, PIA_PRESETS, SCHEDULERS
from animatediff.sampling.clip import MAX_FREE_INIT, MAX_SEED
from animatediff.sampling.options import Fuse, Interpolation, Schedule, Scope
from animatediff.sampling.speed import FAST_HELP, MAX_DEPTH, MAX_INTERVAL, CacheMode, CacheSchedule

RANDOM_SEED = -1  # as in the official prompt configs: draw one (and record it)
MAX_FRAMES = 4096  # frames per clip: the longest clip measured (bench/memory.py); a longer one runs for days
LORA_SCALE = 10.0  # |scale| of an image LoRA or MotionLoRA: beyond it the weights only break
ADAPTER_SCALE = 2.0  # |scale| of a domain adapter, ControlNet, IP-Adapter or SparseCtrl
DTYPES = ("float32", "float16", "bfloat16")
FORMATS = ("gif", "mp4", "webm", "webp", "png")
WHOLE_GROUPS = {"time": "time controls", "control": "control"}  # replaced whole by flags over a config entry

# the kinds of value a setting holds (how its text is read on the command line, its data in a config or
# request, and its type in the web app's schema)
TEXT, WHOLE, NUMBER, SEED, SWITCH, CHOICE = "text", "whole", "number", "seed", "switch", "choice"
MODEL, SCALED, INPUT = "model", "scaled", "input"  # a model reference; one with a scale; a user's image/video
KEYFRAMES, FRAME_INPUT, FRAME_LIST = "keyframes", "frame_input", "frame_list"  # FRAME:TEXT, FRAME:PATH, I,J,…
PER_FRAME, PER_STEP = "per_frame", "per_step"  # a number or FRAME:VALUE,… (interpolated); FRACTION:VALUE,… of the steps
MOTION_SCALE, MOTION_EFFECT = 10.0, 2.0  # the largest motion scale and effect taken
MAX_UPSCALE = 8.0  # the largest upscale factor: 512² → 4096², beyond what a second pass fits on one GPU
MIN_FACTOR, MAX_FACTOR = 2, 16  # frame interpolation: output frames per input frame (K − 1 new between each pair)


@dataclass(frozen=True)
class Declared:
    """One setting: what it holds, its bounds, its help, and where it appears. `flag`: its command-line
    option (None: not one); `repeat`: given any number of times; `page`: the web app's page offers it;
    `api`: the web app's requests may give it; `group`: the command line's group, and for prompt
    configs the groups `time` and `control` that flags replace whole."""

    help: str
    kind: str = TEXT
    group: str = "sampling"
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    repeat: bool = False
    flag: str | None = ""  # "": `--` and the name with dashes
    metavar: str | None = None
    api: bool = True
    page: bool = False
    default: Any = None  # what not saying it means (shown in the help; the planner applies it)


def setting(help: str, kind: str = TEXT, **options) -> Any:
    """A `Request` field with its declaration."""
    declared = Declared(help, kind, **options)
    empty = () if declared.repeat else False if kind == SWITCH else None
    return field(default=empty, metadata={"declared": declared})


def _scale_help(what: str, bound: float) -> str:
    return f"{what} (its scale after ':', |scale| ≤ {bound:g}, default 1)"


@dataclass(frozen=True, kw_only=True)
class Request:
    """Every setting of a clip or a run, as a front end was given it."""

    prompt: str | None = setting("what the video shows", flag=None, page=True)
    # models
    base: str | None = setting(
        "the SD1.x or SDXL image model: a diffusers folder or a single file (default: the embedded 'shapes')",
        MODEL,
        group="models",
        page=True,
    )
    dreambooth: str | None = setting(
        "personalized model: single-file checkpoint (LDM layout) or diffusers (UNet) folder",
        MODEL,
        group="models",
        page=True,
    )
    loras: tuple[tuple[str, float], ...] = setting(
        _scale_help("image LoRA (kohya/civitai or diffusers) or an embedded one's name, repeatable", LORA_SCALE),
        SCALED,
        group="models",
        repeat=True,
        high=LORA_SCALE,
        flag="--lora",
        metavar="PATH[:SCALE]",
        page=True,
    )
    motion_module: str | None = setting(
        "motion module file or MotionAdapter folder, or 'none' (default with the embedded base: 'shapes-motion')",
        MODEL,
        group="models",
        page=True,
    )
    family: str | None = setting(
        "the motion module's release, for its sampling preset and how it runs (default: decided from its "
        "weights, metadata or file name; README, 'Model families')",
        CHOICE,
        group="models",
        choices=tuple(FAMILIES),
        page=True,
    )
    pia: str | None = setting(
        "a PIA checkpoint (pia.ckpt: motion modules and an image-conditioning conv_in), instead of --motion-module: "
        "animates the --init-image",
        MODEL,
        group="models",
        page=True,
    )
    motion_loras: tuple[tuple[str, float], ...] = setting(
        _scale_help("MotionLoRA, repeatable (they compose by weighted sum)", LORA_SCALE),
        SCALED,
        group="models",
        repeat=True,
        high=LORA_SCALE,
        flag="--motion-lora",
        metavar="PATH[:SCALE]",
        page=True,
    )
    domain_adapter: str | None = setting(
        "domain adapter LoRA (e.g. v3_sd15_adapter.ckpt)", MODEL, group="models", page=True
    )
    domain_adapter_scale: float | None = setting(
        f"the domain adapter's α (0 removes it; |α| ≤ {ADAPTER_SCALE:g})",
        NUMBER,
        group="models",
        low=-ADAPTER_SCALE,
        high=ADAPTER_SCALE,
        metavar="A",
        default=1.0,
        page=True,
    )
    vae: str | None = setting(
        "an autoencoder replacing the base's: a diffusers AutoencoderKL folder or a single file (.safetensors/.pt, "
        "LDM keys), e.g. vae-ft-mse-840000-ema-pruned",
        MODEL,
        group="models",
    )
    embeddings: tuple[str, ...] = setting(
        "a folder of textual-inversion embeddings (.pt, .bin, .safetensors), repeatable: each is a word named after "
        "its file stem, for prompts and negative prompts (e.g. easynegative)",
        INPUT,
        group="models",
        repeat=True,
        metavar="DIR",
        api=False,  # the app's own: its models folder's embeddings/
    )
    inference_config: str | None = setting(
        "an official inference config (YAML): the motion module's settings and the noise schedule",
        INPUT,
        group="models",
        api=False,
    )
    # sampling
    negative_prompt: str | None = setting("what to steer away from (default: nothing)", page=True)
    prompt_syntax: str | None = setting(
        "how prompts are read: a1111 ((word:1.2) weights, [word], BREAK, any length in 75-token chunks), comfy "
        "(ComfyUI's weighting of the same syntax) or plain (the text as written, cut at the encoder's length) "
        "(default: a1111; plain for official prompt configs)",
        CHOICE,
        choices=("a1111", "comfy", "plain"),
    )
    frames: int | None = setting(
        f"clip length in frames (at most {MAX_FRAMES})", WHOLE, low=1, high=MAX_FRAMES, default=16, page=True
    )
    width: int | None = setting("default: the image model's own size (512 for SD1.5)", WHOLE, low=1, page=True)
    height: int | None = setting("default: the image model's own size", WHOLE, low=1, page=True)
    steps: int | None = setting("denoising steps (default: the family's; 25 for v1-v3)", WHOLE, low=1, page=True)
    scheduler: str | None = setting(
        "the sampler, on the release's own noise schedule (default: the family's; ddim, the official settings, "
        "for v1-v3)",
        CHOICE,
        choices=tuple(SCHEDULERS),
        page=True,
    )
    guidance_scale: float | None = setting(
        "classifier-free guidance; 1 or less turns it off (default: the family's; 7.5 for v1-v3)",
        NUMBER,
        low=0,
        high=100,
        page=True,
    )
    seed: int | None = setting("initial-noise seed; -1 or none: a random one, recorded", SEED, page=True)
    clip_skip: int | None = setting(
        "CLIP skip as A1111 counts it: the text encoder's N-th layer from the end (1: the last, the official "
        "states; 2: the one before it, what many anime models expect)",
        WHOLE,
        low=1,
        high=12,
        metavar="N",
        default=1,
    )
    # long videos and time
    context_length: int | None = setting(
        "frames per context window (default: 16)", WHOLE, group="time", low=2, high=MAX_FRAMES, page=True
    )
    context_overlap: int | None = setting(
        "frames shared by neighbouring windows (default: 4)", WHOLE, group="time", low=0, high=MAX_FRAMES, page=True
    )
    context_schedule: str | None = setting(
        "uniform: windows side by side; looped: windows wrapping around the end (default: uniform)",
        CHOICE,
        group="time",
        choices=get_args(Schedule),
    )
    context_fuse: str | None = setting(
        "how overlapping windows are averaged (default: pyramid)", CHOICE, group="time", choices=get_args(Fuse)
    )
    context_scope: str | None = setting(
        "unet: every layer sees one window; motion: only the motion modules are windowed, as diffusers' "
        "FreeNoise (default: unet)",
        CHOICE,
        group="time",
        choices=get_args(Scope),
    )
    noise_shuffle: bool = setting(
        "FreeNoise: later windows start from a shuffle of the first window's noise", SWITCH, group="time"
    )
    loop: bool = setting("a closed loop: the last frame flows into the first", SWITCH, group="time", page=True)
    free_init: int | None = setting(
        f"FreeInit: sample N times (1-{MAX_FREE_INIT}), each from the last result's low frequencies",
        WHOLE,
        group="time",
        low=1,
        high=MAX_FREE_INIT,
        metavar="N",
    )
    prompt_map: tuple[tuple[int, str], ...] = setting(
        "prompt travel: the prompt from this frame on (repeatable; negative frames count from the end; PROMPT is "
        "frame 0's unless 0: is given)",
        KEYFRAMES,
        group="time",
        repeat=True,
        flag="--prompt-at",
        metavar="FRAME:TEXT",
        page=True,
    )
    prompt_interpolation: str | None = setting(
        "how text states change between keyframes",
        CHOICE,
        group="time",
        choices=get_args(Interpolation),
        default="linear",
    )
    motion_scale: float | tuple[tuple[int, float], ...] | None = setting(
        "how much the clip moves: the motion modules' temporal attention scale multiplied (as "
        f"ComfyUI-AnimateDiff-Evolved's scale; 0 to {MOTION_SCALE:g}, above 1 more motion), one number or per frame "
        "FRAME:S,… interpolated linearly between the frames given (default: 1)",
        PER_FRAME,
        group="time",
        low=0,
        high=MOTION_SCALE,
        metavar="S|FRAME:S,…",
        page=True,
    )
    motion_effect: float | tuple[tuple[int, float], ...] | None = setting(
        "how much the motion modules act: their output blended with their input (as ComfyUI-AnimateDiff-Evolved's "
        f"effect; 0: the image model alone, 0 to {MOTION_EFFECT:g}), one number or per frame FRAME:E,… interpolated "
        "linearly (default: 1)",
        PER_FRAME,
        group="time",
        low=0,
        high=MOTION_EFFECT,
        metavar="E|FRAME:E,…",
        page=True,
    )
    motion_scale_steps: tuple[tuple[float, float], ...] | None = setting(
        "the motion scale over the denoising steps: from that fraction of the steps on it is multiplied by S "
        "(before the first fraction given: by 1)",
        PER_STEP,
        group="time",
        low=0,
        high=MOTION_SCALE,
        metavar="F:S,…",
    )
    # video to video, ControlNet, IP-Adapter, image to video
    init_video: str | None = setting(
        "restyle this video: its frames are noised to --strength and denoised", INPUT, group="control", page=True
    )
    strength: float | None = setting(
        "how much of the init video is redrawn, in (0, 1] (default: 0.6; 1: all of it)",
        NUMBER,
        group="control",
        page=True,
    )
    stride: int | None = setting(
        "take every n-th frame of the init and control videos (default: 1)", WHOLE, group="control", low=1
    )
    mask_video: str | None = setting(
        "redraw only part of the init video: a mask video or folder of frames, white where it is redrawn, black "
        "where the input is kept (as diffusers and A1111 read masks); the init video's size or shape (it is resized "
        "with it) and at least as many frames",
        INPUT,
        group="control",
        metavar="PATH",
    )
    mask: str | None = setting(
        "one mask image for every frame of the init video (white: redrawn, black: kept)",
        INPUT,
        group="control",
        metavar="PATH",
        page=True,
    )
    mask_blur: float | None = setting(
        "outside the mask the output is the input's own pixels, pasted back over an edge blurred by this many pixels "
        "(a Gaussian's standard deviation; default: 4 at 512², A1111's mask blur, in proportion to the clip's shorter "
        "side; 0: a hard edge)",
        NUMBER,
        group="control",
        low=0,
        high=64,
        metavar="PX",
    )
    extend: str | None = setting(
        "continue this clip (a video or folder of frames): --frames new frames whose first --extend-overlap are its "
        "last ones, kept; the output is the clip followed by the new frames after the overlap (the clip's size)",
        INPUT,
        group="control",
        metavar="PATH",
    )
    extend_overlap: int | None = setting(
        "frames of the clip the extension starts from, kept (at least 1, fewer than --frames; default: 4; more join "
        "more smoothly: 12 of 16 continue a motion about as the clip moved)",
        WHOLE,
        group="control",
        low=1,
        high=MAX_FRAMES,
        metavar="K",
    )
    extend_guidance: float | None = setting(
        "pull the new frames of an extension toward the kept ones: reconstruction guidance along the gradient of how "
        "far the model's estimate of the kept frames is from them (squared, averaged over the kept frames), with this "
        "weight (0: off, the default; 20 smooths the join, at about 2.5× the time and a backward pass's memory)",
        NUMBER,
        group="control",
        low=0,
        high=1000,
        metavar="W",
    )
    controlnet: tuple[tuple[str, float], ...] = setting(
        _scale_help(
            "a ControlNet made for the base, SD1.5 or SDXL (diffusers folder or single file), repeatable; each "
            "takes the --control-video in the same place",
            ADAPTER_SCALE,
        ),
        SCALED,
        group="control",
        repeat=True,
        high=ADAPTER_SCALE,
        metavar="PATH[:SCALE]",
    )
    control_video: tuple[str, ...] = setting(
        "control frames (edges, pose, depth …) for the ControlNet in the same place",
        INPUT,
        group="control",
        repeat=True,
        metavar="PATH",
    )
    control_start: float | None = setting(
        "fraction of the steps before the ControlNets act (default: 0)", NUMBER, group="control"
    )
    control_end: float | None = setting(
        "fraction of the steps after which they stop (default: 1)", NUMBER, group="control"
    )
    guess_mode: bool = setting("ControlNets see no text (the conditional half)", SWITCH, group="control")
    ip_adapter: tuple[str, float] | None = setting(
        _scale_help(
            "an IP-Adapter made for the base, SD1.5 or SDXL (.safetensors or .bin), steered by --ip-image",
            ADAPTER_SCALE,
        ),
        SCALED,
        group="control",
        high=ADAPTER_SCALE,
        metavar="PATH[:SCALE]",
    )
    ip_image: str | None = setting("the image prompt of --ip-adapter", INPUT, group="control")
    image_encoder: str | None = setting(
        "CLIP vision model folder for --ip-adapter (default: image_encoder/ beside the IP-Adapter file)",
        INPUT,
        group="control",
    )
    init_image: str | None = setting(
        "start the clip from this image (any motion module): blended into each frame's starting latents, less each "
        "frame, then noised to --init-strength; with --pia or an AnimateLCM-I2V motion module, the image they animate",
        INPUT,
        group="control",
        page=True,
    )
    init_strength: float | None = setting(
        "how much of the blend is redrawn, in (0, 1] (default: 0.75)", NUMBER, group="control", page=True
    )
    init_falloff: float | None = setting(
        "the image's weight falls from 1 to 0 over this many frames (default: 32)",
        NUMBER,
        group="control",
        metavar="FRAMES",
    )
    pia_strength: str | None = setting(
        "PIA's motion-strength preset: each frame's affinity to the init image (small, moderate, large motion; loops "
        "back to the image; style transfer) (default: small)",
        CHOICE,
        group="control",
        choices=tuple(PIA_PRESETS),
        default=PIA_DEFAULT,
        metavar="NAME",
        page=True,
    )
    last_image: str | None = setting(
        "end the clip on this image, blended in the same way from the end", INPUT, group="control"
    )
    sparsectrl: tuple[str, float] | None = setting(
        _scale_help(
            "a SparseCtrl encoder (RGB or scribble; official .ckpt/.safetensors or diffusers folder) steered by "
            "keyframes",
            ADAPTER_SCALE,
        ),
        SCALED,
        group="control",
        high=ADAPTER_SCALE,
        metavar="PATH[:SCALE]",
        page=True,
    )
    control_image: tuple[tuple[int, str], ...] = setting(
        "a SparseCtrl keyframe: the image (scribbles: white lines on black) at FRAME (negative: from the end, as "
        "--control-image=-1:PATH), repeatable; cropped to the clip's aspect ratio and resized",
        FRAME_INPUT,
        group="control",
        repeat=True,
        metavar="FRAME:PATH",
        page=True,
    )
    control_latents: str | None = setting(
        "precomputed RGB keyframe latents, (keyframes, 4, h, w) scaled by the VAE's scaling factor, instead of "
        "--control-image",
        INPUT,
        group="control",
        metavar="FILE.npy",
    )
    control_frames: tuple[int, ...] | None = setting(
        "the frames of the --control-latents (default: 0, 1, …)", FRAME_LIST, group="control", metavar="I,J,…"
    )
    normalize_condition_images: bool = setting(
        "turn control images grey and stretch them to [0, 1] (the official key of that name)", SWITCH, group="control"
    )
    controlnet_config: str | None = setting(
        "the official SparseCtrl config (YAML) whose controlnet_additional_kwargs build the encoder",
        INPUT,
        group="control",
        api=False,
    )
    camera_ctrl: str | None = setting(
        "a CameraCtrl file (the release's CameraCtrl.ckpt: pose encoder and pose layers) steering the v3 motion "
        "module along --camera-poses",
        MODEL,
        group="control",
        metavar="PATH",
        page=True,
    )
    camera_poses: str | None = setting(
        "the camera path for --camera-ctrl: a pose file in RealEstate10K's text layout (one line per frame: "
        "timestamp fx fy cx cy 0 0 and a 3×4 world-to-camera matrix), or a preset: static, pan-left, pan-right, "
        "pan-up, pan-down, zoom-in, zoom-out, tilt-up, tilt-down, roll-clockwise, roll-anticlockwise, orbit-left, "
        "orbit-right",
        group="control",
        metavar="FILE|PRESET",
        page=True,
    )
    # finishing
    upscale: float | None = setting(
        f"the hires fix: upscale the clip this many times (1 to {MAX_UPSCALE:g}) after it is made, then denoise it "
        "again at --upscale-strength",
        NUMBER,
        group="finish",
        low=1,
        high=MAX_UPSCALE,
        metavar="S",
        page=True,
    )
    upscaler: str | None = setting(
        "lanczos, latent (the latents resized bicubically; latent-nearest: nearest-exact) or a super-resolution "
        "model file spandrel reads (ESRGAN, Real-ESRGAN, SwinIR …), run in tiles",
        MODEL,
        group="finish",
        metavar="lanczos|latent|PATH",
        default="lanczos",
        page=True,
    )
    upscale_strength: float | None = setting(
        "how much the upscaled clip is redrawn by the second pass (the same prompt, models, seed and controls); 0 "
        "skips it",
        NUMBER,
        group="finish",
        low=0,
        high=1,
        metavar="T",
        default=0.35,
        page=True,
    )
    interpolate: int | None = setting(
        f"frame interpolation: K − 1 new frames between each pair of frames ({MIN_FACTOR}-{MAX_FACTOR}; with --loop "
        "also between the last and the first); the output's fps is multiplied by K unless --fps is given",
        WHOLE,
        group="finish",
        low=MIN_FACTOR,
        high=MAX_FACTOR,
        metavar="K",
        page=True,
    )
    interpolator: str | None = setting(
        "interpolate with a RIFE 4.x flownet.pkl (Practical-RIFE's weights) instead of the built-in optical flow",
        INPUT,
        group="finish",
        metavar="PATH",
        api=False,  # a file of the user's, not an upload
    )
    # output
    output: str | None = setting(
        "output file; its extension picks the format (.gif .mp4 .webm .webp; none: a folder of PNG frames) "
        "(default: outputs/PROMPT-SEED.gif)",
        group="output",
        flag=None,
        api=False,
    )
    format: str | None = setting(
        "format of --output-dir outputs (default: gif)", CHOICE, group="output", choices=FORMATS, page=True
    )
    fps: float | None = setting(
        "frames per second of the video (default: 8; with --init-video, the input's own rate over --stride)",
        NUMBER,
        group="output",
        low=0,
        high=240,
        page=True,
    )
    # speed: doing less per clip (`sampling.speed`, `step_cache`)
    fast: bool = setting(
        "the measured fast preset: "
        + FAST_HELP
        + " (any of them given explicitly wins; docs/results.md, 'Step caching')",
        SWITCH,
        group="speed",
        page=True,
    )
    cache: str | None = setting(
        "step caching: deep (DeepCache: the UNet's deep features reused between full steps), attention "
        "(Pyramid Attention Broadcast: attention outputs reused in the middle steps) or none (default: none)",
        CHOICE,
        group="speed",
        choices=get_args(CacheMode),
    )
    cache_interval: int | None = setting(
        "deep: a full step every N steps; attention: spatial attention computed every N steps, temporal every "
        f"2N, cross-attention every 3N (default: 3; at most {MAX_INTERVAL})",
        WHOLE,
        group="speed",
        low=1,
        high=MAX_INTERVAL,
        metavar="N",
    )
    cache_depth: int | None = setting(
        "deep: the up block whose input is reused, counted from the last (0: the shallowest, the most skipped; "
        "at most the UNet's up blocks less 2) (default: 0)",
        WHOLE,
        group="speed",
        low=0,
        high=MAX_DEPTH,
        metavar="D",
    )
    cache_schedule: str | None = setting(
        "deep: full steps every N (uniform) or denser in the first third of the steps (quadratic, DeepCache's "
        "non-uniform schedule) (default: uniform)",
        CHOICE,
        group="speed",
        choices=get_args(CacheSchedule),
    )
    guidance_end: float | None = setting(
        "classifier-free guidance on the first F of the steps only; after them the conditional half alone runs "
        "(default: 1, every step)",
        NUMBER,
        group="speed",
        low=0,
        high=1,
        metavar="F",
    )
    guidance_reuse: bool = setting(
        "on alternate steps of the second half, compute the conditional half only and take the unconditional "
        "prediction from the last guided step's difference",
        SWITCH,
        group="speed",
    )
    # runtime
    device: str | None = setting(
        "cpu, cuda, cuda:1, mps … (auto: CUDA if present, then an Apple GPU, then the CPU)", group="runtime", api=False
    )
    dtype: str | None = setting(
        "auto: float16 on CUDA; on the CPU bfloat16 where it has AMX or AVX-512 BF16, else float32. float32 is the "
        "path that matches the official implementation's frames",
        CHOICE,
        group="runtime",
        choices=("auto", *DTYPES),
        default="auto",
        api=False,
    )
    compile: bool = setting("torch.compile the UNet (slow first step)", SWITCH, group="runtime", api=False)
    split_guidance: bool = setting(
        "run the unconditional and conditional halves one after the other (less memory)",
        SWITCH,
        group="runtime",
        api=False,
    )

    def __post_init__(self):
        for name, declared in declarations().items():
            value = getattr(self, name)
            for item in value if declared.repeat else (value,):
                check(name, declared, item)

    def given(self) -> dict[str, Any]:
        """The settings that were said, by name."""
        return {name: getattr(self, name) for name in declarations() if said(getattr(self, name))}

    def over(self, entry: Request) -> tuple[Request, tuple[str, ...]]:
        """`entry` (a prompt config's) with every setting said here in its place, and the names of what was
        replaced (the sampling settings said here, and any other the entry said too). A setting of the time or
        control group said here replaces that whole group of the entry."""
        given = self.given()
        groups = [group for group in WHOLE_GROUPS if any(declarations()[name].group == group for name in given)]
        singly = [name for name in given if declarations()[name].group not in groups]
        whole = [name for name, declared in declarations().items() if declared.group in groups]
        merged = replace(entry, **{name: getattr(self, name) for name in [*singly, *whole]})
        named = sorted(
            name for name in singly if declarations()[name].group == "sampling" or said(getattr(entry, name))
        )
        return merged, (*named, *(WHOLE_GROUPS[group] for group in groups))

    def record(self) -> dict[str, Any]:
        """The said settings as the sidecar records them (pairs as lists, keyframes as a mapping)."""
        return {name: _plain(name, value) for name, value in self.given().items()}


def _plain(name: str, value):
    declared = declarations()[name]
    if declared.kind == KEYFRAMES:
        return {str(frame): text for frame, text in value}
    if declared.kind in (SCALED, FRAME_INPUT) and declared.repeat:
        return [list(pair) for pair in value]
    if isinstance(value, tuple):
        return list(value)
    return value


def said(value) -> bool:
    return value is not None and value is not False and value != ()


def declarations() -> dict[str, Declared]:
    """Every setting's declaration, by name, in the order the command line shows them."""
    if not _DECLARED:
        _DECLARED.update({item.name: item.metadata["declared"] for item in fields(Request)})
    return _DECLARED


_DECLARED: dict[str, Declared] = {}


def flag(name: str) -> str | None:
    """The command-line option of a setting (None: it has none)."""
    declared = declarations()[name]
    return "--" + name.replace("_", "-") if declared.flag == "" else declared.flag


def check(name: str, declared: Declared, value) -> None:
    """Refuse a value outside its setting's bounds or choices, naming the setting."""
    if value is None or declared.kind in (TEXT, MODEL, INPUT, SWITCH, FRAME_LIST, KEYFRAMES, FRAME_INPUT):
        return
    if declared.kind in (PER_FRAME, PER_STEP):
        _check_keys(name, declared, value)
        return
    if declared.kind == CHOICE:
        if value not in declared.choices:
            raise ConfigError(f"{name}: expected one of {', '.join(declared.choices)}; got {value!r}.")
        return
    if declared.kind == SEED:
        if value != RANDOM_SEED and not 0 <= value <= MAX_SEED:
            raise ConfigError(f"{name} must be between 0 and 2**64 - 1, or -1 for a random one; got {value}.")
        return
    if declared.kind == SCALED:
        _check_scale(name, value[1], declared.high)
        return
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number; got {value}.")
    low, high = declared.low, declared.high
    if low is not None and value < low or high is not None and value > high:
        bounds = (
            f"between {low:g} and {high:g}"
            if None not in (low, high)
            else f"at least {low:g}"
            if high is None
            else f"at most {high:g}"
        )
        raise ConfigError(f"{name} must be {bounds}; got {value}.")


def _check_keys(name: str, declared: Declared, value) -> None:
    """A number, or (frame or fraction, number) pairs whose positions increase, each number within the bounds."""
    pairs = ((0, value),) if isinstance(value, (int, float)) else value
    where = "frames" if declared.kind == PER_FRAME else "fractions of the steps"
    positions = [position for position, _ in pairs]
    if not pairs or positions != sorted(set(positions)) or positions[0] < 0:
        raise ConfigError(f"{name}: the {where} must be at least 0 and increase; got {positions}.")
    if declared.kind == PER_STEP and positions[-1] > 1:
        raise ConfigError(f"{name}: the fractions of the steps must be between 0 and 1; got {positions[-1]:g}.")
    for _, number in pairs:
        check(name, replace(declared, kind=NUMBER), number)


def _check_scale(name: str, scale: float, bound: float) -> None:
    if not math.isfinite(scale) or abs(scale) > bound:
        raise ConfigError(f"the scale of {name} must be a number between -{bound:g} and {bound:g}; got {scale}.")


# ---------------------------------------------------------------------------------------------------
# Reading a value: from command-line text, and from the data of a prompt config or a request


def from_text(name: str, text: str):
    """A setting's value from its command-line text (`ValueError` with one sentence when it is not one)."""
    kind = declarations()[name].kind
    if kind in (WHOLE, SEED):
        return _whole(text)
    if kind == NUMBER:
        return _number(text)
    if kind == SCALED:
        return path_and_scale(text, strict=True)
    if kind == KEYFRAMES:
        frame, prompt = _leading_frame(text, "FRAME:TEXT")
        if not prompt or not prompt.strip():
            raise ValueError(f"the prompt at keyframe {frame} is empty; expected FRAME:TEXT")
        return frame, prompt.strip()
    if kind == FRAME_INPUT:
        frame, path = _leading_frame(text, "FRAME:PATH")
        if not path:
            raise ValueError(f"the image of keyframe {frame} is missing; expected FRAME:PATH")
        return frame, path
    if kind == FRAME_LIST:
        try:
            return tuple(int(item) for item in text.split(","))
        except ValueError:
            raise ValueError(f"expected whole-number frames separated by commas, got {text!r}") from None
    return _keyed_numbers(kind, text) if kind in (PER_FRAME, PER_STEP) else text


def from_data(name: str, value):
    """A setting's value from a prompt config's or a request's data (YAML/JSON); `ValueError` with one
    sentence when it is not one."""
    declared = declarations()[name]
    if declared.repeat:
        if declared.kind == KEYFRAMES:
            return _keyframes(value)
        items = value if isinstance(value, list) else [value]
        return tuple(_item(declared.kind, item) for item in items)
    if declared.kind == FRAME_LIST:
        return tuple(_item(WHOLE, item) for item in (value if isinstance(value, list) else [value]))
    if declared.kind in (PER_FRAME, PER_STEP):
        return _keyed_data(declared.kind, value)
    return _item(declared.kind, value)


def _keyed_data(kind: str, value):
    """A number or keyed numbers from data: a number (per frame only), `FRAME:VALUE,…` text, a mapping
    `{frame: value}` or a list of [frame, value] pairs (as the sidecar records them)."""
    if isinstance(value, str):
        return _keyed_numbers(kind, value)
    if kind == PER_FRAME and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _scalar(NUMBER, value)
    pairs = value.items() if isinstance(value, dict) else value if isinstance(value, list) else None
    if not pairs or not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in pairs):
        raise ValueError(f"expected {_KEYED_FORM[kind]}, a mapping or a list of pairs, got {brief(value)}")
    return tuple(_keyed_pair(kind, str(position), number) for position, number in pairs)


_KEYED_FORM = {PER_FRAME: "a number or FRAME:VALUE,…", PER_STEP: "FRACTION:VALUE,…"}


def _keyed_numbers(kind: str, text: str):
    """`1.2` (per frame only) or `0:1.0,16:1.3` → the number, or (frame or fraction, number) pairs."""
    if kind == PER_FRAME and ":" not in text:
        return _number(text)
    items = [item.partition(":") for item in text.split(",")]
    if not all(colon for _, colon, _ in items):
        raise ValueError(f"expected {_KEYED_FORM[kind]}, got {text!r}")
    return tuple(_keyed_pair(kind, position.strip(), number.strip()) for position, _, number in items)


def _keyed_pair(kind: str, position: str, number) -> tuple[int | float, float]:
    try:
        at = int(position) if kind == PER_FRAME else float(position)
        value = float(number)
    except (TypeError, ValueError):
        raise ValueError(f"expected {_KEYED_FORM[kind]}, got {position}:{number}") from None
    if not math.isfinite(at) or not math.isfinite(value) or isinstance(number, bool):
        raise ValueError(f"expected finite numbers in {_KEYED_FORM[kind]}, got {position}:{number}")
    return at, value


def _item(kind: str, value):
    if kind in (WHOLE, SEED, NUMBER, SWITCH):
        return _scalar(kind, value)
    if kind == SCALED and isinstance(value, dict):
        if set(value) - {"name", "path", "scale"} or not isinstance(value.get("name", value.get("path")), str):
            raise ValueError(f"expected PATH[:SCALE] or {{path, scale}}, got {brief(value)}")
        return value.get("name", value.get("path")), _scalar(NUMBER, value.get("scale", 1.0))
    if not isinstance(value, str):
        raise ValueError(f"expected a text, got {brief(value)}")
    if kind == SCALED:
        return path_and_scale(value)
    if kind in (KEYFRAMES, FRAME_INPUT):
        frame, colon, rest = value.partition(":")
        if not colon or not frame.strip().lstrip("-").isdigit() or not rest.strip():
            raise ValueError(f"expected FRAME:{'TEXT' if kind == KEYFRAMES else 'PATH'}, got {brief(value)}")
        return int(frame), rest.strip()
    return value


def _scalar(kind: str, value):
    """A whole number, a finite number or a switch from data."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == SWITCH:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {brief(value)}")
        return value
    if kind == NUMBER:
        if not number or not math.isfinite(value):
            raise ValueError(f"expected a number, got {brief(value)}")
        return float(value)
    if not number or not math.isfinite(value) or value != int(value):
        raise ValueError(f"expected a whole number, got {brief(value)}")
    return int(value)


def _keyframes(mapping) -> tuple[tuple[int, str], ...]:
    """`{0: "…", 16: "…"}` (keys numbers or numeric strings; negative ones count from the end)."""
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"expected a mapping of frame numbers to prompts, got {brief(mapping)}")
    keyframes = []
    for frame, text in mapping.items():
        try:
            number = int(frame)
        except (TypeError, ValueError):
            raise ValueError(f"expected whole-number frames, got {brief(frame)}") from None
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"the prompt at frame {number} is {brief(text)}; expected a text")
        keyframes.append((number, text.strip()))
    return tuple(keyframes)


def brief(value, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters: an error quotes what it refused without echoing a whole file."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 14] + " … " + text[-11:]


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {text}")
    return value


def _leading_frame(text: str, form: str) -> tuple[int, str | None]:
    """`FRAME:REST` → (frame, REST; None without a colon); a `ValueError` naming `form` if FRAME is not a
    whole number."""
    frame, colon, rest = text.partition(":")
    try:
        return int(frame), (rest if colon else None)
    except ValueError:
        raise ValueError(f"expected {form} with a whole-number frame, got {text!r}") from None


def path_and_scale(text: str, strict: bool = False) -> tuple[str, float]:
    """`PATH[:SCALE]` → (path, scale); the scale, what follows the last colon, defaults to 1. `strict` (the
    command line): what follows the last colon must be a number; else a path whose own name has a colon is
    taken whole when it is not one."""
    path, colon, scale = text.rpartition(":")
    if not colon or not path or "/" in scale or "\\" in scale:
        return text, 1.0
    try:
        value = float(scale)
    except ValueError:
        if strict:
            raise ValueError(f"{text!r}: the scale after the last ':' must be a number, got {scale!r}") from None
        return text, 1.0
    if not math.isfinite(value):
        raise ValueError(f"{text!r}: the scale must be a finite number, got {scale}")
    return path, value
