"""Write a tiny random checkpoint laid out exactly like ``nvidia/Cosmos3-Nano-Policy-DROID``.

The real checkpoint (about 32 GB) cannot be downloaded in tests or in the demo, so this module writes a
miniature one with the same folders, file names, JSON keys and tensor names, filled with seeded random
weights. It is a *mixed* repository, like the published one: diffusers components (``model_index.json``,
``transformer/``, ``vae/``, ``scheduler/``, ``text_tokenizer/``) next to the native files (``config.json``,
``checkpoint.json``, ``model.safetensors.index.json`` pointing into ``transformer/``, ``vision_encoder/``)::

    OUT/model_index.json, config.json, checkpoint.json, model.safetensors.index.json
    OUT/transformer/config.json, diffusion_pytorch_model-0000{1,2,3}-of-00003.safetensors (+ .index.json)
    OUT/vae/config.json, diffusion_pytorch_model.safetensors
    OUT/scheduler/scheduler_config.json
    OUT/text_tokenizer/tokenizer.json, tokenizer_config.json, special_tokens_map.json
    OUT/vision_encoder/config.json, model.safetensors   (never read by our loader)

Differences from the real files, on purpose:

* Transformer and VAE tensors are stored as float32, not bfloat16: they are tiny, and the parity tests
  compare our engine with diffusers in fp32. The vision encoder stub is bfloat16 like the real files.
* The transformer shards contain ``lm_head.weight`` like the real shards; loaders must skip it.
* The shard boundaries are placed in the middle of ``layers.0`` and ``layers.1`` so that a decoder
  layer always spans two shards, as size-based sharding of a real checkpoint does.
* ``text_tokenizer/`` is our own byte-level BPE (about 1000 tokens, trained deterministically on an
  embedded corpus) with the Qwen special tokens and a ChatML chat template written here; the real one
  is Qwen3-VL's, which cannot be downloaded. It loads with ``AutoTokenizer`` offline.

Tiny VAE widths: ``base_dim = decoder_base_dim = 1`` (channel widths 1/1/2/4/4 in the encoder and
4/4/4/2/1 in the decoder), the smallest the Wan 2.2 module accepts (it has no group norms; the residual
down/up shortcuts only need ``in * factor % out == 0``, true for any width). Every other structural
setting (z_dim 48, patch 2, residual blocks, 16x spatial / 4x temporal compression, causal time convs)
is Wan 2.2's. Measured on the idle 2-core development CPU (torch 2.13, fp32, wall clock): encoding one
frame ``[1, 3, 1, 544, 736]`` takes 0.13-0.15 s (base_dim 2: 0.30 s) and decoding a latent
``[1, 48, 9, 34, 46]`` takes about 5 s, 4.9-5.3 s (decoder_base_dim 2: 14 s, over the 10 s budget); the decode
is dominated by channel-wise RMS norms and small-channel conv3d at full resolution, and it slows
down 3-4x when other processes share the CPU. Encoding ``[1, 3, 33, 256, 256]`` gives
``[1, 48, 9, 16, 16]``, and latent frame 0 of that equals the latent of frame 0 encoded alone (max abs
diff 0.0): the causal property the engine relies on.

Everything is deterministic for a given ``(seed, variant)``: the modules are built under a forked,
seeded torch RNG, then every parameter is redrawn from ``torch.Generator().manual_seed(seed)`` in
sorted-name order, JSON is written with sorted keys, and safetensors files get fixed metadata. Writing
a checkpoint takes 0.1-0.2 s once torch and diffusers are imported (the imports take about 6 s).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from cosmos3_ros.errors import CheckpointError, ProfileError

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "TINY_TRANSFORMER_CONFIG",
    "TINY_VAE_CONFIG",
    "TINY_VOCAB_SIZE",
    "TOKENIZER_CLASS",
    "TRANSFORMER_SHARDS",
    "VARIANTS",
    "make_tiny_checkpoint",
    "make_tiny_tokenizer",
]

# The diffusers release NVIDIA's converter stamps into every config; fixed (not the installed
# version) so the bytes do not depend on the environment.
DIFFUSERS_VERSION = "0.42.1"

# Qwen special tokens the pipeline and engine look up by name. They are appended after the BPE vocab,
# as in Qwen, so their ids are the largest ones.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# Generic fast-tokenizer class: in transformers 4.x it is PreTrainedTokenizerFast, in 5.x an alias of
# TokenizersBackend; both load tokenizer.json verbatim. (Qwen2Tokenizer would rebuild the pipeline
# with its own NFC normaliser and regex, which is not the pipeline we trained with.)
TOKENIZER_CLASS = "PreTrainedTokenizerFast"

_BPE_VOCAB_SIZE = 1000  # byte alphabet + merges, before the special tokens are appended
TINY_VOCAB_SIZE = 1024  # embedding rows: tokenizer size rounded up to a multiple of 64

# Our own Jinja template for Qwen's ChatML turn format:
#   <|im_start|>{role}\n{content}<|im_end|>\n ... [<|im_start|>assistant\n]
# Content is a string or a list of {"type": "text", "text": ...} parts (texts are concatenated).
# No system message is inserted by default; other part types (images) are refused loudly.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' ~ message['role'] ~ '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}"
    "{{- part['text'] -}}"
    "{%- else -%}"
    "{{- raise_exception('the tiny tokenizer template only renders text content parts') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

# Diffusers `Cosmos3OmniTransformer` kwargs of the tiny model (Nano settings; see VARIANTS for Edge).
TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 128,
    "latent_channel": 48,
    "latent_patch_size": 2,
    "patch_latent_dim": 192,  # latent_channel * latent_patch_size**2
    "action_gen": True,
    "action_dim": 64,
    "num_embodiment_domains": 32,
    "sound_gen": False,
    "vocab_size": TINY_VOCAB_SIZE,
    "rope_theta": 5000000.0,
    # Sections are in rotary frequency pairs and must sum to head_dim / 2.
    "rope_scaling": {"mrope_section": [4, 2, 2], "mrope_interleaved": True, "rope_type": "default"},
    "timestep_scale": 0.001,
    "base_fps": 24,
    "enable_fps_modulation": True,
    "unified_3d_mrope_temporal_modality_margin": 15000,
    "unified_3d_mrope_reset_spatial_ids": True,
    "rms_norm_eps": 1e-6,
    "attention_bias": False,
    "hidden_act": "silu",
    "qk_norm_for_text": True,
    "use_und_k_norm_for_gen": False,
}

# Keys the real transformer/config.json carries beyond the constructor arguments.
_TRANSFORMER_CONFIG_EXTRAS: dict[str, Any] = {
    "max_action_dim": 64,
    "freeze_und": True,
    "model_type": "cosmos3_omni",
}

# Diffusers `AutoencoderKLWan` kwargs: Wan 2.2 structure, minimal widths (see the module docstring).
# latents_mean / latents_std are drawn per seed and added by `_build_vae`.
TINY_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 1,
    "decoder_base_dim": 1,
    "z_dim": 48,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
    "is_residual": True,
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
}

_SCHEDULER_COMMON: dict[str, Any] = {
    "_diffusers_version": DIFFUSERS_VERSION,
    "prediction_type": "flow_prediction",
    "sigma_max": 200.0,
    "sigma_min": 0.147,
    "solver_order": 2,
    "solver_type": "bh2",
    "predict_x0": True,
    "num_train_timesteps": 1000,
    "final_sigmas_type": "zero",
    "use_flow_sigmas": True,
}

# Per-variant differences: transformer activations / norms, scheduler export, metadata.
VARIANTS: dict[str, dict[str, Any]] = {
    "nano": {
        "model_name": "Cosmos3-Nano-Policy-DROID-tiny",
        "transformer": {"hidden_act": "silu", "qk_norm_for_text": True, "use_und_k_norm_for_gen": False},
        "scheduler": {
            "_class_name": "UniPCMultistepScheduler",
            "use_karras_sigmas": True,
            "flow_shift": 1.0,
            **_SCHEDULER_COMMON,
        },
        "format_prompt_as_json": False,
    },
    "edge": {
        "model_name": "Cosmos3-Edge-Policy-DROID-tiny",
        "transformer": {"hidden_act": "relu2", "qk_norm_for_text": False, "use_und_k_norm_for_gen": True},
        "scheduler": {
            "_class_name": "Cosmos3EdgeUniPCMultistepScheduler",
            "use_karras_sigmas": False,
            "flow_shift": 3.0,
            **_SCHEDULER_COMMON,
        },
        "format_prompt_as_json": True,
    },
}

TRANSFORMER_SHARDS: tuple[str, ...] = tuple(
    f"diffusion_pytorch_model-{i:05d}-of-00003.safetensors" for i in (1, 2, 3)
)

_TRAINING_CONFIG: dict[str, Any] = {
    "action_space": "joint_position",
    "action_dim": 8,
    "action_chunk_size": 32,
    "fps": 15,
    "use_state": True,
    "history_length": 1,
    "action_normalization": None,
    "domain_id": 8,
    "resolution": "480",
}

_SAFETENSORS_METADATA = {"format": "pt"}

# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------

_CAPTION_SENTENCES = (
    "This video contains concatenated views from multiple camera perspectives.",
    "The top row is from the wrist-mounted camera.",
    "The bottom row contains two horizontally concatenated third-person perspective views of the scene "
    "from opposite sides, with the robot visible.",
    "The video is 2.0 seconds long and is of 15 FPS.",
    "The video is 1.1 seconds long and is of 30 FPS.",
    "This video is of 544x736 resolution.",
    "This video is of 640x640 resolution.",
    "This image is of 256x256 resolution.",
    "This video is captured from a first-person perspective looking at the scene.",
    "This video is captured from a third-person perspective looking towards the agent from the front.",
    "This video is captured from a wrist-mounted camera.",
    "You are a helpful assistant who will generate videos from a given prompt.",
    "You are a helpful assistant who will generate images from a given prompt.",
)

_TASKS = (
    "pick up the red cup and put it in the bowl",
    "open the drawer",
    "close the drawer",
    "put the marker in the mug",
    "pick up the blue block and place it on the plate",
    "move the towel to the left side of the table",
    "stack the green block on top of the yellow block",
    "wipe the table with the sponge",
    "turn on the faucet",
    "close the lid of the box",
    "put the spoon in the cup",
    "pour the water into the glass",
    "push the button",
    "fold the cloth",
    "take the lid off the pot",
    "put the banana in the basket",
    "open the cabinet door",
    "pick up the cup",
    "remove the pen from the holder",
    "slide the bowl to the right",
    "unplug the charger",
    "hang the towel on the rack",
    "place the apple next to the orange",
    "grasp the handle and pull the door open",
    "put the bottle upright",
    "put the carrot in the pot",
    "pick up the white mug from the shelf",
    "place the lemon in the small bowl",
    "put the scissors into the drawer and close it",
    "move the black marker from the tray to the notebook",
    "flip the switch",
    "rotate the knob clockwise",
    "sweep the crumbs into the dustpan",
    "put the headphones on the stand",
    "pick up the purple plush toy and drop it in the box",
    "straighten the pillow on the couch",
    "insert the plug into the socket",
    "empty the cup into the sink",
    "cover the pan with the lid",
    "set the fork beside the plate",
    "throw the paper in the trash can",
    "put the book back on the bookshelf",
    "water the plant with the watering can",
    "pick up the tape measure",
    "arrange the three cups in a row",
)

_PROSE = (
    "The robot arm moves the gripper above the object, closes the gripper and lifts it.",
    "The gripper opens slowly while the arm lowers the object onto the table.",
    "A Franka Panda arm with a parallel gripper works in a kitchen.",
    "Joint positions are given in radians; the gripper is 0 when open and 1 when closed.",
    "Predict the next actions of the robot for the given task.",
    "The camera shows the table, a cup, a bowl, a drawer and several blocks.",
    "The wrist camera sees the gripper fingers, and the exterior cameras see the whole workspace.",
    "Objects: cup, mug, bowl, plate, spoon, fork, knife, bottle, can, box, lid, towel, cloth, sponge, marker.",
    "Colors: red, green, blue, yellow, orange, purple, black, white, brown, pink, gray, silver.",
    "Directions: left, right, up, down, forward, backward, above, below, inside, outside, near, far.",
    "Verbs: pick, place, put, push, pull, open, close, lift, lower, rotate, slide, pour, wipe, stack, grasp.",
    "Rooms: kitchen, office, bedroom, bathroom, laboratory, living room, garage, workshop.",
    "The state row gives seven joint angles and the gripper width of the Franka robot.",
    "Quality: high resolution, sharp focus, natural lighting, smooth motion, realistic physics.",
    "system user assistant",
    '{"key": "value", "list": [1, 2, 3], "nested": {"a": true, "b": false, "c": null}}',
    "0 1 2 3 4 5 6 7 8 9 10 15 24 30 60 100 256 480 544 640 704 720 736 1280",
)


def _action_caption(task: str, view: str, seconds: int, height: int, width: int) -> str:
    """A JSON action caption shaped like the ones the Cosmos3 action pipeline builds."""
    caption = {
        "cinematography": {"framing": view},
        "actions": [{"time": f"0:00-0:{seconds:02d}", "description": task[0].upper() + task[1:] + "."}],
        "duration": f"{seconds}s",
        "fps": 15.0,
        "resolution": {"H": height, "W": width},
        "aspect_ratio": "4,3",
    }
    return json.dumps(caption)


def _tokenizer_corpus() -> list[str]:
    """The fixed training corpus: caption sentences, tasks, prose, and JSON captions of the tasks."""
    views = [s for s in _CAPTION_SENTENCES if s.startswith("This video is captured") or "concatenated" in s]
    lines = list(_CAPTION_SENTENCES) + list(_TASKS) + list(_PROSE)
    for i, task in enumerate(_TASKS):
        lines.append(_action_caption(task, views[i % len(views)], 2, 544, 736))
        lines.append(task[0].upper() + task[1:] + ".")
    return lines


def _build_tokenizer():
    """Train the byte-level BPE (deterministic: the trainer breaks count ties by pair ids)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # Digits are split one by one like Qwen's pre-tokenizer; no normaliser, so any text round-trips.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    if tok.get_vocab_size() > TINY_VOCAB_SIZE:
        raise CheckpointError(
            f"tiny tokenizer has {tok.get_vocab_size()} tokens, more than the model's vocab_size {TINY_VOCAB_SIZE}"
        )
    return tok


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def make_tiny_tokenizer(out_dir: str | Path) -> Path:
    """Write the tiny offline tokenizer (tokenizer.json, tokenizer_config.json, special_tokens_map.json).

    Loads with ``AutoTokenizer.from_pretrained(out_dir)``; ``apply_chat_template`` renders Qwen ChatML.
    Does not depend on any seed. Returns ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = _build_tokenizer()
    # tokenizers serialises the vocab ordered by id, so the text is deterministic.
    (out / "tokenizer.json").write_text(tok.to_str(pretty=True) + "\n", encoding="utf-8")

    added = {
        str(tok.token_to_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in SPECIAL_TOKENS
    }
    _write_json(
        out / "tokenizer_config.json",
        {
            "add_bos_token": False,
            "add_prefix_space": False,
            "added_tokens_decoder": added,
            "bos_token": None,
            "chat_template": CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "eos_token": EOS_TOKEN,
            "errors": "replace",
            "model_max_length": 32768,
            "pad_token": PAD_TOKEN,
            "split_special_tokens": False,
            "tokenizer_class": TOKENIZER_CLASS,
            "unk_token": None,
        },
    )
    _write_json(
        out / "special_tokens_map.json",
        {
            "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in (EOS_TOKEN, PAD_TOKEN)],
            "eos_token": EOS_TOKEN,
            "pad_token": PAD_TOKEN,
        },
    )
    return out


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


def _is_norm(module: torch.nn.Module) -> bool:
    # diffusers RMSNorm, Cosmos3NemotronRMSNorm, WanRMS_norm: all scale-only (or scale+bias) norms.
    return "norm" in type(module).__name__.lower()


@torch.no_grad()
def _reinit_transformer(model: torch.nn.Module, seed: int) -> None:
    """Redraw every parameter from one seeded generator, in sorted-name order.

    Linear / embedding weights (incl. the domain-aware action heads) N(0, 0.02), biases N(0, 0.01),
    norm weights 1 + N(0, 0.05), action_modality_embed N(0, 0.02).
    """
    gen = torch.Generator().manual_seed(seed)
    owners = {}
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            owners[f"{mod_name}.{p_name}" if mod_name else p_name] = (module, p_name, mod_name)
    params = dict(model.named_parameters())
    for name in sorted(params):
        param = params[name]
        module, p_name, mod_name = owners[name]
        if _is_norm(module):
            param.copy_(1.0 + 0.05 * torch.randn(param.shape, generator=gen))
        elif p_name == "bias" or mod_name.endswith(".bias"):
            # nn.Linear biases, and the per-domain bias table (an nn.Embedding named `bias`) of DomainAwareLinear.
            param.normal_(0.0, 0.01, generator=gen)
        else:
            param.normal_(0.0, 0.02, generator=gen)


@torch.no_grad()
def _reinit_vae(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Redraw VAE parameters in sorted-name order.

    Conv weights N(0, 1/sqrt(fan_in)) (unit gain keeps activations O(1) through the RMS-normalised
    residual stack), biases N(0, 0.01), norm gammas 1 + N(0, 0.05).
    """
    params = dict(model.named_parameters())
    for name in sorted(params):
        param = params[name]
        if name.endswith(".gamma"):
            param.copy_(1.0 + 0.05 * torch.randn(param.shape, generator=gen))
        elif name.endswith(".bias"):
            param.normal_(0.0, 0.01, generator=gen)
        else:
            fan_in = math.prod(param.shape[1:])
            param.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=gen)


