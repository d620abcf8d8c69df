"""CFG-parallel: the conditional branch on one device, the unconditional one on a second, in one process.

Each device holds the whole transformer. Per guided step both devices get the same latents (a ~1 MB copy),
each runs one branch of 3093 tokens instead of one device running a batch of two, and the unconditional
velocity (~1 MB) comes back for the guidance combine. Steps without guidance run on the first device alone.

Two devices in one process rather than torch.distributed: the exchange is two small peer copies a step, which
the stream ordering of cross-device copies already synchronises without any host wait; a second process would
add NCCL start-up and a second copy of the text tower for no gain. All launches are asynchronous, so the
host queues device 1's step and then device 0's and the two run at the same time.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import torch

from ..errors import InputError

Evaluator = Callable[[torch.Tensor, torch.Tensor, int, bool], list[tuple[torch.Tensor, torch.Tensor]]]
# tensor attributes the fast path hangs on layers (fused projections, FP8 copies): replicated, views kept views
_FUSED = ("_cosmos3_qkv", "_cosmos3_gate_up", "_cosmos3_qkv_scale", "_cosmos3_gate_up_scale")


def parse_devices(devices: str | list[str] | tuple[str, ...]) -> list[torch.device]:
    """``"cuda:0,cuda:1"`` -> devices; one device, or two for CFG-parallel (CFG has two branches)."""
    names = [d.strip() for d in devices.split(",")] if isinstance(devices, str) else [str(d).strip() for d in devices]
    names = [n for n in names if n]
    if not 1 <= len(names) <= 2:
        raise InputError(f"devices {devices!r}; expected one device or two comma-separated (one per CFG branch)")
    try:
        parsed = [torch.device(n) for n in names]
    except RuntimeError as exc:
        raise InputError(f"devices {devices!r}: {exc}") from exc
    if len(parsed) == 2:
        if parsed[0].type != parsed[1].type:
            raise InputError(f"devices {devices!r}; expected two devices of one type (e.g. cuda:0,cuda:1)")
        if parsed[0].type == "cuda" and (parsed[0].index or 0) == (parsed[1].index or 0):
            raise InputError(f"devices {devices!r}; the two CFG branches need two different GPUs")
    return parsed


def device_context(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Make ``device`` current (graph capture and replay use the current device's stream); no-op off CUDA."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _tensors(value: object) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)


def replicate(module: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """A deep copy of ``module`` with every tensor on ``device``, copied straight there (never twice on the source).

    Weights that are views of a fused tensor (the fast path's q/k/v and gate/up) stay views of the fused copy,
    so the replica takes the same memory as the original.
    """
    device = torch.device(device)
    memo: dict[int, object] = {}

    def copy_tensor(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) not in memo:
            moved = tensor.detach().to(device, copy=True)
            memo[id(tensor)] = torch.nn.Parameter(moved, requires_grad=False) if isinstance(
                tensor, torch.nn.Parameter) else moved
        return memo[id(tensor)]  # type: ignore[return-value]

    for submodule in module.modules():
        fused = [getattr(submodule, name) for name in _FUSED if isinstance(getattr(submodule, name, None),
                                                                           torch.Tensor)]
        bases = {f.untyped_storage().data_ptr(): (f, copy_tensor(f)) for f in fused}
        if bases:  # parameters and buffers below this layer that are views of a fused tensor
            for inner in submodule.modules():
                for holder in (inner._parameters, inner._buffers):
                    for tensor in holder.values():
                        if tensor is None or id(tensor) in memo:
                            continue
                        base = bases.get(tensor.untyped_storage().data_ptr())
                        if base is None:
                            continue
                        source, target = base
                        offset = tensor.storage_offset() - source.storage_offset() + target.storage_offset()
                        view = target.as_strided(tensor.shape, tensor.stride(), offset)
                        memo[id(tensor)] = torch.nn.Parameter(view, requires_grad=False) if isinstance(
                            tensor, torch.nn.Parameter) else view
        for holder in (submodule._parameters, submodule._buffers):
            for tensor in holder.values():
                if tensor is not None:
                    copy_tensor(tensor)
        for value in vars(submodule).values():  # cached FP8 copies and other tensor attributes
            for tensor in _tensors(value):
                copy_tensor(tensor)
    return copy.deepcopy(module, memo)


def parallel_evaluator(primary: object, second: object, primary_device: torch.device,
                       second_device: torch.device) -> Evaluator:
    """A step evaluator: guided steps run the conditional branch (slot 0 of ``primary``) and the unconditional
    one (slot 0 of ``second``, on ``second_device``) at once; unguided steps run ``primary`` alone.

    ``primary`` / ``second`` are fast towers (``tower(vision, action, timestep, batch)``).
    """

    def evaluate(vision: torch.Tensor, action: torch.Tensor, timestep: int, cfg: bool
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if not cfg:
            return primary(vision, action, timestep, 1)  # type: ignore[operator]
        with device_context(second_device):  # queue the second device first: it must not wait for the first
            far = second(vision.to(second_device), action.to(second_device), timestep, 1)[0]  # type: ignore[operator]
        near = primary(vision, action, timestep, 1)[0]  # type: ignore[operator]
        # the copies back are ordered after the second device's step by the copy's own stream synchronisation
        return [near, (far[0].to(primary_device), far[1].to(primary_device))]

    return evaluate
