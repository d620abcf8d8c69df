"""FP8 weight storage: transformer linear weights as float8_e4m3fn with one float32 scale per output channel.

Made for GPUs with 24 GB: the bf16 Nano transformer alone is ~27 GiB, its FP8 form about half. Weights are
quantised tensor by tensor while the checkpoint is read (``Fp8Storage`` is the loader's per-tensor hook), so the
full bf16 model never exists on the GPU. Only the linear layers inside the transformer blocks are stored in FP8
(both the text and the generation stream); embeddings, patch/action projections, the timestep MLP and every
norm keep the serving dtype.

Per-channel scales make fused projections exact: concatenating q/k/v (or gate/up) rows concatenates their
scales. The fast tower multiplies FP8 x FP8 (``torch._scaled_mm``); other paths (the text tower, the reference
loop) dequantise one layer's weight at a time (``Fp8Linear.forward``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FP8_MAX = 448.0  # largest finite float8_e4m3fn
WEIGHT_FORMATS = ("bf16", "fp8")


def quantize_fp8(weight: torch.Tensor, per_channel: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, K]`` weight -> (float8_e4m3fn ``[N, K]``, float32 scale ``[1, N]`` per output channel, or ``[]``)."""
    if not per_channel:
        scale = weight.float().abs().amax().clamp_min(1e-12) / FP8_MAX
        return (weight.float() / scale).to(torch.float8_e4m3fn), scale
    scale = weight.float().abs().amax(dim=1).clamp_min(1e-12) / FP8_MAX
    return (weight.float() / scale[:, None]).to(torch.float8_e4m3fn), scale.view(1, -1).contiguous()


class Fp8Linear(torch.nn.Module):
    """A bias-optional linear layer whose weight is stored as FP8 ``[out, in]`` with a float32 scale ``[out]``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, *,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = torch.nn.Parameter(torch.empty(out_features, in_features, device=device,
                                                     dtype=torch.float8_e4m3fn), requires_grad=False)
        self.register_buffer("weight_scale", torch.ones(out_features, device=device, dtype=torch.float32))
        self.bias = torch.nn.Parameter(torch.empty(out_features, device=device, dtype=dtype),
                                       requires_grad=False) if bias else None

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight in ``dtype`` (float32 products, rounded once)."""
        return (self.weight.float() * self.weight_scale[:, None]).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T (+ bias)`` with the weight dequantised for this call only."""
        return F.linear(x, self.dequantized(x.dtype), self.bias)

    def extra_repr(self) -> str:
        """Shown by ``print(module)``."""
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8"


def is_fp8_linear(module: object) -> bool:
    """Whether ``module`` stores its weight in FP8 (``Fp8Linear``)."""
    return isinstance(module, Fp8Linear)


class Fp8Storage:
    """Per-tensor loader hook: quantises the weights of the transformer blocks' linear layers as they arrive.

    Use: build the model on the meta device, pass the hook to the loader (``convert(name, tensor)`` for each
    tensor, already in the serving dtype on the target device), then ``install(model, state)`` before
    ``load_state_dict(state, assign=True)``.
    """

    def __init__(self, model: torch.nn.Module, prefix: str = "layers.") -> None:
        self.targets = {f"{name}.weight": name for name, module in model.named_modules()
                        if isinstance(module, torch.nn.Linear) and name.startswith(prefix)}
        self.scales: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` as it should be stored: quantised if it is a target weight (its scale is kept aside)."""
        if name not in self.targets:
            return tensor
        weight8, scale = quantize_fp8(tensor)
        self.scales[name] = scale.view(-1)
        return weight8

    def install(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> int:
        """Swap every quantised ``nn.Linear`` for an ``Fp8Linear`` (on meta) and add the scales to ``state``."""
        count = 0
        for weight_name, module_name in self.targets.items():
            if weight_name not in self.scales:
                continue
            old = model.get_submodule(module_name)
            parent_name, _, attr = module_name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            bias = old.bias is not None
            setattr(parent, attr, Fp8Linear(old.in_features, old.out_features, bias, device="meta",
                                            dtype=old.weight.dtype))
            state[f"{module_name}.weight_scale"] = self.scales.pop(weight_name)
            count += 1
        return count


def storage_bytes(model: torch.nn.Module) -> dict[str, int]:
    """Bytes of parameters and buffers by dtype name (to check what a model holds)."""
    totals: dict[str, int] = {}
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_meta:
            continue
        key = str(tensor.dtype).removeprefix("torch.")
        totals[key] = totals.get(key, 0) + tensor.numel() * tensor.element_size()
    return totals
