"""The page: a gradio form over the same `GenerateRequest` the API takes. Models are picked from the app's
lists (the browser sends names, never paths); an uploaded init image is stored in the outputs folder's
`uploads/` under a name the app chooses. Generating queues a job like any API client's and follows its
progress. No font, script or style comes from outside the app (system fonts only)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import gradio as gr

from animatediff.app.jobs import State, new_job_id
from animatediff.app.requests import GenerateRequest, Scaled
from animatediff.request import declarations

THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
LORA_SLOTS = 2  # LoRAs and MotionLoRAs the page offers at once
NONE = "(none)"
FAMILIES = [NONE, *declarations()["family"].choices]
SCHEDULERS = [NONE, *declarations()["scheduler"].choices]
UPSCALERS = ["lanczos", "latent", "latent-nearest"]  # the built-in ones (the page names no model files)
FORMATS = [name for name in declarations()["format"].choices if name != "png"]
PIA_STRENGTHS = list(declarations()["pia_strength"].choices)
# the form's controls in the order the page hands them over; then the LoRA and MotionLoRA slots (a test checks
# that the page offers exactly the declared `page` settings)
FORM = (
    "prompt negative_prompt base dreambooth motion_module domain_adapter domain_adapter_scale frames width height "
    "steps guidance_scale seed fps format context_length context_overlap loop prompt_map init_image init_strength "
    "sparsectrl control_image init_video strength family scheduler upscale upscaler upscale_strength interpolate "
    "motion_scale motion_effect pia pia_strength camera_ctrl camera_poses mask fast"
).split()
PAGE_SETTINGS = (*FORM, "loras", "motion_loras")


def _choice(value: str | None) -> str | None:
    return None if value in (None, "", NONE) else value


def _prompt_map(text: str) -> dict[int, str]:
    """'FRAME: prompt' lines → {frame: prompt}."""
    found = {}
    for line in text.splitlines():
        frame, colon, prompt = line.partition(":")
        if colon and frame.strip().isdigit() and prompt.strip():
            found[int(frame)] = prompt.strip()
        elif line.strip():
            raise gr.Error(f"prompt travel: expected 'FRAME: prompt' lines; got {line.strip()!r}")
    return found


def build_page(app) -> gr.Blocks:
    """The page for `app` (a `server.App`)."""
    from animatediff.camera_poses import PRESETS  # torch: imported when the page is built, not with the module

    catalog = app.catalog
    limits = app.options.limits

    def names(kind: str, optional: bool = False) -> list[str]:
        return ([NONE] if optional else []) + catalog.names(kind)

    with gr.Blocks(title="animatediff", analytics_enabled=False) as page:
        gr.Markdown("# animatediff\nText to video with a motion module plugged into a Stable Diffusion image model.")
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(
                    label="Prompt",
                    lines=2,
                    max_length=limits.prompt_length,
                    elem_id="prompt",
                    value="a red circle moving right on a blue background",
                )
                negative = gr.Textbox(label="Negative prompt", max_length=limits.prompt_length, elem_id="negative")
                with gr.Row():
                    base = gr.Dropdown(names("base"), value="shapes", label="Base model", elem_id="base")
                    dreambooth = gr.Dropdown(names("dreambooth", True), value=NONE, label="Personalized model")
                    module = gr.Dropdown(names("motion_module", True), value="shapes-motion", label="Motion module")
                with gr.Row():
                    adapter = gr.Dropdown(names("domain_adapter", True), value=NONE, label="Domain adapter")
                    alpha = gr.Slider(0, 1, value=1, step=0.05, label="Domain adapter α")
                with gr.Accordion("LoRAs and MotionLoRAs", open=False):
                    loras = [_scaled_slot(names("lora", True), f"LoRA {i + 1}") for i in range(LORA_SLOTS)]
                    motion_loras = [
                        _scaled_slot(names("motion_lora", True), f"MotionLoRA {i + 1}") for i in range(LORA_SLOTS)
                    ]
                with gr.Row():
                    frames = gr.Slider(2, limits.frames, value=min(16, limits.frames), step=1, label="Frames")
                    width = gr.Number(value=None, label="Width (empty or 0: the model's)", precision=0)
                    height = gr.Number(value=None, label="Height (empty or 0: the model's)", precision=0)
                with gr.Row():
                    steps = gr.Number(None, label="Steps (empty or 0: the family's)", precision=0, elem_id="steps")
                    guidance = gr.Number(value=None, label="Guidance (empty or 0: the family's)")
                    seed = gr.Number(value=1, label="Seed", precision=0, elem_id="seed")
                    dice = gr.Button("Random seed", elem_id="random-seed", scale=0)
                with gr.Row():
                    fps = gr.Number(value=8, label="fps")
                    output_format = gr.Dropdown(FORMATS, value="mp4", label="Format")
                with gr.Accordion("Long video and prompt travel", open=False):
                    context = gr.Number(value=None, label="Context window length (empty or 0: none)", precision=0)
                    overlap = gr.Number(value=None, label="Context overlap", precision=0)
                    loop = gr.Checkbox(label="Loop")
                    travel = gr.Textbox(label="Prompt travel ('FRAME: prompt' per line)", lines=3)
                with gr.Accordion("Motion", open=False), gr.Row():
                    motion_scale = gr.Slider(0, 2, value=1, step=0.05, label="Motion scale (above 1: more motion)")
                    motion_effect = gr.Slider(
                        0, 2, value=1, step=0.05, label="Motion effect (0: the image model alone)"
                    )
                with gr.Accordion("Image to video", open=False):
                    init_image = gr.Image(label="Init image (the clip starts from it)", type="filepath")
                    init_strength = gr.Slider(0.05, 1, value=0.75, step=0.05, label="Init strength")
                    sparsectrl = gr.Dropdown(names("sparsectrl", True), value=NONE, label="SparseCtrl")
                    keyframe = gr.Image(label="SparseCtrl keyframe (frame 0)", type="filepath")
                    with gr.Row():
                        pia = gr.Dropdown(names("pia", True), value=NONE, label="PIA (animates the init image)")
                        pia_strength = gr.Dropdown(
                            PIA_STRENGTHS, value=declarations()["pia_strength"].default, label="PIA motion"
                        )
                with gr.Accordion("Camera", open=False), gr.Row():
                    camera_ctrl = gr.Dropdown(names("camera_ctrl", True), value=NONE, label="CameraCtrl")
                    camera_poses = gr.Dropdown(list(PRESETS), value=PRESETS[0], label="Camera path")
                with gr.Accordion("Video to video", open=False):
                    init_video = gr.Video(label="Input video (restyled)", format=None)
                    strength = gr.Slider(0.05, 1, value=0.6, step=0.05, label="Strength")
                    mask = gr.Image(label="Mask (white: redrawn, black: kept)", type="filepath")
                with gr.Accordion("Model family and scheduler", open=False):
                    family = gr.Dropdown(FAMILIES, value=NONE, label="Family (empty: told from the module)")
                    scheduler = gr.Dropdown(SCHEDULERS, value=NONE, label="Scheduler (empty: the family's)")
                with gr.Accordion("Finish", open=False):
                    interpolate = gr.Slider(
                        1, 16, value=1, step=1, label="Frame interpolation: frames per frame (1: none)"
                    )
                    upscale = gr.Slider(1, 4, value=1, step=0.5, label="Upscale (1: none)", elem_id="upscale")
                    upscaler = gr.Dropdown(UPSCALERS, value="lanczos", label="Upscaler")
                    upscale_strength = gr.Slider(0, 1, value=0.35, step=0.05, label="Second pass strength (0: none)")
                    fast = gr.Checkbox(label="Fast (the measured fast preset)")
                run = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=2):
                video = gr.Video(label="Result", elem_id="result", autoplay=True, loop=True, format=None)
                download = gr.File(label="Download", elem_id="download")
                settings = gr.JSON(label="Settings (the sidecar)", elem_id="settings")
                gallery = gr.Gallery(label="Made since the app started", columns=4, height=220, elem_id="gallery")

        dice.click(lambda: random.randrange(2**31), outputs=seed)
        lora_inputs = [part for pair in loras + motion_loras for part in pair]
        controls = {
            "prompt": prompt,
            "negative_prompt": negative,
            "base": base,
            "dreambooth": dreambooth,
            "motion_module": module,
            "domain_adapter": adapter,
            "domain_adapter_scale": alpha,
            "frames": frames,
            "width": width,
            "height": height,
            "steps": steps,
            "guidance_scale": guidance,
            "seed": seed,
            "fps": fps,
            "format": output_format,
            "context_length": context,
            "context_overlap": overlap,
            "loop": loop,
            "prompt_map": travel,
            "init_image": init_image,
            "init_strength": init_strength,
            "sparsectrl": sparsectrl,
            "control_image": keyframe,
            "init_video": init_video,
            "strength": strength,
            "family": family,
            "scheduler": scheduler,
            "upscale": upscale,
            "upscaler": upscaler,
            "upscale_strength": upscale_strength,
            "interpolate": interpolate,
            "motion_scale": motion_scale,
            "motion_effect": motion_effect,
            "pia": pia,
            "pia_strength": pia_strength,
            "camera_ctrl": camera_ctrl,
            "camera_poses": camera_poses,
            "mask": mask,
            "fast": fast,
        }
        inputs = [controls[name] for name in FORM] + lora_inputs

        def generate(*values, progress=gr.Progress()):  # noqa: B008 (how gradio hands over its progress bar)
            request = _request(values, app)
            job = _submit(app, request)
            progress(0, desc="queued")
            while not job.state.finished:
                progress(job.progress, desc="denoising" if job.state == State.RUNNING else "queued")
                app.jobs.wait(job.id, 0.2)
            if job.state == State.FAILED:
                raise gr.Error(job.error or "the job failed")
            path = str(app.outputs / job.output)
            made = [str(app.outputs / j.output) for j in app.jobs.jobs.values() if j.state == State.DONE]
            return path, path, job.settings, made

        run.click(generate, inputs=inputs, outputs=[video, download, settings, gallery])
    return page


def _scaled_slot(choices: list[str], label: str) -> tuple:
    with gr.Row():
        return gr.Dropdown(choices, value=NONE, label=label), gr.Slider(0, 1.5, value=1, step=0.05, label="scale")


def _number(value) -> int | None:
    """A number field's value; empty (which gradio hands over as 0) is None."""
    return None if value in (None, "", 0) else int(value)


