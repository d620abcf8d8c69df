"""A scripted stand-in for the policy, for timing and hand-over measurements without a GPU.

The arm circles a limit cycle (joint pairs rotate around a centre pose, the radius pulled towards a set value),
computed from the state it is given, so it closes the loop like a policy reading the robot. Each chunk adds a
seeded per-joint offset drawn from ``[-disagreement, disagreement]`` (a stochastic policy's chunk-to-chunk
disagreement). The gripper column follows the phase of the first joint pair with seeded noise around the
threshold (so hysteresis matters).

An action prefix is honoured the way the model's clean rows are: the prefix rows come back as given, and the
rows after continue from the last prefix row; the chunk's own offset then enters gradually over
``settle_steps`` rows. That last part is a modelling assumption about the real model (documented in
docs/execution.md): the simulator cannot say how Cosmos3 continues a clean prefix, only the tiny checkpoint
test shows the rows are kept.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import InputError
from ..processing.profiles import Profile, get_profile
from ..processing.request import ActionPrediction, ActionRequest
from .fr3 import FR3_HOME

_PAIRS = ((0, 1), (2, 3), (4, 5))


class ScriptedPolicy:
    """State -> ``[chunk, 8]`` chunk (7 joint targets + gripper), physical units like the released policy.

    Args:
        disagreement: half-width (rad) of the per-chunk, per-joint uniform offset.
        seed: seeds the offsets, the gripper noise and the latency jitter.
        chunk: rows per chunk; dt: seconds per row.
        latency_s: model latency; latency_jitter: relative uniform jitter on it.
        radius: limit-cycle radius (rad); period_s: time per cycle; settle_steps: see module docstring.

    """

    def __init__(self, disagreement: float = 0.05, seed: int = 0, chunk: int = 32, dt: float = 1.0 / 15.0,
                 latency_s: float = 0.66, latency_jitter: float = 0.1, radius: float = 0.25, period_s: float = 6.0,
                 settle_steps: int = 8, centre: tuple[float, ...] = FR3_HOME) -> None:
        if disagreement < 0 or latency_s < 0 or chunk < 2 or dt <= 0:
            raise InputError(f"scripted policy: disagreement {disagreement}, latency {latency_s}, chunk {chunk}, "
                             f"dt {dt}; expected >= 0, >= 0, >= 2, > 0")
        self.disagreement = float(disagreement)
        self.chunk = int(chunk)
        self.dt = float(dt)
        self.latency_s = float(latency_s)
        self.latency_jitter = float(latency_jitter)
        self.radius = float(radius)
        self.omega = 2.0 * np.pi / period_s
        self.settle_steps = max(1, int(settle_steps))
        self.centre = np.asarray(centre, dtype=np.float64)
        self._rng = np.random.default_rng(seed)
        self.chunks = 0

    def latency(self) -> float:
        """One model latency draw (s)."""
        jitter = self._rng.uniform(-self.latency_jitter, self.latency_jitter)
        return max(0.0, self.latency_s * (1.0 + jitter))

    def _advance(self, q: np.ndarray, steps: int) -> np.ndarray:
        """Joints after ``steps`` control steps on the limit cycle from ``q`` ``[7]``."""
        out = q.copy()
        seconds = steps * self.dt
        angle = self.omega * seconds
        pull = np.exp(-seconds / 1.5)
        for a, b in _PAIRS:
            rel = np.array([q[a] - self.centre[a], q[b] - self.centre[b]])
            r = float(np.hypot(*rel))
            phase = float(np.arctan2(rel[1], rel[0])) if r > 1e-9 else 0.0
            r_new = self.radius + (r - self.radius) * pull
            out[a] = self.centre[a] + r_new * np.cos(phase + angle)
            out[b] = self.centre[b] + r_new * np.sin(phase + angle)
        out[6] = self.centre[6] + 0.5 * (out[0] - self.centre[0])
        return out

    def _gripper(self, q: np.ndarray) -> float:
        phase = np.arctan2(q[1] - self.centre[1], q[0] - self.centre[0])
        return float(np.clip(0.5 + 0.7 * np.sin(phase) + self._rng.normal(0.0, 0.08), 0.0, 1.0))

    def predict(self, state: np.ndarray, prefix: np.ndarray | None = None) -> np.ndarray:
        """``[chunk, 8]`` from ``state [8]`` (7 joints + gripper) and optional clean ``prefix [P, 8]``."""
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        if state.shape[0] != 8:
            raise InputError(f"scripted policy: state has {state.shape[0]} values; expected 8")
        offset = self._rng.uniform(-self.disagreement, self.disagreement, size=7)
        out = np.zeros((self.chunk, 8))
        start = 0
        q0 = state[:7]
        if prefix is not None and len(prefix) > 0:
            prefix = np.asarray(prefix, dtype=np.float64)
            if prefix.ndim != 2 or prefix.shape[1] != 8 or prefix.shape[0] >= self.chunk:
                raise InputError(f"scripted policy: prefix shape {list(prefix.shape)}; expected [P < {self.chunk}, 8]")
            start = prefix.shape[0]
            out[:start] = prefix
            q0 = prefix[-1, :7]
        for k in range(start, self.chunk):
            steps = k - start + 1
            weight = min(1.0, steps / self.settle_steps) if start > 0 else 1.0
            q = self._advance(q0, steps)
            out[k, :7] = q + weight * offset
            out[k, 7] = self._gripper(q)
        self.chunks += 1
        return out.astype(np.float32)


class ScriptedActionModel:
    """``ScriptedPolicy`` behind the node's model interface (``profile`` + ``predict``): sleeps the latency, reads
    ``request.state`` and ``request.action_prefix``, ignores the images. Profile: the released DROID policy's.
    """

    def __init__(self, policy: ScriptedPolicy, profile: Profile | None = None,
                 sleep: Any = time.sleep) -> None:
        self.policy = policy
        self.profile = profile if profile is not None else get_profile("released_droid_policy")
        self._sleep = sleep

    def predict(self, request: ActionRequest) -> ActionPrediction:
        """One chunk after the configured latency (wall clock)."""
        start = time.perf_counter()
        if request.state is None:
            raise InputError("scripted policy: the request has no state")
        actions = self.policy.predict(np.asarray(request.state), None if request.action_prefix is None
                                      else np.asarray(request.action_prefix))
        remaining = self.policy.latency() - (time.perf_counter() - start)
        if remaining > 0:
            self._sleep(remaining)
        profile = self.profile
        return ActionPrediction(actions=actions, rollout=None, mode="policy", profile=profile.name,
                                domain_name=profile.domain_name, domain_id=profile.domain_id,
                                dimension_names=profile.dimension_names, fps=profile.fps, seed=0,
                                timings_ms={"total": (time.perf_counter() - start) * 1e3})
