"""Probe of attention kernels beyond torch's at the generation stream's shape (a GPU-only measurement script).

Shape: both CFG branches, 32 query heads over 8 KV heads, 3093 queries over 3328 keys (zero-padded text slot +
own keys), head dim 128. Times (median of CUDA-event timings) and errors against torch's cuDNN bf16 kernel for:

* ``flash_attn.cute`` (the ``flash-attn-4`` package: its Hopper kernel, bf16; its FP8 path is SM100-only);
* cuDNN's FP8 SDPA through the cuDNN frontend (``nvidia-cudnn-frontend``), per-tensor scales;

and whether each replays from a CUDA graph. Usage: ``python3 bench/attention_probe.py OUT.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
import traceback

import torch

B, HQ, HKV, NQ, NK, D = 2, 32, 8, 3093, 3328, 128
FP8_MAX = 448.0


def timed(fn, repeats: int = 30) -> float:
    """Median milliseconds of ``fn()`` after 5 warm-up calls."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def graph_replays(fn, reference: torch.Tensor) -> dict:
    """Capture ``fn`` (returning a tensor) in a CUDA graph, replay it and compare with ``reference``."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=torch.cuda.Stream()):
        out = fn()
    graph.replay()
    torch.cuda.synchronize()
    return {"captured": True, "replay_max_abs_vs_eager": float((out.float() - reference.float()).abs().max()),
            "replay_ms": timed(graph.replay)}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative L2 error of ``a`` against ``b``."""
    return float((a.float() - b.float()).norm() / b.float().norm())


