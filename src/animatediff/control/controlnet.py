"""Control residuals: each ControlNet runs on every frame folded into the batch, with the text states of
its frames and its own control frame, and returns residuals for the video UNet's down blocks and mid
block (an SDXL ControlNet also the clip's pooled text embeddings and size ids, as the video UNet). Several
ControlNets add up (as diffusers' `MultiControlNetModel`). In guess mode a ControlNet sees
the conditional half of the guidance batch alone and the unconditional half gets zero residuals (as
diffusers' Stable Diffusion ControlNet pipeline)."""

from __future__ import annotations

import torch
from einops import rearrange, repeat

from animatediff.control.conditions import Conditions, ControlNetInput
from animatediff.inflation import Residuals, fold_added
from animatediff.motion_module import Windows


def _per_frame_text(text_states: torch.Tensor, frames: int) -> torch.Tensor:
    """Text states one per folded frame, `(b f) n d`, from one per clip (b n d) or per frame (b f n d)."""
    if text_states.ndim == 4:
        return rearrange(text_states, "b f n d -> (b f) n d")
    return repeat(text_states, "b n d -> (b f) n d", f=frames)


def _run(
    control: ControlNetInput,
    model_input: torch.Tensor,
    t,
    text_states: torch.Tensor,
    frame_index: torch.Tensor | None,
    added: dict[str, torch.Tensor] | None,
) -> Residuals:
    batch, frames = model_input.shape[0], model_input.shape[2]
    guessing = control.guess_mode and batch == 2
    if guessing:  # the conditional half alone
        model_input, text_states = model_input[1:], text_states[1:]
        added = None if added is None else {key: value[1:] for key, value in added.items()}
    images = control.frames if frame_index is None else control.frames[frame_index.cpu()]
    images = images.to(device=model_input.device, dtype=control.model.dtype)
    extra = {}
    if added is not None:  # an SDXL ControlNet: the pooled text embeddings and size ids, one per folded frame
        extra["added_cond_kwargs"] = {k: v.to(control.model.dtype) for k, v in fold_added(added, frames).items()}
    down, mid = control.model(
        rearrange(model_input, "b c f h w -> (b f) c h w").to(control.model.dtype),
        t,
        encoder_hidden_states=_per_frame_text(text_states, frames).to(control.model.dtype),
        controlnet_cond=repeat(images, "f c h w -> (b f) c h w", b=model_input.shape[0]),
        conditioning_scale=control.scale,
        guess_mode=control.guess_mode,
        return_dict=False,
        **extra,
    )
    if guessing:
        down, mid = [torch.cat([torch.zeros_like(d), d]) for d in down], torch.cat([torch.zeros_like(mid), mid])
    return Residuals(list(down), mid)


def control_residuals(
    conditions: Conditions,
    model_input: torch.Tensor,
    t,
    text_states: torch.Tensor,
    step: tuple[int, int],
    frame_index: torch.Tensor | None,
    windows: Windows | None,
    added: dict[str, torch.Tensor] | None = None,
) -> Residuals | None:
    """The summed residuals of the clip's SparseCtrl and of its ControlNets active at `step` (index, of how many) for
    `model_input` (b c f h w, the guidance batch), or None when none acts. `frame_index`: which of the
    clip's frames `model_input` holds (a context window), None for all of them; `windows`: the motion
    modules' context windows (SparseCtrl's encoder has motion modules of its own); `added`: SDXL's pooled
    text embeddings and size ids for the frames of `model_input` (`inflation.fold_added`), None on SD1.x."""
    total = None
    if conditions.sparsectrl is not None:
        text = _per_frame_text(text_states, model_input.shape[2])
        total = conditions.sparsectrl.residuals(model_input, t, text, frame_index, windows)
    for control in conditions.controlnets:
        if not control.active(*step):
            continue
        residuals = _run(control, model_input, t, text_states, frame_index, added)
        total = residuals if total is None else total + residuals
    return total
