"""Fast paths of the Wan VAE encode for the policy's lone observation frame.

Two independent, exact speed-ups:

* ``use_single_frame_conv2d``: the causal 3-D convs of a lone uncached frame as 2-D convs.
* ``GraphedEncoder``: the whole encode of a fixed-shape frame replayed from a CUDA graph. The encoder is
  launch-bound at this size (H100: ~20 ms of kernel launches for ~3 ms of GPU work), so the replay removes most
  of its time.

The policy encodes one pixel frame (the observation) with an empty feature cache. Each causal conv then pads
the time axis with ``kernel_t - 1`` zero frames in front, so only its last temporal tap ever meets real data:
the output equals a 2-D convolution of the frame with ``weight[:, :, -1]``. The 2-D form skips the zero taps
(a third of a 3x3x3 conv's work) and runs cuDNN's 2-D kernels, which are faster on this shape (H100: the
one-frame encode went from 10.4 to 7.2 ms). Multi-frame and cached (chunked) calls keep the 3-D path.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


def _causal_conv_forward(self: torch.nn.Conv3d, x: torch.Tensor, cache_x: torch.Tensor | None = None
                         ) -> torch.Tensor:
    pad_w, _, pad_h, _, pad_t, _ = self._padding  # (w, w, h, h, 2 * t_pad, 0) as the layer stores it
    single = (x.shape[2] == 1 and cache_x is None and pad_t == self.kernel_size[0] - 1 and self.stride[0] == 1
              and self.dilation == (1, 1, 1) and self.groups == 1)
    if not single:
        return self._cosmos3_conv3d(x, cache_x)
    out = F.conv2d(x[:, :, 0], self.weight[:, :, -1], self.bias, self.stride[1:], (pad_h, pad_w))
    return out.unsqueeze(2)


def use_single_frame_conv2d(vae: torch.nn.Module) -> int:
    """Route the encoder's causal convs through the 2-D form for lone uncached frames; returns how many."""
    count = 0
    for module in vae.encoder.modules():
        if hasattr(module, "_padding") and isinstance(module, torch.nn.Conv3d) and \
                not hasattr(module, "_cosmos3_conv3d"):
            module._cosmos3_conv3d = module.forward
            module.forward = types.MethodType(_causal_conv_forward, module)
            count += 1
    return count


class GraphedEncoder:
    """``vae.encode(x).latent_dist.mode()`` on CUDA, replayed from one captured graph per input shape.

    Only inputs of at most ``max_frames`` frames are graphed (the policy's observation); longer videos run eagerly,
    as does everything on CPU. The returned tensor is the graph's static output: read it before the next call.
    """

    def __init__(self, vae: torch.nn.Module, max_frames: int = 1, max_graphs: int = 4) -> None:
        self.vae = vae
        self.max_frames = max_frames
        self.max_graphs = max_graphs
        self._graphs: dict[tuple[object, ...], tuple[torch.Tensor, torch.Tensor, torch.cuda.CUDAGraph] | None] = {}

    def eager(self, x: torch.Tensor) -> torch.Tensor:
        """The plain encode: ``[B, 3, T, H, W]`` pixels in [-1, 1] -> latent means ``[B, C, T', H/16, W/16]``."""
        return self.vae.encode(x).latent_dist.mode()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Latent means of ``x`` (as ``eager``), from the shape's graph when it has one."""
        if not x.is_cuda or x.shape[2] > self.max_frames:
            return self.eager(x)
        key = (tuple(x.shape), x.dtype, x.device)
        if key not in self._graphs:
            if len(self._graphs) >= self.max_graphs:  # a new camera size: drop the oldest shape's graph
                self._graphs.pop(next(iter(self._graphs)))
            self._graphs[key] = self._capture(x, self.eager)
        entry = self._graphs[key]
        if entry is None:  # capture failed once for this shape: stay eager
            return self.eager(x)
        static_in, static_out, graph = entry
        static_in.copy_(x)
        graph.replay()
        return static_out

    @staticmethod
    def _capture(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.CUDAGraph] | None:
        static_in = x.clone()
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        try:
            with torch.cuda.stream(side):
                fn(static_in)  # warm kernels and workspaces outside the graph
            torch.cuda.current_stream(x.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=torch.cuda.Stream(x.device)):  # the default one may be another GPU's
                static_out = fn(static_in)
        except RuntimeError as exc:
            log.warning("capturing the VAE encode failed (%s); it runs eagerly", exc)
            return None
        return static_in, static_out, graph
