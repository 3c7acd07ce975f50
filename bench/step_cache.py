"""Step caching and early-ending guidance: time per clip and what they cost in quality, each setting against the
uncached run and against diffusers' AnimateDiffPipeline, all in one process.

    python bench/step_cache.py                       # both parts (the SD1.5-shaped one takes ~30 min on 1 thread)
    python bench/step_cache.py --skip-sd15 --prompts 4
    python bench/step_cache.py --skip-embedded       # the SD1.5-shaped clip times alone
    python bench/step_cache.py --skip-sd15 --prompts 2 --only "deep 4 + guidance-end 0.25"   # one setting

SD1.5-shaped (16 frames at 256², 25 steps, seeded random weights, `bench/run.py`'s builders): a clip of 25
steps is too long to run for every setting on a CPU, so every kind of step a setting's schedule holds is timed
once (a guided step on the `[uncond; cond]` batch, a conditional-only one, a DeepCache-cached one, an
attention-cached one with each set of reused attention kinds), and the clip's time is the sum over its schedule
(`sampling.speed`) plus one VAE decode; diffusers' clip is 25 of its UNetMotionModel's guided steps plus its
decode.
Embedded default (base + shapes-motion, 16 frames at 32², 25 steps): whole clips on the held-out prompts
(`lab/report.py`) × seeds, every setting on each prompt and seed in turn (so a busy machine slows all alike);
`text`, `motion`, `smooth` (`shapes/metrics.py`) against the uncached clips', and the mean frame difference
to them; diffusers' AnimateDiffPipeline on the same weights timed on the first prompt's clips.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).parents[1]))  # the repository root, for lab/ (held_out_prompts)
import run  # noqa: E402  (bench/run.py: the seeded SD1.5-shaped builders)

from animatediff.sampling.speed import (  # noqa: E402
    ATTENTION_KINDS,
    FAST,
    GUIDED,
    StepCache,
    attention_computed,
    full_steps,
    guidance_step,
)

STEPS, GUIDANCE = 25, 7.5
SETTINGS = {  # name → the Sample fields it sets
    "uncached": {},
    "guidance-end 0.5": {"guidance_end": 0.5},
    "guidance-reuse": {"guidance_reuse": True},
    "deep, interval 3": {"cache": StepCache("deep", 3)},
    "deep, interval 3, quadratic": {"cache": StepCache("deep", 3, schedule="quadratic")},
    "attention, interval 2": {"cache": StepCache("attention", 2)},
    "deep 3 + guidance-end 0.5": {"cache": StepCache("deep", 3), "guidance_end": 0.5},
    "deep 4 + guidance-end 0.5": {"cache": StepCache("deep", 4), "guidance_end": 0.5},
    "deep 3 + guidance-end 0.4": {"cache": StepCache("deep", 3), "guidance_end": 0.4},
    "deep 3 + guidance-end 0.3": {"cache": StepCache("deep", 3), "guidance_end": 0.3},
    "deep 2 + guidance-end 0.3": {"cache": StepCache("deep", 2), "guidance_end": 0.3},
    "deep 3 + guidance-end 0.2": {"cache": StepCache("deep", 3), "guidance_end": 0.2},
    "deep 4 + guidance-end 0.3": {"cache": StepCache("deep", 4), "guidance_end": 0.3},
    "deep 3 + guidance-end 0.1": {"cache": StepCache("deep", 3), "guidance_end": 0.1},
    "deep 3 + guidance-end 0.15": {"cache": StepCache("deep", 3), "guidance_end": 0.15},
    "deep 3 + guidance-end 0.25": {"cache": StepCache("deep", 3), "guidance_end": 0.25},
    "deep 4 + guidance-end 0.2": {"cache": StepCache("deep", 4), "guidance_end": 0.2},
    "deep 4 + guidance-end 0.25": {"cache": StepCache("deep", 4), "guidance_end": 0.25},
    "deep 3, quadratic + guidance-end 0.2": {
        "cache": StepCache("deep", 3, schedule="quadratic"),
        "guidance_end": 0.2,
    },
}


def fast_fields() -> dict:
    """The Sample fields `--fast` sets (`sampling.speed.FAST`)."""
    cache = StepCache(FAST.get("cache", "none"), FAST.get("cache_interval", 3), FAST.get("cache_depth", 0))
    fields = {"cache": cache, "guidance_end": FAST.get("guidance_end", 1.0)}
    return {**fields, "guidance_reuse": True} if FAST.get("guidance_reuse") else fields


def label(name: str) -> str:
    """The row's name, marked when it is what `--fast` runs."""
    fields = {"cache": StepCache(), "guidance_end": 1.0, **SETTINGS[name]}
    return f"{name} (--fast)" if fields == fast_fields() else name


