"""Profiles: one named, complete set of settings for one action contract.

Two contracts are served (sources in ``shared/reference/cosmos3_facts.md``):

* ``released_droid_policy`` — the released ``Cosmos3-Nano-Policy-DROID``: 8-D absolute joint targets + gripper,
  current state as a clean first action row, three cameras composed into one image, plain caption,
  UniPC 4 steps, CFG 3, linear flow shift 5, chunk 32 at 15 fps.
* ``base`` — the base model's embodiment domains (``droid_lerobot`` 10-D relative EEF pose + gripper, ...):
  one view, JSON caption, action rows start at pixel frame 1, de-normalisation from a stats file.

Every field can be overridden (``Profile.with_overrides``); the result is validated as a whole.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import ProfileError
from . import limits

# Embodiment domain -> (domain id of the action head row, canonical raw action width or None when the width
# depends on the dataset). Ids and widths are the Cosmos3 base model's table.
DOMAINS: dict[str, tuple[int, int | None]] = {
    "no_action": (0, None),
    "av": (1, 9),
    "camera_pose": (2, 9),
    "hand_pose": (3, 57),
    "pusht": (4, 2),
    "libero": (5, None),
    "umi": (6, 10),
    "bridge_orig_lerobot": (7, 10),
    "droid_lerobot": (8, 10),
    "robomind-franka": (8, 10),
    "galbot": (9, 30),
    "robomind-franka-dual": (12, 20),
    "robomind-ur": (13, 10),
    "agibotworld": (15, 29),
    "agibot_gear_gripper": (15, 29),
    "agibot_gear_gripper_ext": (15, 29),
    "fractal": (20, 10),
}

# Sentences appended to captions. The model was trained with exactly these.
VIEW_POINT_SENTENCES: dict[str, str] = {
    "ego_view": "This video is captured from a first-person perspective looking at the scene.",
    "third_person_view": (
        "This video is captured from a third-person perspective looking towards the agent from the front."
    ),
    "wrist_view": "This video is captured from a wrist-mounted camera.",
    "concat_view": "This video contains concatenated views from multiple camera perspectives.",
}
DROID_CONCAT_LAYOUT_SENTENCE = (
    "The top row is from the wrist-mounted camera. The bottom row contains two horizontally concatenated "
    "third-person perspective views of the scene from opposite sides, with the robot visible."
)

RESOLUTION_TIERS = (256, 480, 704, 720)
NORMALIZATIONS = ("meanstd", "minmax", "quantile", "quantile_rot")
SCHEDULES = ("native", "checkpoint", "checkpoint_native")
NOISE_RNGS = ("torch", "numpy")
SYSTEM_PROMPT_KINDS = ("video", "image")
PROMPT_FORMATS = ("plain", "json")
CAMERA_LAYOUTS = ("droid_concat", "single")
DROID_CAMERAS = ("wrist", "exterior_1", "exterior_2")
MODES = ("policy", "forward_dynamics", "inverse_dynamics")
MAX_ACTION_DIM = 64


def domain_dimension_names(domain_name: str, width: int) -> tuple[str, ...]:
    """Column names for a domain's actions (generic ``a0..`` where the layout is not one we can name)."""
    single_arm = ("droid_lerobot", "bridge_orig_lerobot", "fractal", "umi", "robomind-franka", "robomind-ur")
    if domain_name in single_arm and width == 10:
        return ("dx", "dy", "dz", "r00", "r10", "r20", "r01", "r11", "r21", "gripper")
    return tuple(f"a{i}" for i in range(width))


