"""Step caching: reuse, on a denoising step, what the video UNet computed on an earlier one.

`sampling.speed` decides which steps reuse what; this module does the reusing, as an option of one
denoising run (`StepCacheRun`, made afresh by every run, so every FreeInit round starts empty). Nothing is
stored on the model: for the duration of one video-UNet call, `CacheCall.applied` puts temporary `forward`
overrides (and a pre-hook) on the blocks or attentions it reuses, and takes them away again when the call
ends.

What is kept is keyed by the context window (its frame indices; None: the whole clip) and by the guidance
half (`uncond`, `cond`): a call on the `[uncond; cond]` batch stores each half, so a later call on the
conditional half alone (past `guidance_end`, a reused guidance step, `split_guidance`) finds its own.

- `deep` (DeepCache): on a full step a pre-hook keeps the input of the up block at the cache depth; on a
  cached step the deeper down blocks, the mid block and the deeper up blocks stand aside (their `forward`
  returns placeholders without computing) and the up block before the kept input hands it on, so diffusers'
  own UNet loop runs only conv_in, the shallow down blocks, the shallow up blocks (their motion modules
  included) and conv_out. ControlNet and SparseCtrl residuals still reach the shallow skip connections on
  every step; those of the deeper blocks and the mid block act on full steps only, through the kept features.
- `attention` (Pyramid Attention Broadcast): every spatial self-attention, cross-attention and motion-module
  temporal attention computed in the middle of the schedule keeps its output; on the steps in between its
  `forward` returns the kept output instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from animatediff.errors import AnimateDiffError
from animatediff.motion_module import TemporalAttention
from animatediff.sampling.speed import ATTENTION_KINDS, StepCache, attention_computed, full_steps

Window = tuple[int, ...] | None  # a context window's frame indices; None: every frame of the clip
HALVES = {1: ("cond",), 2: ("uncond", "cond")}  # the guidance halves a batch of 1 or 2 clips holds


def halves_of(batch: int) -> tuple[str, ...]:
    """The guidance halves in a video-UNet batch of `batch` clips (one clip: the conditional half)."""
    return HALVES[batch]


class StepCacheRun:
    """The step cache of one denoising run: the settings, the run's length and what has been kept so far."""

    def __init__(self, settings: StepCache, steps: int):
        self.settings, self.steps = settings, steps
        self.full = full_steps(steps, settings) if settings.mode == "deep" else frozenset()
        self.kept: dict[tuple, torch.Tensor] = {}
        self.computed = defaultdict(int)  # what ran, by kind ("full", "cached"; attention kinds), for the bench

    def call(self, step: int, window: Window, halves: tuple[str, ...]) -> CacheCall:
        """The cache for one video-UNet call at `step` on `window`, batch holding `halves`."""
        kind = {"deep": DeepCacheCall, "attention": AttentionCacheCall}[self.settings.mode]
        return kind(self, step, window, halves)

    def keep(self, name: tuple, halves: tuple[str, ...], window: Window, value: torch.Tensor) -> None:
        """Keep `value` (batch first, the halves outermost) one half at a time."""
        for half, part in zip(halves, value.chunk(len(halves)), strict=True):
            self.kept[(window, half, *name)] = part

    def find(self, name: tuple, halves: tuple[str, ...], window: Window) -> torch.Tensor | None:
        """What was kept under `name` for every one of `halves`, the halves stacked; None if any is missing."""
        parts = [self.kept.get((window, half, *name)) for half in halves]
        return None if any(part is None for part in parts) else torch.cat(parts)


class CacheCall:
    """The cache for one video-UNet call."""

    def __init__(self, run: StepCacheRun, step: int, window: Window, halves: tuple[str, ...]):
        self.run, self.step, self.window, self.halves = run, step, window, halves

    def applied(self, video_unet: nn.Module):
        raise NotImplementedError


def _standing_aside(module: nn.Module, result) -> None:
    """`module`'s forward returns `result` (called with anything) for now; `_back` restores it."""
    module.forward = lambda *args, **kwargs: result


def _back(module: nn.Module) -> None:
    module.__dict__.pop("forward", None)


@contextmanager
def _overridden(modules: list[nn.Module]) -> Iterator[None]:
    try:
        yield
    finally:
        for module in modules:
            _back(module)


