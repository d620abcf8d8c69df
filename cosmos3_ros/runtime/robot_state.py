"""Robot state from ``sensor_msgs/JointState``: arm joints in action-column order and the gripper in [0, 1].

The released DROID policy takes ``[q1..q7 (rad), gripper (0 open .. 1 closed)]``. Checked here, in the
subscription callback, so a bad message is counted and dropped before it can reach the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError


def _positions(msg: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(msg.position, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: position is not a list of numbers ({exc})") from exc


def read_joint_positions(msg: Any, joint_names: Sequence[str], what: str = "joint state") -> np.ndarray:
    """Arm joint positions ``[len(joint_names)]`` (rad) in ``joint_names`` order.

    With ``msg.name`` filled, joints are matched by name (extra joints such as fingers are ignored); with an
    empty ``name`` list the positions must be exactly the arm joints, in order.

    Raises:
        InputError: missing joints, a wrong count, mismatched name/position lengths, or non-finite values.

    """
    names = [str(n) for n in msg.name]
    position = _positions(msg, what)
    if names:
        if len(names) != position.size:
            raise InputError(f"{what}: {len(names)} names but {position.size} positions; expected equal lengths")
        index = {name: i for i, name in enumerate(names)}
        missing = [name for name in joint_names if name not in index]
        if missing:
            raise InputError(f"{what}: lacks joints {missing}; has {names}, expected all of {list(joint_names)}")
        q = position[[index[name] for name in joint_names]]
    else:
        if position.size != len(joint_names):
            raise InputError(
                f"{what}: {position.size} positions and no names; expected {len(joint_names)} ({list(joint_names)})"
            )
        q = position
    if not np.all(np.isfinite(q)):
        bad = [name for name, v in zip(joint_names, q, strict=True) if not np.isfinite(v)]
        raise InputError(f"{what}: non-finite position for joints {bad}: {q.tolist()}")
    return q


def read_gripper(
    msg: Any, joint: str, open_position: float, closed_position: float, what: str = "gripper"
) -> float | None:
    """Gripper closure in [0, 1] (0 open, 1 closed) from ``joint``'s position, or None if the message lacks it.

    Raises:
        InputError: a non-finite gripper position.

    """
    names = [str(n) for n in msg.name]
    if joint not in names:
        return None
    position = _positions(msg, what)
    index = names.index(joint)
    if index >= position.size:
        raise InputError(f"{what}: joint {joint!r} has no position ({position.size} positions for {len(names)} names)")
    value = float(position[index])
    if not np.isfinite(value):
        raise InputError(f"{what}: non-finite position {value} for joint {joint!r}")
    span = closed_position - open_position
    return float(np.clip((value - open_position) / span, 0.0, 1.0))
