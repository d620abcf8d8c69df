"""The tiny checkpoint writer: published layout, determinism, diffusers compatibility, tokenizer."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from cosmos3_ros.engine.tiny_checkpoint import (
    SPECIAL_TOKENS,
    TINY_TRANSFORMER_CONFIG,
    TINY_VAE_CONFIG,
    TRANSFORMER_SHARDS,
    make_tiny_checkpoint,
    make_tiny_tokenizer,
)
from cosmos3_ros.errors import CheckpointError, ProfileError

EXPECTED_FILES = {
    "model_index.json",
    "config.json",
    "checkpoint.json",
    "model.safetensors.index.json",
    "transformer/config.json",
    *(f"transformer/{name}" for name in TRANSFORMER_SHARDS),
    "transformer/diffusion_pytorch_model.safetensors.index.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
    "text_tokenizer/tokenizer.json",
    "text_tokenizer/tokenizer_config.json",
    "text_tokenizer/special_tokens_map.json",
    "vision_encoder/config.json",
    "vision_encoder/model.safetensors",
}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for rel in sorted(_files(root)):
        h.update(rel.encode())
        h.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return h.hexdigest()


def _load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _shard_keys(root: Path) -> dict[str, list[str]]:
    out = {}
    for name in TRANSFORMER_SHARDS:
        with safe_open(str(root / "transformer" / name), framework="pt") as f:
            out[name] = list(f.keys())
    return out


@pytest.fixture
def diffusers_loadable(monkeypatch):
    """Let diffusers load Cosmos3OmniTransformer in a venv without `accelerate`.

    diffusers refuses `from_pretrained` for models with `_keep_in_fp32_modules` when `accelerate` is
    missing (it cannot use low_cpu_mem_usage). Our checkpoint is float32 throughout, so keeping the
    time embedder in fp32 is a no-op and switching the list off changes nothing numerically.
    """
    from diffusers import Cosmos3OmniTransformer

    if importlib.util.find_spec("accelerate") is None:
        monkeypatch.setattr(Cosmos3OmniTransformer, "_keep_in_fp32_modules", None)


# ------------------------------------------------------------------------------------------------ layout


def test_layout_has_exactly_the_published_files(tiny_checkpoint):
    assert _files(tiny_checkpoint) == EXPECTED_FILES


def test_index_maps_every_shard_key_and_keeps_lm_head(tiny_checkpoint):
    index = _load_json(tiny_checkpoint / "transformer" / "diffusion_pytorch_model.safetensors.index.json")
    shard_keys = _shard_keys(tiny_checkpoint)
    assert len(shard_keys) == 3
    from_shards = {k: name for name, keys in shard_keys.items() for k in keys}
    assert index["weight_map"] == from_shards
    assert "lm_head.weight" in from_shards
    # A decoder layer is cut across two shards, like the real split.
    assert any(len({from_shards[k] for k in from_shards if k.startswith(f"layers.{i}.")}) > 1 for i in range(2))

    total = 0
    for name in TRANSFORMER_SHARDS:
        with safe_open(str(tiny_checkpoint / "transformer" / name), framework="pt") as f:
            assert f.metadata() == {"format": "pt"}
            for k in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                t = f.get_tensor(k)
                assert t.dtype == torch.float32
                total += t.numel() * t.element_size()
    assert index["metadata"]["total_size"] == total

    root_index = _load_json(tiny_checkpoint / "model.safetensors.index.json")
    assert root_index["metadata"] == index["metadata"]
    assert root_index["weight_map"] == {k: f"transformer/{v}" for k, v in index["weight_map"].items()}


def test_shard_keys_are_the_diffusers_state_dict_keys(tiny_checkpoint):
    from diffusers import Cosmos3OmniTransformer

    expected = set(Cosmos3OmniTransformer(**TINY_TRANSFORMER_CONFIG).state_dict())
    assert {k for keys in _shard_keys(tiny_checkpoint).values() for k in keys} == expected


def test_metadata_files(tiny_checkpoint):
    index = _load_json(tiny_checkpoint / "model_index.json")
    assert index["_class_name"] == "Cosmos3OmniPipeline"
    assert index["transformer"] == ["diffusers", "Cosmos3OmniTransformer"]
    assert index["sound_tokenizer"] == [None, None] and index["enable_safety_checker"] is False

    tcfg = _load_json(tiny_checkpoint / "transformer" / "config.json")
    assert tcfg["max_action_dim"] == 64 and tcfg["freeze_und"] is True and tcfg["model_type"] == "cosmos3_omni"
    assert all(tcfg[k] == v for k, v in TINY_TRANSFORMER_CONFIG.items())
    assert tcfg["vocab_size"] % 64 == 0

    root = _load_json(tiny_checkpoint / "config.json")
    assert root["model_type"] == "cosmos3" and root["variant"] == "nano" and root["vocab_size"] == tcfg["vocab_size"]

    meta = _load_json(tiny_checkpoint / "checkpoint.json")
    assert meta["model_name"] == "Cosmos3-Nano-Policy-DROID-tiny" and meta["seed"] == 0
    assert meta["training_config"]["format_prompt_as_json"] is False
    assert meta["training_config"]["domain_id"] == 8

    sched = _load_json(tiny_checkpoint / "scheduler" / "scheduler_config.json")
    assert sched["_class_name"] == "UniPCMultistepScheduler" and sched["use_karras_sigmas"] is True

    vae = _load_json(tiny_checkpoint / "vae" / "config.json")
    assert all(vae[k] == v for k, v in TINY_VAE_CONFIG.items())
    assert len(vae["latents_mean"]) == len(vae["latents_std"]) == 48
    assert min(vae["latents_std"]) >= 0.5


# ------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_differs(tmp_path, tiny_checkpoint):
    rng_before = torch.get_rng_state()
    again = make_tiny_checkpoint(tmp_path / "again", seed=0)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone
    assert _digest(again) == _digest(tiny_checkpoint)

    other = make_tiny_checkpoint(tmp_path / "other", seed=1)
    assert _digest(other) != _digest(tiny_checkpoint)
    for name in TRANSFORMER_SHARDS:
        a = (tiny_checkpoint / "transformer" / name).read_bytes()
        assert (other / "transformer" / name).read_bytes() != a


def test_edge_variant(tmp_path):
    edge = make_tiny_checkpoint(tmp_path / "edge", seed=0, variant="edge")
    tcfg = _load_json(edge / "transformer" / "config.json")
    assert (tcfg["hidden_act"], tcfg["qk_norm_for_text"], tcfg["use_und_k_norm_for_gen"]) == ("relu2", False, True)
    sched = _load_json(edge / "scheduler" / "scheduler_config.json")
    assert sched["_class_name"] == "Cosmos3EdgeUniPCMultistepScheduler" and sched["flow_shift"] == 3.0
    meta = _load_json(edge / "checkpoint.json")
    assert meta["model_name"] == "Cosmos3-Edge-Policy-DROID-tiny"
    assert meta["training_config"]["format_prompt_as_json"] is True
    keys = {k for keys in _shard_keys(edge).values() for k in keys}
    assert "layers.0.self_attn.k_norm_und_for_gen.weight" in keys
    assert "layers.0.self_attn.norm_q.weight" not in keys and "layers.0.mlp.gate_proj.weight" not in keys


def test_bad_variant_and_non_empty_dir(tmp_path):
    with pytest.raises(ProfileError, match=r"'pico'.*edge.*nano"):
        make_tiny_checkpoint(tmp_path / "x", variant="pico")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "stale.txt").write_text("x")
    with pytest.raises(CheckpointError, match="non-empty"):
        make_tiny_checkpoint(tmp_path / "full")


# ------------------------------------------------------------------------------------ diffusers loading


def test_diffusers_loads_components_and_runs_a_policy_step(tiny_checkpoint, diffusers_loadable):
    from diffusers import AutoencoderKLWan, Cosmos3OmniPipeline, Cosmos3OmniTransformer, UniPCMultistepScheduler
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import CosmosActionCondition
    from transformers import AutoTokenizer

    transformer = Cosmos3OmniTransformer.from_pretrained(tiny_checkpoint, subfolder="transformer")
    vae = AutoencoderKLWan.from_pretrained(tiny_checkpoint, subfolder="vae")
    scheduler = UniPCMultistepScheduler.from_pretrained(tiny_checkpoint, subfolder="scheduler")
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint / "text_tokenizer")
    assert transformer.dtype == torch.float32 and vae.config.z_dim == 48
    with safe_open(str(tiny_checkpoint / "transformer" / TRANSFORMER_SHARDS[0]), framework="pt") as f:
        assert torch.equal(transformer.embed_tokens.weight, f.get_tensor("embed_tokens.weight"))

    pipe = Cosmos3OmniPipeline(transformer=transformer, text_tokenizer=tokenizer, vae=vae, scheduler=scheduler,
                               enable_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    image = np.random.default_rng(0).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    condition = CosmosActionCondition(mode="policy", chunk_size=4, domain_name="droid_lerobot", resolution_tier=256,
                                      image=image)
    out = pipe(prompt="pick up the cup", action=condition, num_inference_steps=2, guidance_scale=3.0,
               output_type="latent", enable_safety_check=False, generator=torch.Generator().manual_seed(0))
    actions = out.action[0]
    assert actions.shape == (4, 10)
    assert torch.isfinite(actions).all() and actions.std() > 1e-2
    assert torch.isfinite(out.video).all() and out.video.std() > 1e-2


def test_diffusion_pipeline_from_pretrained(tiny_checkpoint, diffusers_loadable):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_checkpoint)
    assert type(pipe).__name__ == "Cosmos3OmniPipeline"
    assert pipe.text_tokenizer.convert_tokens_to_ids("<|vision_start|>") == pipe.llm_special_tokens[
        "start_of_generation"]


def test_vae_is_causal_in_time(tiny_checkpoint, diffusers_loadable):
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(tiny_checkpoint, subfolder="vae")
    video = torch.rand(1, 3, 5, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        full = vae.encode(video).latent_dist.mode()
        first = vae.encode(video[:, :, :1]).latent_dist.mode()
    assert full.shape == (1, 48, 2, 4, 4)
    assert torch.isfinite(full).all() and full.std() > 1e-2
    torch.testing.assert_close(full[:, :, :1], first, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_chat_template_and_special_ids(tiny_checkpoint, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint / "text_tokenizer")
    assert len(tok) <= TINY_TRANSFORMER_CONFIG["vocab_size"]
    ids = tok.apply_chat_template([{"role": "user", "content": "pick up the cup."}], tokenize=True,
                                  add_generation_prompt=True, add_vision_id=False, return_dict=True).input_ids
    assert tok.decode(ids) == "<|im_start|>user\npick up the cup.<|im_end|>\n<|im_start|>assistant\n"

    special = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert tok.eos_token_id == special["<|im_end|>"] and tok.pad_token_id == special["<|endoftext|>"]
    assert ids[0] == special["<|im_start|>"] and special["<|im_end|>"] in ids
    assert tok.convert_tokens_to_ids("<|vision_start|>") == special["<|vision_start|>"] != tok.unk_token_id
    assert sorted(special.values()) == list(range(len(tok) - len(SPECIAL_TOKENS), len(tok)))

    text = tok.apply_chat_template(
        [{"role": "system", "content": "be brief"},
         {"role": "user", "content": [{"type": "text", "text": "open "}, {"type": "text", "text": "the drawer"}]}],
        tokenize=False)
    assert text == "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nopen the drawer<|im_end|>\n"


@pytest.mark.parametrize("text", [
    "pick up the red cup and put it in the bowl",
    '{"actions": [{"time": "0:00-0:02", "description": "Open the drawer."}], "fps": 15.0}',
    "héllo wörld 日本語 🤖 e\u0301  \t\n  trailing ",
    "The video is 2.0 seconds long and is of 15 FPS. This video is of 544x736 resolution.",
])
def test_tokenizer_round_trips(tmp_path, text):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(make_tiny_tokenizer(tmp_path / "tok"))
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