def _request(values: tuple, app) -> GenerateRequest:
    """The form's values (`FORM`'s order, then the LoRA slots) as a request (checked as the API checks it)."""
    form = dict(zip(FORM, values, strict=False))
    lora_values = values[len(FORM) :]
    pairs = list(zip(lora_values[::2], lora_values[1::2], strict=True))
    loras = [Scaled(name=name, scale=scale) for name, scale in pairs[:LORA_SLOTS] if _choice(name)]
    motion_loras = [Scaled(name=name, scale=scale) for name, scale in pairs[LORA_SLOTS:] if _choice(name)]
    keyframe = _keep(app, form["control_image"]) if _choice(form["sparsectrl"]) else None
    numbers = {name: _number(form[name]) for name in ("width", "height", "steps", "seed")}
    numbers.update({name: _number(form[name]) for name in ("context_length", "context_overlap")})
    choices = {name: _choice(form[name]) for name in ("dreambooth", "domain_adapter", "family", "scheduler")}
    upscaling = form["upscale"] not in (None, 0, 1)
    finish = {name: form[name] if upscaling else None for name in ("upscale", "upscaler", "upscale_strength")}
    motion = {name: None if form[name] in (None, 1) else form[name] for name in ("motion_scale", "motion_effect")}
    pia, camera_ctrl = _choice(form["pia"]), _choice(form["camera_ctrl"])
    try:
        return GenerateRequest(
            prompt=form["prompt"],
            negative_prompt=form["negative_prompt"] or "",
            frames=int(form["frames"]),
            guidance_scale=form["guidance_scale"] or None,
            fps=form["fps"] or 8,
            format=form["format"],
            base=form["base"],
            motion_module=None if pia else _choice(form["motion_module"]) or "none",  # PIA holds its own
            domain_adapter_scale=form["domain_adapter_scale"],
            loras=loras,
            motion_loras=motion_loras,
            loop=bool(form["loop"]),
            prompt_map=_prompt_map(form["prompt_map"] or ""),
            init_image=_keep(app, form["init_image"]),
            init_strength=form["init_strength"] if form["init_image"] else None,
            init_video=_keep(app, form["init_video"]),
            strength=form["strength"] if form["init_video"] else None,
            mask=_keep(app, form["mask"]) if form["init_video"] else None,
            pia=pia,
            pia_strength=_choice(form["pia_strength"]) if pia else None,
            camera_ctrl=camera_ctrl,
            camera_poses=_choice(form["camera_poses"]) if camera_ctrl else None,
            fast=bool(form["fast"]),
            sparsectrl=Scaled(name=form["sparsectrl"]) if _choice(form["sparsectrl"]) else None,
            control_image=[f"0:{keyframe}"] if keyframe else [],
            interpolate=int(form["interpolate"]) if form["interpolate"] and form["interpolate"] > 1 else None,
            **numbers,
            **choices,
            **finish,
            **motion,
        )
    except ValueError as error:
        raise gr.Error(str(error)) from error


def _keep(app, upload: str | None) -> str | None:
    """gradio's own copy of an upload, kept in the app's uploads folder under a name the app chooses."""
    if not upload:
        return None
    name = f"{new_job_id()}{Path(upload).suffix.lower()}"
    shutil.copyfile(upload, app.uploads / name)
    return name


def _submit(app, request: GenerateRequest):
    from fastapi import HTTPException

    try:
        return app.submit(request)
    except HTTPException as error:
        detail = error.detail
        if isinstance(detail, list):
            detail = "; ".join(f"{'.'.join(map(str, item['loc'][1:]))}: {item['msg']}" for item in detail)
        raise gr.Error(str(detail)) from error
