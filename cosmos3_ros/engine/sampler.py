"""UniPC flow-matching schedules.

``native``: the schedule NVIDIA's policy server uses — sigmas ``linspace(sigma_max, 0, N + 1)[:-1]`` with
``sigma_max`` the float32 value of ``1 - 1/1000`` (0.9990000128746, as the server keeps it), warped by
``s * sigma / (1 + (s - 1) * sigma)`` (shift s), final sigma 0, integer timesteps ``int(sigma * 1000)``. For N=4,
s=5: sigma ~ [0.9998, 0.937, 0.833, 0.62468737], t = [999, 937, 833, 624].
``checkpoint``: the checkpoint's own ``scheduler/scheduler_config.json`` (on Nano a Karras schedule exported to
approximate 35-step sampling; it differs a lot from native at 4 steps) — diffusers' ``Cosmos3OmniPipeline`` with
``use_native_flow_schedule`` false.
``checkpoint_native``: what that pipeline does with ``use_native_flow_schedule`` true — the checkpoint's scheduler
config given the grid ``linspace(1 - 1/1000, 0, N + 1)[:-1]`` (float64). A config with ``use_karras_sigmas``
replaces the grid by its own Karras sigmas, so on the Nano export this equals ``checkpoint``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import UniPCMultistepScheduler

from ..errors import ProfileError

NUM_TRAIN_TIMESTEPS = 1000
SCHEDULES = ("native", "checkpoint", "checkpoint_native")
# NVIDIA's server holds sigma_max = 1 - 1/1000 as a float32 (0.9990000128746...), not the float64 0.999.
NATIVE_SIGMA_MAX = float(np.float32(1.0 - 1.0 / NUM_TRAIN_TIMESTEPS))


@dataclass(frozen=True)
class SamplingSettings:
    """How to denoise one request.

    Attributes:
        steps: number of UniPC steps.
        guidance: CFG scale g in ``u + g (c - u)``; 1 disables the unconditional branch.
        guidance_steps: run CFG only on the first k steps (None = every step).
        guidance_interval: run CFG only on steps whose integer timestep t has ``lo < t < hi`` (strict, as NVIDIA's
            server compares; None = every step); the Edge policy is served with (960, 1001), i.e. the first of 4 steps.
        schedule: one of ``SCHEDULES`` (see the module docstring).
        flow_shift: shift of the native schedule.

    """

    steps: int
    guidance: float
    guidance_steps: int | None = None
    guidance_interval: tuple[int, int] | None = None
    schedule: str = "native"
    flow_shift: float = 5.0

    def uses_cfg(self, step_index: int, timestep: int | None = None) -> bool:
        """Whether step ``step_index`` (integer timestep ``timestep``) runs the unconditional branch."""
        if self.guidance == 1.0:
            return False
        if self.guidance_steps is not None and step_index >= self.guidance_steps:
            return False
        if self.guidance_interval is not None and timestep is not None:
            low, high = self.guidance_interval
            return low < timestep < high
        return True


def native_scheduler(flow_shift: float) -> UniPCMultistepScheduler:
    """Order-2 UniPC (bh2, predict-x0) for flow prediction with linear-shift sigmas."""
    return UniPCMultistepScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS, solver_order=2, prediction_type="flow_prediction",
        predict_x0=True, solver_type="bh2", lower_order_final=True, use_flow_sigmas=True, flow_shift=flow_shift,
        final_sigmas_type="zero",
    )


def native_sigmas(steps: int) -> np.ndarray:
    """Unshifted base grid of the native schedule (the scheduler applies the shift), from the float32 sigma_max."""
    return np.linspace(NATIVE_SIGMA_MAX, 0.0, steps + 1)[:-1]


def build_scheduler(settings: SamplingSettings, checkpoint_config: dict[str, Any] | None) -> UniPCMultistepScheduler:
    """A scheduler with timesteps set for ``settings``."""
    if settings.schedule == "native":
        scheduler = native_scheduler(settings.flow_shift)
        scheduler.set_timesteps(sigmas=native_sigmas(settings.steps), device="cpu")
        return scheduler
    if checkpoint_config is None:
        raise ProfileError("schedule='checkpoint' needs the checkpoint's scheduler/scheduler_config.json")
    class_name = checkpoint_config.get("_class_name", "UniPCMultistepScheduler")
    if class_name != "UniPCMultistepScheduler":
        raise ProfileError(
            f"the checkpoint's scheduler class {class_name!r} is not available in diffusers 0.42.1; "
            "use schedule='native' (with flow_shift) instead"
        )
    if settings.schedule not in SCHEDULES:
        raise ProfileError(f"schedule {settings.schedule!r}; expected one of {list(SCHEDULES)}")
    scheduler = UniPCMultistepScheduler.from_config(checkpoint_config)
    if settings.schedule == "checkpoint_native":
        if not scheduler.config.use_flow_sigmas:
            raise ProfileError("schedule='checkpoint_native' needs a scheduler config with use_flow_sigmas true")
        train_steps = scheduler.config.num_train_timesteps
        grid = np.linspace(1.0 - 1.0 / train_steps, 0.0, settings.steps + 1)[:-1]  # float64, as diffusers builds it
        scheduler.set_timesteps(settings.steps, device="cpu", sigmas=grid)
    else:
        scheduler.set_timesteps(settings.steps, device="cpu")
    return scheduler


def clone(scheduler: UniPCMultistepScheduler) -> UniPCMultistepScheduler:
    """An independent copy (UniPC keeps per-modality history on the instance)."""
    return copy.deepcopy(scheduler)


def schedule_table(settings: SamplingSettings, checkpoint_config: dict[str, Any] | None = None
                   ) -> tuple[list[float], list[int]]:
    """``(sigmas without the final 0, integer timesteps)`` of a schedule, for reports and spec tests."""
    scheduler = build_scheduler(settings, checkpoint_config)
    sigmas = [float(s) for s in scheduler.sigmas[:-1]]
    return sigmas, [int(t) for t in scheduler.timesteps]


def step(scheduler: UniPCMultistepScheduler, velocity: torch.Tensor, timestep: torch.Tensor,
         sample: torch.Tensor) -> torch.Tensor:
    """One UniPC update of an unbatched sample (the solver wants a leading batch axis)."""
    return scheduler.step(velocity.unsqueeze(0), timestep, sample.unsqueeze(0), return_dict=False)[0].squeeze(0)