def main(out_path: str) -> None:
    """Run every probe and write ``out_path``."""
    results: dict = {"shape": {"batch": B, "q_heads": HQ, "kv_heads": HKV, "queries": NQ, "keys": NK, "head_dim": D}}
    flops = 4.0 * B * HQ * NQ * NK * D
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(B, HQ, NQ, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(B, HKV, NK, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn(B, HKV, NK, D, device="cuda", dtype=torch.bfloat16, generator=gen)

    def cudnn_bf16() -> torch.Tensor:
        return torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, False, False)[0]

    reference = cudnn_bf16()
    ms = timed(cudnn_bf16)
    results["torch_cudnn_bf16"] = {"ms": ms, "tflops": flops / ms / 1e9}
    print("torch cuDNN bf16", results["torch_cudnn_bf16"], flush=True)

    try:  # flash-attn-4 (CuTe DSL), Hopper bf16 kernel; layout [B, N, H, D]
        from flash_attn.cute import flash_attn_func

        qt, kt, vt = (t.transpose(1, 2).contiguous() for t in (q, k, v))

        def fa4() -> torch.Tensor:
            out = flash_attn_func(qt, kt, vt, return_lse=True)
            return out[0] if isinstance(out, tuple) else out

        first = fa4().transpose(1, 2)
        ms = timed(fa4)
        entry = {"ms": ms, "tflops": flops / ms / 1e9, "rel_err_vs_cudnn_bf16": rel(first, reference)}
        try:
            entry["graph"] = graph_replays(fa4, first.transpose(1, 2))
        except Exception as exc:
            entry["graph"] = {"captured": False, "error": f"{type(exc).__name__}: {exc}"[:400]}
        results["flash_attn_4_bf16"] = entry
    except Exception as exc:
        results["flash_attn_4_bf16"] = {"error": f"{type(exc).__name__}: {exc}"[:600],
                                        "trace": traceback.format_exc()[-1500:]}
    print("flash-attn-4", results["flash_attn_4_bf16"], flush=True)

    try:  # cuDNN frontend FP8 SDPA, per-tensor scales
        import cudnn

        def quant(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            scale = t.float().abs().amax().clamp_min(1e-12) / FP8_MAX
            return (t.float() / scale).to(torch.float8_e4m3fn), scale.reshape(1, 1, 1, 1)

        (q8, sq), (k8, sk), (v8, sv) = quant(q), quant(k), quant(v)
        one = torch.ones(1, 1, 1, 1, device="cuda", dtype=torch.float32)
        s_scale = torch.full((1, 1, 1, 1), FP8_MAX, device="cuda", dtype=torch.float32)  # probabilities in [0, 1]
        s_descale = 1.0 / s_scale
        handle = cudnn.create_handle()
        cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream().cuda_stream)
        entry = {"cudnn_backend_version": cudnn.backend_version()}
        for out_type in ("BFLOAT16", "FP8_E4M3"):
            try:
                graph = cudnn.pygraph(io_data_type=cudnn.data_type.FP8_E4M3,
                                      intermediate_data_type=cudnn.data_type.FLOAT,
                                      compute_data_type=cudnn.data_type.FLOAT, handle=handle)
                tq, tk, tv = graph.tensor_like(q8), graph.tensor_like(k8), graph.tensor_like(v8)
                tensors = {name: graph.tensor_like(t) for name, t in
                           (("dq", sq), ("dk", sk), ("dv", sv), ("ds", s_descale), ("ss", s_scale), ("so", one))}
                o, stats, amax_s, amax_o = graph.sdpa_fp8(
                    q=tq, k=tk, v=tv, descale_q=tensors["dq"], descale_k=tensors["dk"], descale_v=tensors["dv"],
                    descale_s=tensors["ds"], scale_s=tensors["ss"], scale_o=tensors["so"], attn_scale=D ** -0.5,
                    generate_stats=True)
                out_dtype = torch.bfloat16 if out_type == "BFLOAT16" else torch.float8_e4m3fn
                o_buf = torch.empty(B, HQ, NQ, D, device="cuda", dtype=out_dtype)
                o.set_output(True).set_dim(list(o_buf.shape)).set_stride(list(o_buf.stride())).set_data_type(
                    getattr(cudnn.data_type, out_type))
                stats_buf = torch.empty(B, HQ, NQ, 1, device="cuda", dtype=torch.float32)
                stats.set_output(True).set_data_type(cudnn.data_type.FLOAT).set_dim(list(stats_buf.shape)) \
                    .set_stride(list(stats_buf.stride()))
                amax_bufs = [torch.empty(1, 1, 1, 1, device="cuda", dtype=torch.float32) for _ in range(2)]
                for tensor in (amax_s, amax_o):
                    tensor.set_output(True).set_dim([1, 1, 1, 1]).set_stride([1, 1, 1, 1]) \
                        .set_data_type(cudnn.data_type.FLOAT)
                graph.validate()
                graph.build_operation_graph()
                graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
                graph.check_support()
                graph.build_plans()
                workspace = torch.empty(max(1, graph.get_workspace_size()), device="cuda", dtype=torch.uint8)
                pack = {tq: q8, tk: k8, tv: v8, tensors["dq"]: sq, tensors["dk"]: sk, tensors["dv"]: sv,
                        tensors["ds"]: s_descale, tensors["ss"]: s_scale, tensors["so"]: one, o: o_buf,
                        stats: stats_buf, amax_s: amax_bufs[0], amax_o: amax_bufs[1]}

                def run(graph=graph, pack=pack, workspace=workspace, o_buf=o_buf) -> torch.Tensor:
                    cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream().cuda_stream)
                    graph.execute(pack, workspace, handle=handle)
                    return o_buf

                run()
                torch.cuda.synchronize()
                got = o_buf.float()
                ms = timed(run)
                sub = {"ms": ms, "tflops": flops / ms / 1e9, "rel_err_vs_cudnn_bf16": rel(got, reference)}
                try:
                    sub["graph"] = graph_replays(run, got)
                except Exception as exc:
                    sub["graph"] = {"captured": False, "error": f"{type(exc).__name__}: {exc}"[:400]}
                entry[f"out_{out_type}"] = sub
            except Exception as exc:
                entry[f"out_{out_type}"] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
            print("cuDNN FP8", out_type, entry[f"out_{out_type}"], flush=True)
        results["cudnn_frontend_fp8"] = entry
    except Exception as exc:
        results["cudnn_frontend_fp8"] = {"error": f"{type(exc).__name__}: {exc}"[:600],
                                         "trace": traceback.format_exc()[-1500:]}
        print("cuDNN FP8", results["cudnn_frontend_fp8"], flush=True)
    with open(out_path, "w") as handle_out:
        json.dump(results, handle_out, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