def step_kinds(fields: dict, steps: int = STEPS) -> Counter:
    """How many steps of each kind a setting's schedule runs: (batch, how the cache treats the step)."""
    cache = fields.get("cache", StepCache())
    full = full_steps(steps, cache) if cache.mode == "deep" else frozenset()
    kinds = Counter()
    for step in range(steps):
        how = guidance_step(step, steps, fields.get("guidance_end", 1.0), fields.get("guidance_reuse", False))
        batch = 2 if how == GUIDED else 1
        if cache.mode == "deep":
            kinds[batch, "full" if step in full else "deep"] += 1
        elif cache.mode == "attention":
            reused = tuple(k for k in ATTENTION_KINDS if not attention_computed(step, steps, k, cache.interval))
            kinds[batch, "+".join(reused) or "full"] += 1
        else:
            kinds[batch, "full"] += 1
    return kinds


def _time(call, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def sd15_step_seconds(kinds: set, repeats: int, steps: int) -> dict:
    """Seconds of one video-UNet call of each kind (batch, cache treatment) on the SD1.5-shaped config. A call
    takes about a minute on one thread, so there is no warm-up call: a full call that keeps what the cached
    ones reuse comes first and is itself the full step's timing."""
    from animatediff import inflate
    from animatediff.step_cache import StepCacheRun, halves_of

    config = run.CONFIGS["sd15"]
    video_unet = inflate(run.build_unet(config), run.build_motion_module(config))
    latents, t, text = run.inputs(config)
    seconds, caches = {}, {}
    order = sorted(kinds, key=lambda kind: (kind[0], kind[1] != "full", kind[1] != "deep"))
    for batch, what in order:
        halves = halves_of(batch)
        x, states = latents[-batch:], text[-batch:]
        mode = "attention" if what not in ("full", "deep") else "deep"
        if (batch, mode) not in caches:  # a full step that keeps what this mode's cached steps reuse
            cache = caches[batch, mode] = StepCacheRun(StepCache(mode, 2), steps)
            prime = _cached_step(cache, what if mode == "attention" else "deep")[0]
            with cache.call(prime, None, halves).applied(video_unet):
                started = time.perf_counter()
                video_unet(x, t, states)
                seconds.setdefault((batch, "full"), time.perf_counter() - started)
        if what != "full":
            cache, step = caches[batch, mode], _cached_step(caches[batch, mode], what)[1]

            def call(cache=cache, step=step, halves=halves, x=x, states=states):
                with cache.call(step, None, halves).applied(video_unet):
                    return video_unet(x, t, states)

            seconds[batch, what] = _time(call, repeats)
        print(f"  SD1.5-shaped UNet call, batch {batch}, {what}: {seconds[batch, what]:.2f} s", flush=True)
    return seconds


def _cached_step(cache, what: str) -> tuple[int, int]:
    """(a step that computes and keeps, a later step of the kind `what`) in `cache`'s schedule."""
    if what == "deep":
        return 0, 1
    steps = range(cache.steps)
    computing = [s for s in steps if all(attention_computed(s, cache.steps, k, 2) for k in ATTENTION_KINDS)]
    first = next(s for s in computing if s + 1 < cache.steps and s + 1 not in computing)
    reused = tuple(what.split("+"))
    step = next(
        s
        for s in steps
        if s > first and tuple(k for k in ATTENTION_KINDS if not attention_computed(s, cache.steps, k, 2)) == reused
    )
    return first, step


def sd15_decode_and_diffusers(repeats: int, decode: bool = True) -> tuple[float, float, float]:
    """(our VAE decode of 16 frames, diffusers', diffusers' guided UNetMotionModel step) in seconds (without
    `decode`, the decodes are not run: 0)."""
    config = run.CONFIGS["sd15"]
    seconds = [] if decode else [0.0, 0.0]
    for worker in (run.ours_decode, run.diffusers_decode, run.diffusers_step)[0 if decode else 2 :]:
        call = worker(config, "cpu", {})
        seconds.append(_time(call, repeats))  # no warm-up: each call takes about a minute on one thread
        print(f"  {worker.__name__}: {seconds[-1]:.2f} s", flush=True)
        del call
    return tuple(seconds)


def sd15_table(repeats: int, steps: int, attention: bool = True, decode: bool = True) -> list[str]:
    """The SD1.5-shaped clip times; without `attention`, the attention-cached settings are left out; without
    `decode`, the clips' times are their denoising steps alone (the VAE decode is the same for every setting)."""
    schedules = {
        name: step_kinds(fields, steps)
        for name, fields in SETTINGS.items()
        if attention or fields.get("cache", StepCache()).mode != "attention"
    }
    kinds = {kind for counts in schedules.values() for kind in counts}
    seconds = sd15_step_seconds(kinds, repeats, steps)
    decode, their_decode, their_step = sd15_decode_and_diffusers(repeats, decode)
    print(f"  decode: ours {decode:.2f} s, diffusers {their_decode:.2f} s; diffusers step {their_step:.2f} s")
    theirs = steps * their_step + their_decode
    clip = {name: sum(n * seconds[kind] for kind, n in counts.items()) + decode for name, counts in schedules.items()}
    lines = [
        "| SD1.5-shaped, 16×256², 25 steps | UNet calls (batch × kind) | clip s (from the step times) | speed-up "
        "over uncached | ours / diffusers |",
        "|---|---|---|---|---|",
    ]
    for name, counts in schedules.items():
        calls = ", ".join(f"{n}×b{batch} {what}" for (batch, what), n in sorted(counts.items()))
        lines.append(
            f"| {label(name)} | {calls} | {clip[name]:.0f} | {clip['uncached'] / clip[name]:.2f}× | "
            f"{clip[name] / theirs:.2f} |"
        )
    speed = clip["uncached"] / theirs
    lines.append(f"| diffusers AnimateDiffPipeline | {steps}×b2 full | {theirs:.0f} | {speed:.2f}× | 1 |")
    times = ", ".join(f"b{batch} {what} {s:.1f}" for (batch, what), s in sorted(seconds.items()))
    lines += ["", f"- step times (s): {times}; VAE decode ours {decode:.1f}, diffusers {their_decode:.1f}"]
    return lines


def embedded_pipelines():
    """Our pipeline and diffusers' AnimateDiffPipeline on the embedded default's weights (loaded twice: ours
    inflates its UNet in place)."""
    from diffusers import AnimateDiffPipeline as Reference

    from animatediff import AnimateDiffPipeline, official_scheduler
    from animatediff.formats import to_motion_adapter

    config = run.CONFIGS["embedded"]
    ours = AnimateDiffPipeline.from_components(run.embedded_components(), run.build_motion_module(config))
    parts = run.embedded_components()
    theirs = Reference(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet=parts.unet,
        motion_adapter=to_motion_adapter(run.build_motion_module(config)),
        scheduler=official_scheduler(),
    )
    theirs.set_progress_bar_config(disable=True)
    return ours, theirs


def embedded_table(prompts: list[str], seeds: list[int], steps: int) -> list[str]:
    from animatediff.pipeline import to_uint8
    from animatediff.shapes.metrics import score_video

    ours, theirs = embedded_pipelines()
    seconds, scores, clips = Counter(), {name: [] for name in SETTINGS}, {name: [] for name in SETTINGS}
    their_seconds, their_clips = 0.0, 0
    for prompt in prompts:
        for seed in seeds:
            for name, fields in SETTINGS.items():
                started = time.perf_counter()
                frames = to_uint8(
                    ours.generate(
                        prompt, num_frames=16, steps=steps, guidance_scale=GUIDANCE, seed=seed, progress=False, **fields
                    )
                )
                seconds[name] += time.perf_counter() - started
                score = score_video(frames, prompt)
                scores[name].append([np.nan if score[k] is None else score[k] for k in ("text", "motion", "smooth")])
                clips[name].append(frames.astype(np.int16))
            if prompt == prompts[0]:
                generator = torch.Generator("cpu").manual_seed(seed)
                started = time.perf_counter()
                theirs(
                    prompt,
                    num_frames=16,
                    num_inference_steps=steps,
                    guidance_scale=GUIDANCE,
                    generator=generator,
                    output_type="np",
                )
                their_seconds += time.perf_counter() - started
                their_clips += 1
            print(f"  {prompt!r} seed {seed} done", flush=True)
    count = len(prompts) * len(seeds)
    their_clip = their_seconds / their_clips
    lines = [
        f"| embedded default, {len(prompts)} held-out prompts × seeds {', '.join(map(str, seeds))} | s per clip | "
        "speed-up over uncached | ours / diffusers | text | motion | smooth | Δ text | Δ motion | Δ smooth | mean "
        "frame difference to uncached |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    reference = np.nanmean(scores["uncached"], axis=0)
    for name in SETTINGS:
        per_clip = seconds[name] / count
        mean = np.nanmean(scores[name], axis=0)
        change = mean - reference
        difference = np.mean([np.abs(a - b).mean() for a, b in zip(clips[name], clips["uncached"], strict=True)])
        lines.append(
            f"| {label(name)} | {per_clip:.2f} | {seconds['uncached'] / seconds[name]:.2f}× | "
            f"{per_clip / their_clip:.2f} | "
            f"{mean[0]:.3f} | {mean[1]:.3f} | {mean[2]:.3f} | {change[0]:+.3f} | {change[1]:+.3f} | "
            f"{change[2]:+.3f} | {difference:.2f}/255 |"
        )
    speed = seconds["uncached"] / count / their_clip
    lines.append(f"| diffusers AnimateDiffPipeline | {their_clip:.2f} | {speed:.2f}× | 1 | | | | | | | |")
    return lines


def keep_only(names: list[str] | None) -> None:
    """Leave in SETTINGS the uncached run and `names` (every setting when None); a name that is not a setting
    (a row's label with its " (--fast)", a typo) is a ValueError, not a run of the uncached clips alone."""
    unknown = [name for name in names or () if name not in SETTINGS]
    if unknown:
        raise ValueError(f"--only: not a setting: {', '.join(map(repr, unknown))}; the settings: {', '.join(SETTINGS)}")
    for name in set(SETTINGS) - {"uncached", *(names or SETTINGS)}:
        del SETTINGS[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=12, help="how many of the 12 held-out prompts")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--repeats", type=int, default=1, help="SD1.5-shaped timings: the best of this many")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=STEPS, help="(a smoke run: fewer)")
    parser.add_argument("--only", nargs="+", help="these settings (and the uncached run) alone")
    parser.add_argument("--skip-sd15", action="store_true")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--sd15-without-attention", action="store_true", help="SD1.5-shaped: no attention cache")
    parser.add_argument("--sd15-without-decode", action="store_true", help="SD1.5-shaped: the steps alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        keep_only(args.only)
    except ValueError as error:
        parser.error(str(error))
    from lab.report import held_out_prompts

    print(f"Machine: {run.machine()}; {args.threads} torch thread(s).\n", flush=True)
    lines = []
    if not args.skip_embedded:
        with torch.no_grad():
            lines += embedded_table(held_out_prompts()[: args.prompts], args.seeds, args.steps) + [""]
        print("\n".join(lines), flush=True)
    if not args.skip_sd15:
        with torch.no_grad():
            lines += sd15_table(args.repeats, args.steps, not args.sd15_without_attention, not args.sd15_without_decode)
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