def check_depth(unet: nn.Module, depth: int) -> None:
    """Refuse a cache depth this UNet does not have: at least one up block must stand aside."""
    deepest = len(unet.up_blocks) - 2
    if depth > deepest:
        raise AnimateDiffError(
            f"cache depth {depth} is too deep for this UNet: it has {len(unet.up_blocks)} up blocks, so the depth "
            f"can be 0 to {deepest}."
        )


class DeepCacheCall(CacheCall):
    """DeepCache for one call: keep the input of the up block at the cache depth on a full step (or whenever
    it is not kept yet); otherwise reuse it and let the deeper blocks stand aside."""

    def applied(self, video_unet: nn.Module):
        unet = video_unet.unet
        check_depth(unet, self.run.settings.depth)
        entry = len(unet.up_blocks) - 1 - self.run.settings.depth  # the first up block that still runs
        kept = None if self.step in self.run.full else self.run.find(("deep",), self.halves, self.window)
        if kept is None:
            self.run.computed["full"] += 1
            return self._keeping(unet.up_blocks[entry])
        self.run.computed["cached"] += 1
        return self._reusing(unet, entry, kept)

    @contextmanager
    def _keeping(self, up_block: nn.Module) -> Iterator[None]:
        def keep(_module, args, kwargs):
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            self.run.keep(("deep",), self.halves, self.window, hidden)

        handle = up_block.register_forward_pre_hook(keep, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

    def _reusing(self, unet: nn.Module, entry: int, kept: torch.Tensor):
        placeholder = kept.new_zeros(())  # broadcasts with any residual added to it; read by no block that runs
        deep_down = list(unet.down_blocks)[len(unet.up_blocks) - entry :]
        for block in deep_down:
            outputs = len(block.resnets) + len(getattr(block, "downsamplers", None) or [])
            _standing_aside(block, (placeholder, (placeholder,) * outputs))
        _standing_aside(unet.mid_block, placeholder)
        deep_up = list(unet.up_blocks)[:entry]
        for block in deep_up[:-1]:
            _standing_aside(block, placeholder)
        _standing_aside(deep_up[-1], kept)  # the last deep up block hands on the kept features
        return _overridden([*deep_down, unet.mid_block, *deep_up])


def attention_layers(video_unet: nn.Module) -> dict[str, list[tuple[str, nn.Module]]]:
    """The video UNet's attentions by kind: spatial self-attention and cross-attention of the image UNet,
    the motion modules' temporal attention; each with its name."""
    layers = {kind: [] for kind in ATTENTION_KINDS}
    for name, module in video_unet.unet.named_modules():
        if isinstance(module, Attention):
            layers["cross" if module.is_cross_attention else "spatial"].append((name, module))
    if video_unet.motion_module is not None:
        for name, module in video_unet.motion_module.named_modules():
            if isinstance(module, TemporalAttention):
                layers["temporal"].append((name, module))
    return layers


class AttentionCacheCall(CacheCall):
    """Pyramid Attention Broadcast for one call: in the middle of the schedule each attention either computes
    and keeps its output or returns the kept one, by its kind's broadcast range."""

    def applied(self, video_unet: nn.Module):
        stack = ExitStack()
        interval = self.run.settings.interval
        for kind, layers in attention_layers(video_unet).items():
            computed = attention_computed(self.step, self.run.steps, kind, interval)
            if computed and attention_computed(self.step + 1, self.run.steps, kind, interval):
                continue  # nothing to keep for: the next step computes it too
            self.run.computed[kind if computed else f"{kind} reused"] += len(layers)
            for name, module in layers:
                module.forward = self._broadcast(kind, name, module, computed)
            stack.callback(lambda layers=layers: [_back(module) for _, module in layers])
        return stack

    def _broadcast(self, kind: str, name: str, module: nn.Module, computed: bool):
        """`module`'s forward for this call: compute and keep, or reuse (a module run several times in one call,
        as the motion modules' attention in context windows of `--context-scope motion`, keeps each run)."""
        runs = 0
        compute = type(module).forward

        def forward(*args, **kwargs):
            nonlocal runs
            key = ("attention", kind, name, runs)
            runs += 1
            kept = None if computed else self.run.find(key, self.halves, self.window)
            if kept is not None:
                return kept
            out = compute(module, *args, **kwargs)
            self.run.keep(key, self.halves, self.window, out)
            return out

        return forward
