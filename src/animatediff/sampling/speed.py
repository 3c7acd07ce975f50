"""Doing less per clip: which denoising steps compute the unconditional half of classifier-free guidance,
and which steps run the whole video UNet or reuse what an earlier step computed (step caching).

Pure functions of step indices (no torch): the pipeline asks them at every step, `animatediff.step_cache`
does the reusing. Step indices count in the clip's whole schedule (index, of `steps`), as everywhere in the
pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from animatediff.errors import ConfigError

CacheMode = Literal["none", "deep", "attention"]
CacheSchedule = Literal["uniform", "quadratic"]
MAX_INTERVAL = 10  # beyond it a cached step reuses features from a step too far away to resemble its own
MAX_DEPTH = 2  # SD1.5's UNet has 4 up blocks; the pipeline checks a UNet's own (`step_cache.check_depth`)

# `--fast`: of the settings measured at ≥ 2× the uncached speed, the one whose quality stays closest to it (12
# held-out prompts × 3 seeds: 2.20×, `text`, `motion` and `smooth` within 0.012; bench/step_cache.py,
# docs/results.md, "Step caching"); each one given explicitly wins
FAST = {"cache": "deep", "cache_interval": 4, "guidance_end": 0.25}
FAST_HELP = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in FAST.items())

# how a step treats classifier-free guidance
GUIDED = "guided"  # both halves, `uncond + scale · (cond − uncond)`
CONDITIONAL = "conditional"  # the conditional half alone (past `guidance_end`)
REUSED = "reused"  # the conditional half; the unconditional is it less the last guided step's difference


@dataclass(frozen=True)
class StepCache:
    """What a clip's denoising steps reuse from earlier steps.

    `deep` (DeepCache, Ma et al. 2024): on a full step the whole video UNet runs and the input of its up block
    at `depth` (0: the last, shallowest one) is kept; on the steps between, only the down and up blocks above
    that depth (with their motion modules) run, and the kept features stand in for everything deeper. Full
    steps come every `interval` steps (`uniform`) or denser around the schedule's first third and sparser
    after (`quadratic`, DeepCache's non-uniform schedule).
    `attention` (Pyramid Attention Broadcast, Zhao et al. 2024): in the middle of the schedule attention
    outputs are computed once per range of steps and reused in between: spatial self-attention every
    `interval` steps, the motion modules' temporal attention every 2 × `interval`, cross-attention every
    3 × `interval` (PAB's 2/4/6 at interval 2)."""

    mode: CacheMode = "none"
    interval: int = 3
    depth: int = 0
    schedule: CacheSchedule = "uniform"

    def __post_init__(self):
        if self.mode not in get_args(CacheMode):
            raise ConfigError(f"cache must be one of {', '.join(get_args(CacheMode))}; got {self.mode!r}.")
        if self.schedule not in get_args(CacheSchedule):
            raise ConfigError(
                f"cache_schedule must be one of {', '.join(get_args(CacheSchedule))}; got {self.schedule!r}."
            )
        for name, low, high in (("interval", 1, MAX_INTERVAL), ("depth", 0, None)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
                bounds = f"between {low} and {high}" if high else f"at least {low}"
                raise ConfigError(f"cache_{name} must be a whole number {bounds}; got {value!r}.")

    @property
    def on(self) -> bool:
        return self.mode != "none"


def guidance_step(step: int, steps: int, end: float = 1.0, reuse: bool = False) -> str:
    """How step `step` of `steps` treats classifier-free guidance: GUIDED for the first ⌈end · steps⌉ steps,
    CONDITIONAL after them; with `reuse`, every second guided step of the schedule's second half is REUSED (the
    first one of that half computes both halves, so a reused step always follows a guided one)."""
    if step >= math.ceil(end * steps - 1e-9):
        return CONDITIONAL
    late = steps // 2
    if reuse and step > late and (step - late) % 2 == 1:
        return REUSED
    return GUIDED


def full_steps(steps: int, cache: StepCache) -> frozenset[int]:
    """The steps on which DeepCache runs the whole video UNet (step 0 always): every `interval`-th, or
    (`quadratic`) as many placed densest around the first third of the schedule (DeepCache's non-uniform
    schedule: linearly spaced in a power 1/p of the distance from that centre, p from 1.4 down until they are
    distinct)."""
    count = math.ceil(steps / cache.interval)
    if cache.schedule == "uniform" or count >= steps:
        return frozenset(range(0, steps, cache.interval))
    centre = round(0.3 * steps)
    power = 1.4
    while power > 1:
        low, high = -(centre ** (1 / power)), (steps - 1 - centre) ** (1 / power)
        picked = {0}
        for k in range(count):
            u = low + (high - low) * k / max(count - 1, 1)
            picked.add(min(steps - 1, max(0, centre + round(math.copysign(abs(u) ** power, u)))))
        if len(picked) == count:
            return frozenset(picked)
        power -= 0.02
    return frozenset(range(0, steps, cache.interval))


ATTENTION_KINDS = ("spatial", "temporal", "cross")
BROADCAST_RANGE = {"spatial": 1, "temporal": 2, "cross": 3}  # × interval: PAB's pyramid, 2/4/6 at interval 2
MIDDLE = (0.2, 0.8)  # the fractions of the schedule between which attention outputs are broadcast


def attention_computed(step: int, steps: int, kind: str, interval: int) -> bool:
    """Whether attention of `kind` (spatial, temporal, cross) is computed at `step` of `steps` (else the output
    of the last step that computed it is reused): always outside the middle of the schedule, inside it on its
    first step and then once every `BROADCAST_RANGE[kind] × interval` steps."""
    first, last = math.ceil(MIDDLE[0] * steps), math.floor(MIDDLE[1] * steps)
    if not first <= step < last:
        return True
    return (step - first) % (BROADCAST_RANGE[kind] * interval) == 0