def _transformer_kwargs(variant: str) -> dict[str, Any]:
    return {**TINY_TRANSFORMER_CONFIG, **VARIANTS[variant]["transformer"]}


def _build_transformer(variant: str, seed: int) -> torch.nn.Module:
    """The tiny `Cosmos3OmniTransformer` with seeded weights (float32)."""
    from diffusers.models.transformers.transformer_cosmos3 import Cosmos3OmniTransformer

    # Build under a forked RNG so the caller's global torch RNG state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Cosmos3OmniTransformer(**_transformer_kwargs(variant))
    _reinit_transformer(model, seed)
    return model.eval()


def _build_vae(seed: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The tiny `AutoencoderKLWan` and its full config (with seeded latents_mean / latents_std)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan

    gen = torch.Generator().manual_seed(seed)
    z_dim = TINY_VAE_CONFIG["z_dim"]
    # Rounded so the JSON is short; the values are what a loader sees.
    latents_mean = [round(float(v), 4) for v in torch.randn(z_dim, generator=gen) * 0.1]
    latents_std = [round(float(v), 4) for v in torch.rand(z_dim, generator=gen) + 0.5]
    kwargs = {**TINY_VAE_CONFIG, "latents_mean": latents_mean, "latents_std": latents_std}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKLWan(**kwargs)
    _reinit_vae(vae, gen)
    return vae.eval(), kwargs


def _module_config(model: Any, class_name: str) -> dict[str, Any]:
    """The diffusers config.json content of a constructed module (all resolved init args)."""
    cfg = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    cfg = json.loads(json.dumps(cfg))  # tuples -> lists, FrozenDict -> dict
    cfg["_class_name"] = class_name
    cfg["_diffusers_version"] = DIFFUSERS_VERSION
    return cfg


def _state_dict_fp32(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in sorted(model.state_dict().items())}


def _shard_keys(keys: list[str], num_layers: int) -> list[list[str]]:
    """Split sorted keys into 3 contiguous shards.

    The cuts fall in the middle of ``layers.0`` and of the last layer, so loaders must stitch a decoder
    layer from two files.
    """
    keys = sorted(keys)

    def middle_of(layer: int) -> int:
        idx = [i for i, k in enumerate(keys) if k.startswith(f"layers.{layer}.")]
        return idx[len(idx) // 2]

    cut1, cut2 = middle_of(0), middle_of(num_layers - 1)
    return [keys[:cut1], keys[cut1:cut2], keys[cut2:]]


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _write_transformer(out: Path, model: torch.nn.Module) -> dict[str, str]:
    """Write transformer/ (config, 3 shards, index). Returns the weight map key -> shard file name."""
    from safetensors.torch import save_file

    tdir = out / "transformer"
    tdir.mkdir(parents=True, exist_ok=True)
    config = _module_config(model, "Cosmos3OmniTransformer")
    config.update(_TRANSFORMER_CONFIG_EXTRAS)
    _write_json(tdir / "config.json", config)

    state = _state_dict_fp32(model)
    shards = _shard_keys(list(state), TINY_TRANSFORMER_CONFIG["num_hidden_layers"])
    weight_map: dict[str, str] = {}
    for shard_name, keys in zip(TRANSFORMER_SHARDS, shards, strict=True):
        save_file({k: state[k] for k in keys}, str(tdir / shard_name), metadata=_SAFETENSORS_METADATA)
        weight_map.update(dict.fromkeys(keys, shard_name))
    total = sum(_nbytes(t) for t in state.values())
    _write_json(
        tdir / "diffusion_pytorch_model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": weight_map},
    )
    # The native root index points at the same shards through the transformer/ folder.
    _write_json(
        out / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": {k: f"transformer/{v}" for k, v in weight_map.items()}},
    )
    return weight_map


def _write_vision_encoder_stub(out: Path, seed: int) -> None:
    """A couple of small random bfloat16 tensors standing in for the native vision encoder."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed + 1)
    hidden, patch = 32, 16
    tensors = {
        "blocks.0.attn.qkv.weight": torch.randn(3 * hidden, hidden, generator=gen) * 0.02,
        "patch_embed.proj.weight": torch.randn(hidden, 3, 2, patch, patch, generator=gen) * 0.02,
    }
    vdir = out / "vision_encoder"
    vdir.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()},
        str(vdir / "model.safetensors"),
        metadata=_SAFETENSORS_METADATA,
    )
    _write_json(
        vdir / "config.json",
        {
            "model_type": "qwen3_vl_vision",
            "depth": 1,
            "hidden_size": hidden,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": patch,
            "temporal_patch_size": 2,
            "out_hidden_size": TINY_TRANSFORMER_CONFIG["hidden_size"],
        },
    )


def make_tiny_checkpoint(out_dir: str | Path, seed: int = 0, variant: str = "nano") -> Path:
    """Write a tiny random checkpoint in the published Cosmos3 Policy-DROID layout; return its folder.

    ``out_dir`` must not exist or be empty. Same ``(seed, variant)`` -> byte-identical files.
    ``variant``: ``"nano"`` (silu, text q/k norms) or ``"edge"`` (relu2 + Nemotron norms, no text q/k
    norms, a separate k-norm for generation). Raises ProfileError for another variant.
    """
    if variant not in VARIANTS:
        raise ProfileError(f"unknown tiny checkpoint variant {variant!r}; expected one of {sorted(VARIANTS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ProfileError(f"tiny checkpoint seed must be a non-negative int, got {seed!r}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"refusing to write a tiny checkpoint into non-empty or non-directory path {out}")
    out.mkdir(parents=True, exist_ok=True)
    spec = VARIANTS[variant]

    from safetensors.torch import save_file

    make_tiny_tokenizer(out / "text_tokenizer")

    transformer = _build_transformer(variant, seed)
    _write_transformer(out, transformer)

    vae, _ = _build_vae(seed)
    _write_json(out / "vae" / "config.json", _module_config(vae, "AutoencoderKLWan"))
    save_file(
        _state_dict_fp32(vae), str(out / "vae" / "diffusion_pytorch_model.safetensors"), metadata=_SAFETENSORS_METADATA
    )

    _write_json(out / "scheduler" / "scheduler_config.json", spec["scheduler"])
    _write_vision_encoder_stub(out, seed)

    _write_json(
        out / "model_index.json",
        {
            "_class_name": "Cosmos3OmniPipeline",
            "_diffusers_version": DIFFUSERS_VERSION,
            "transformer": ["diffusers", "Cosmos3OmniTransformer"],
            "vae": ["diffusers", "AutoencoderKLWan"],
            "scheduler": ["diffusers", "UniPCMultistepScheduler"],
            "text_tokenizer": ["transformers", TOKENIZER_CLASS],
            "sound_tokenizer": [None, None],
            "safety_checker": [None, None],
            "enable_safety_checker": False,
            # What diffusers' Cosmos3OmniPipeline writes by default (its __init__ defaults), as an export carries.
            "default_use_system_prompt": True,
            "use_native_flow_schedule": False,
        },
    )
    tcfg = _transformer_kwargs(variant)
    _write_json(
        out / "config.json",
        {
            "model_type": "cosmos3",
            "architectures": ["Cosmos3OmniModel"],
            "variant": variant,
            **{
                k: tcfg[k]
                for k in (
                    "hidden_size",
                    "num_hidden_layers",
                    "num_attention_heads",
                    "num_key_value_heads",
                    "head_dim",
                    "intermediate_size",
                    "hidden_act",
                    "vocab_size",
                    "action_dim",
                    "action_gen",
                    "sound_gen",
                )
            },
        },
    )
    _write_json(
        out / "checkpoint.json",
        {
            "format_version": 1,
            "model_name": spec["model_name"],
            "variant": variant,
            "seed": seed,
            "training_config": {**_TRAINING_CONFIG, "format_prompt_as_json": spec["format_prompt_as_json"]},
        },
    )
    return out