@dataclass(frozen=True)
class Profile:
    """All settings of one action contract. Units: fps in Hz, guidance unitless, flow_shift unitless.

    Attributes:
        name: profile name (``released_droid_policy`` or ``base``, or a user's label).
        mode: default mode.
        domain_name / domain_id: embodiment domain; ``domain_id`` selects the action head row.
        raw_action_dim: action columns the robot uses (the model pads to 64).
        action_space: what the columns mean (``joint_position``, ``domain``).
        dimension_names: one name per action column.
        chunk: action rows predicted per request; the video has ``chunk + 1`` pixel frames.
        fps: control rate and conditioning fps.
        resolution_tier: canvas tier (256, 480, 704, 720).
        camera_layout: ``droid_concat`` (wrist over two exteriors) or ``single``.
        camera_input_hw: (H, W) the (composed) image is resized to before the canvas; None keeps it.
        view_point / view_description: caption sentences (``view_description`` follows the view sentence).
        prompt_format: ``plain`` (caption + sentences) or ``json`` (structured caption).
        use_system_prompt: prepend the generation system prompt in the chat template.
        system_prompt_kind: which system prompt when enabled: ``video`` (diffusers' pipeline for a video) or
            ``image`` (what NVIDIA's policy server would use; it never enables one on the released path).
        negative_prompt: the unconditional branch's text.
        use_state: feed the robot state as a clean first action row (action rows then start at frame 0).
        gripper_dims: action columns stored as ``1 - g`` in model space (flipped on the way in and out).
        normalization / stats: de-normalisation of model-space actions (None = actions are physical).
        binarize_gripper: threshold gripper columns at 0.5 on output.
        steps / guidance / guidance_steps: sampler steps, CFG scale, CFG only on the first k steps (None = all).
        guidance_interval: CFG only on steps with integer timestep in ``[lo, hi]`` (None = all; Edge: 960, 1001).
        schedule / flow_shift: ``native`` linear-shift sigmas (NVIDIA's server), ``checkpoint`` (the checkpoint's
            scheduler config) or ``checkpoint_native`` (that config on the native grid, diffusers'
            ``use_native_flow_schedule``); ``flow_shift`` applies to ``native`` only.
        seed: noise seed when a request gives none.
        noise_rng: how the seed becomes initial noise: ``torch`` (one CPU ``torch.Generator`` stream, vision then
            action, as diffusers draws it) or ``numpy`` (``np.random.RandomState(seed).standard_normal``
            re-seeded for vision and for action, as NVIDIA's server draws it).
        cond_frames: clean latent frames override (None = the mode's default).

    """

    name: str
    mode: str
    domain_name: str
    domain_id: int
    raw_action_dim: int
    action_space: str
    dimension_names: tuple[str, ...]
    chunk: int
    fps: float
    resolution_tier: int
    camera_layout: str
    camera_input_hw: tuple[int, int] | None
    view_point: str
    view_description: str | None
    prompt_format: str
    use_system_prompt: bool
    negative_prompt: str
    use_state: bool
    gripper_dims: tuple[int, ...]
    normalization: str | None
    stats: Any  # ActionStats | None (kept untyped here to avoid an import cycle)
    binarize_gripper: bool
    steps: int
    guidance: float
    guidance_steps: int | None
    guidance_interval: tuple[int, int] | None
    schedule: str
    flow_shift: float
    seed: int
    cond_frames: tuple[int, ...] | None = None
    noise_rng: str = "torch"
    system_prompt_kind: str = "video"

    @property
    def action_start_offset(self) -> int:
        """Pixel frame that action row 0 lines up with: 0 with a state row, else 1."""
        return 0 if self.use_state else 1

    @property
    def action_rows(self) -> int:
        """Action tokens in the sequence: the chunk plus the state row when there is one."""
        return self.chunk + (1 if self.use_state else 0)

    @property
    def num_frames(self) -> int:
        """Pixel frames of the video the model sees (the observation plus one per action)."""
        return self.chunk + 1

    @property
    def cameras(self) -> tuple[str, ...]:
        """Camera names a live request supplies."""
        return DROID_CAMERAS if self.camera_layout == "droid_concat" else ("image",)

    def with_overrides(self, **overrides: Any) -> Profile:
        """A copy with fields replaced; ``None`` values are ignored. Validates the result.

        Changing ``domain_name`` also resolves ``domain_id`` and ``raw_action_dim`` from the domain table unless
        they are given too.
        """
        changes = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ProfileError(f"unknown profile field(s) {unknown}; expected some of {sorted(self.field_names())}")
        if "domain_name" in changes and changes["domain_name"] != self.domain_name:
            name = changes["domain_name"]
            if name not in DOMAINS:
                raise ProfileError(f"unknown domain_name {name!r}; expected one of {sorted(DOMAINS)}")
            domain_id, width = DOMAINS[name]
            changes.setdefault("domain_id", domain_id)
            if "raw_action_dim" not in changes:
                if width is None:
                    raise ProfileError(
                        f"domain_name {name!r} has no fixed action width; give raw_action_dim explicitly"
                    )
                changes["raw_action_dim"] = width
            changes.setdefault("action_space", "domain")
        if "raw_action_dim" in changes and "dimension_names" not in changes:
            changes["dimension_names"] = domain_dimension_names(
                changes.get("domain_name", self.domain_name), int(changes["raw_action_dim"])
            )
            if "gripper_dims" not in changes and self.gripper_dims:
                width = int(changes["raw_action_dim"])
                changes["gripper_dims"] = tuple(d for d in self.gripper_dims if d < width)
        for key in ("camera_input_hw", "cond_frames", "gripper_dims", "dimension_names", "guidance_interval"):
            if key in changes and changes[key] is not None:
                changes[key] = tuple(changes[key])
        profile = dataclasses.replace(self, **changes)
        profile.validate()
        return profile

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all profile fields (the override keys)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def validate(self) -> None:
        """Raise ProfileError naming the first field whose value is out of range or inconsistent."""

        def bad(field: str, value: Any, expected: str) -> ProfileError:
            return ProfileError(f"profile {self.name!r}: {field}={value!r}; expected {expected}")

        if self.mode not in MODES:
            raise bad("mode", self.mode, f"one of {list(MODES)}")
        if not 0 <= self.domain_id < 32:
            raise bad("domain_id", self.domain_id, "an integer in [0, 32)")
        if not 1 <= self.raw_action_dim <= MAX_ACTION_DIM:
            raise bad("raw_action_dim", self.raw_action_dim, f"an integer in [1, {MAX_ACTION_DIM}]")
        if len(self.dimension_names) != self.raw_action_dim:
            raise bad("dimension_names", self.dimension_names, f"{self.raw_action_dim} names")
        if not 1 <= self.chunk <= limits.MAX_CHUNK:
            raise bad("chunk", self.chunk, f"an integer in [1, {limits.MAX_CHUNK}]")
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and 0 < self.fps <= limits.MAX_FPS):
            raise bad("fps", self.fps, f"a finite number in (0, {limits.MAX_FPS:g}] (Hz)")
        if self.use_state and not float(self.fps).is_integer():
            # NVIDIA's server keeps fps an integer in the caption and the positions; a fraction has no server twin
            raise bad("fps", self.fps, "a whole number for a profile with a state row (NVIDIA's server uses int fps)")
        if self.resolution_tier not in RESOLUTION_TIERS:
            raise bad("resolution_tier", self.resolution_tier, f"one of {list(RESOLUTION_TIERS)}")
        if self.camera_layout not in CAMERA_LAYOUTS:
            raise bad("camera_layout", self.camera_layout, f"one of {list(CAMERA_LAYOUTS)}")
        if self.view_point not in VIEW_POINT_SENTENCES:
            raise bad("view_point", self.view_point, f"one of {sorted(VIEW_POINT_SENTENCES)}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise bad("prompt_format", self.prompt_format, f"one of {list(PROMPT_FORMATS)}")
        if any(not 0 <= d < self.raw_action_dim for d in self.gripper_dims):
            raise bad("gripper_dims", self.gripper_dims, f"column indices below raw_action_dim={self.raw_action_dim}")
        if self.normalization is not None and self.normalization not in NORMALIZATIONS:
            raise bad("normalization", self.normalization, f"None or one of {list(NORMALIZATIONS)}")
        if self.normalization is not None and self.stats is None:
            raise bad("stats", None, f"action statistics for normalization {self.normalization!r}")
        if self.stats is not None:
            self.stats.check(self.normalization, self.raw_action_dim)
        if not 1 <= self.steps <= limits.MAX_STEPS:
            raise bad("steps", self.steps, f"an integer in [1, {limits.MAX_STEPS}]")
        if not (math.isfinite(self.guidance) and 0 <= self.guidance <= limits.MAX_GUIDANCE):
            raise bad("guidance", self.guidance, f"a finite number in [0, {limits.MAX_GUIDANCE:g}]")
        if self.guidance_steps is not None and not 0 <= self.guidance_steps <= limits.MAX_STEPS:
            raise bad("guidance_steps", self.guidance_steps, f"None or an integer in [0, {limits.MAX_STEPS}]")
        if self.guidance_interval is not None and (
                len(self.guidance_interval) != 2
                or not 0 <= self.guidance_interval[0] < self.guidance_interval[1] <= limits.MAX_TIMESTEP):
            raise bad("guidance_interval", self.guidance_interval,
                      f"None or (low, high) integer timesteps with 0 <= low < high <= {limits.MAX_TIMESTEP}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", self.schedule, f"one of {list(SCHEDULES)}")
        if not (math.isfinite(self.flow_shift) and 0 < self.flow_shift <= limits.MAX_FLOW_SHIFT):
            raise bad("flow_shift", self.flow_shift, f"a finite number in (0, {limits.MAX_FLOW_SHIFT:g}]")
        if self.noise_rng not in NOISE_RNGS:
            raise bad("noise_rng", self.noise_rng, f"one of {list(NOISE_RNGS)}")
        if self.system_prompt_kind not in SYSTEM_PROMPT_KINDS:
            raise bad("system_prompt_kind", self.system_prompt_kind, f"one of {list(SYSTEM_PROMPT_KINDS)}")
        if self.camera_input_hw is not None and (len(self.camera_input_hw) != 2 or min(self.camera_input_hw) < 16):
            raise bad("camera_input_hw", self.camera_input_hw, "None or (height, width), each >= 16")
        if self.cond_frames is not None and any(i < 0 for i in self.cond_frames):
            raise bad("cond_frames", self.cond_frames, "non-negative latent frame indices")
        if not 0 <= self.seed < 2**63:
            raise bad("seed", self.seed, "an integer in [0, 2**63)")


RELEASED_DROID_POLICY = Profile(
    name="released_droid_policy",
    mode="policy",
    domain_name="droid_lerobot",
    domain_id=8,
    raw_action_dim=8,
    action_space="joint_position",
    dimension_names=(*(f"joint_{i}" for i in range(1, 8)), "gripper"),
    chunk=32,
    fps=15.0,
    resolution_tier=480,
    camera_layout="droid_concat",
    camera_input_hw=(540, 640),
    view_point="concat_view",
    view_description=DROID_CONCAT_LAYOUT_SENTENCE,
    prompt_format="plain",
    use_system_prompt=False,
    negative_prompt="",
    use_state=True,
    gripper_dims=(7,),
    normalization=None,
    stats=None,
    binarize_gripper=False,
    steps=4,
    guidance=3.0,
    guidance_steps=None,
    guidance_interval=None,
    schedule="native",
    flow_shift=5.0,
    seed=0,
    system_prompt_kind="image",
)

BASE = Profile(
    name="base",
    mode="policy",
    domain_name="droid_lerobot",
    domain_id=8,
    raw_action_dim=10,
    action_space="domain",
    dimension_names=domain_dimension_names("droid_lerobot", 10),
    chunk=16,
    fps=15.0,
    resolution_tier=480,
    camera_layout="single",
    camera_input_hw=None,
    view_point="ego_view",
    view_description=None,
    prompt_format="json",
    use_system_prompt=False,
    negative_prompt="",
    use_state=False,
    gripper_dims=(),
    normalization=None,
    stats=None,
    binarize_gripper=False,
    steps=30,
    guidance=1.0,
    guidance_steps=None,
    guidance_interval=None,
    schedule="native",
    flow_shift=10.0,
    seed=0,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (RELEASED_DROID_POLICY, BASE)}


def get_profile(name: str) -> Profile:
    """Look a profile up by name."""
    if name not in PROFILES:
        raise ProfileError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}")
    return PROFILES[name]
