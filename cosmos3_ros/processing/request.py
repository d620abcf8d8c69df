"""What a caller hands the predictor (one request) and what comes back (one prediction).

These two types are the contract between the model side (``processing``/``engine``) and its users
(``runtime``, ``ros``, ``tools``). Images may be file paths, PIL images, ``uint8`` arrays ``[H, W, 3]``
(RGB), float arrays in [0, 1], or torch tensors ``[3, H, W]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Mode = Literal["policy", "forward_dynamics", "inverse_dynamics"]
MODES: tuple[str, ...] = ("policy", "forward_dynamics", "inverse_dynamics")

ImageLike = Any  # str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor


@dataclass
class ActionRequest:
    """One model request.

    Attributes:
        task: the task sentence (a list is accepted; its first entry is used).
        mode: ``policy``, ``forward_dynamics`` or ``inverse_dynamics``; None = the profile's mode.
        image: one conditioning view. For the released DROID policy this is an already composed
            wrist-over-exteriors image; otherwise the single camera view.
        cameras: for the released DROID policy, ``{"wrist": img, "exterior_1": img, "exterior_2": img}``,
            composed by the processor exactly as the model was trained.
        video: frames ``[T]`` (inverse dynamics; the first ``chunk + 1`` are used, the last repeated if short).
            For the released profile each frame may itself be a camera dict as in ``cameras``.
        state: robot state for profiles with a state row: ``[q1..q7 (rad), gripper (0 open .. 1 closed)]``.
        actions: known actions for ``forward_dynamics``, ``[T, raw_action_dim]`` in physical units.
        action_prefix: ``policy`` only: ``[P, raw_action_dim]`` physical actions for the first P chunk rows
            (e.g. those that execute while the model runs), given to the model as clean action rows the way
            forward dynamics gives all of them; the prediction returns them (up to float rounding) and
            generates the rest. P < chunk.
        seed: noise seed; None = the profile's seed.
        decode_rollout: decode the rollout video; None = the predictor's default.

    """

    task: str | list[str]
    mode: Mode | None = None
    image: ImageLike | None = None
    cameras: dict[str, ImageLike] | None = None
    video: list[ImageLike] | None = None
    state: Any | None = None
    actions: Any | None = None
    action_prefix: Any | None = None
    seed: int | None = None
    decode_rollout: bool | None = None


@dataclass
class ActionPrediction:
    """What one request produced.

    Attributes:
        actions: ``[chunk, raw_action_dim]`` float32 in physical units (after gripper flip and
            de-normalisation). For ``forward_dynamics`` these are the conditioning actions used.
        rollout: decoded rollout frames ``[T, H, W, 3]`` float32 in [0, 1], or None.
        mode / profile / domain_name / domain_id: what was run.
        dimension_names: one name per action column.
        fps: control / video rate of the chunk (Hz); row k is the target for step k + 1.
        seed: the noise seed used.
        timings_ms: per-stage wall times (``preprocess``, ``vae_encode``, ``text``, ``denoise``,
            ``postprocess``, ``vae_decode``, ``total``).
        latents: the engine's final ``{"video": [1, C, T, h, w], "action": [rows, A]}`` float32 latents (model
            space, CPU), for comparing with another implementation; None where not kept.

    """

    actions: np.ndarray
    rollout: np.ndarray | None
    mode: str
    profile: str
    domain_name: str
    domain_id: int
    dimension_names: tuple[str, ...]
    fps: float
    seed: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    latents: dict[str, Any] | None = None
