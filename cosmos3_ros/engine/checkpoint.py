"""Load a Cosmos3 action checkpoint in its published layout.

Layout (diffusers components + native metadata at the root)::

    model_index.json  config.json  checkpoint.json  model.safetensors.index.json
    transformer/  config.json + sharded *.safetensors + *.safetensors.index.json
    vae/          config.json + *.safetensors (Wan 2.2 AutoencoderKLWan)
    scheduler/    scheduler_config.json
    text_tokenizer/
    vision_encoder/   (never loaded: action serving does not use the ViT)

Modules are built on the meta device and filled tensor by tensor from safetensors straight to the target
device, so nothing is allocated twice. ``lm_head`` (1.2 GiB on Nano, never executed for actions) is skipped.
Only safetensors are read; no remote code is ever run.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

log = logging.getLogger(__name__)

REQUIRED_ENTRIES = ("model_index.json", "transformer", "vae", "scheduler", "text_tokenizer")
# Tensors in the shards that action serving never needs.
SKIPPED_TRANSFORMER_PREFIXES = ("lm_head.",)
# Modules kept in float32 whatever the serving dtype (the timestep MLP is trained in fp32).
FP32_MODULE_PREFIXES = ("time_embedder.",)
VAE_DECODER_PREFIXES = ("decoder.", "post_quant_conv.")


def read_json_object(path: Path, what: str, error: type[Exception] = CheckpointError) -> dict[str, Any]:
    """A JSON object from ``path``; a missing, unreadable or non-object file raises ``error`` naming it."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise error(f"{what} {str(path)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} {str(path)!r} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise error(f"{what} {str(path)!r}: expected a JSON object, got {type(data).__name__}")
    return data


def _find_key(tree: Any, key: str) -> Any:
    """First value stored under ``key`` anywhere in a nested JSON document (None if absent)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    elif isinstance(tree, list):
        for value in tree:
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


@dataclass
class CheckpointInfo:
    """The configuration files of a checkpoint folder (no weights)."""

    root: Path
    model_index: dict[str, Any]
    transformer_config: dict[str, Any]
    vae_config: dict[str, Any]
    scheduler_config: dict[str, Any]
    native_config: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, root: str | Path) -> CheckpointInfo:
        """Check the folder layout and read every config; raises CheckpointError naming what is missing."""
        root = Path(root)
        if not root.is_dir():
            raise CheckpointError(f"checkpoint folder {str(root)!r} does not exist")
        missing = [name for name in REQUIRED_ENTRIES if not (root / name).exists()]
        if missing:
            raise CheckpointError(
                f"checkpoint {str(root)!r} lacks {missing}; expected {list(REQUIRED_ENTRIES)} (the published layout)"
            )
        info = cls(
            root=root,
            model_index=read_json_object(root / "model_index.json", "model index"),
            transformer_config=read_json_object(root / "transformer" / "config.json", "transformer config"),
            vae_config=read_json_object(root / "vae" / "config.json", "VAE config"),
            scheduler_config=read_json_object(root / "scheduler" / "scheduler_config.json", "scheduler config"),
        )
        if (root / "config.json").exists():
            info.native_config = read_json_object(root / "config.json", "native config")
        if (root / "checkpoint.json").exists():
            info.metadata = read_json_object(root / "checkpoint.json", "checkpoint metadata")
        info._check_consistency()
        return info

    def _check_consistency(self) -> None:
        tc, vc = self.transformer_config, self.vae_config
        if not tc.get("action_gen", False):
            raise CheckpointError(
                f"{self.root}/transformer/config.json: action_gen={tc.get('action_gen')!r}; an action checkpoint "
                "needs action_gen=true"
            )
        latent = int(tc.get("latent_channel", 48))
        if int(vc.get("z_dim", -1)) != latent:
            raise CheckpointError(
                f"{self.root}/vae/config.json: z_dim={vc.get('z_dim')!r}; expected {latent} "
                "(transformer latent_channel)"
            )
        patch = int(tc.get("latent_patch_size", 2))
        if int(tc.get("patch_latent_dim", latent * patch * patch)) != latent * patch * patch:
            raise CheckpointError(
                f"{self.root}/transformer/config.json: patch_latent_dim={tc.get('patch_latent_dim')!r}; expected "
                f"{latent * patch * patch} (latent_channel x patch^2)"
            )
        if self.native_config:
            for key in ("hidden_size", "num_hidden_layers", "hidden_act"):
                if key in self.native_config and key in tc and self.native_config[key] != tc[key]:
                    raise CheckpointError(
                        f"{self.root}/config.json says {key}={self.native_config[key]!r} but transformer/config.json "
                        f"says {tc[key]!r}"
                    )

    @property
    def action_dim(self) -> int:
        """Model action width (64 for the published models)."""
        return int(self.transformer_config.get("action_dim") or self.transformer_config.get("max_action_dim") or 0)

    @property
    def num_domains(self) -> int:
        """Rows of the domain-aware action heads."""
        return int(self.transformer_config.get("num_embodiment_domains", 32))

    @property
    def variant(self) -> str:
        """``edge`` for the relu2 (Nemotron) backbone, ``nano`` for the silu (Qwen3) one."""
        return "edge" if self.transformer_config.get("hidden_act") == "relu2" else "nano"

    def training_value(self, key: str) -> Any:
        """A value from ``checkpoint.json`` (searched at any depth), or None."""
        return _find_key(self.metadata, key) if self.metadata else None

    @property
    def prompt_format(self) -> str | None:
        """``json`` / ``plain`` as declared by ``checkpoint.json`` (``format_prompt_as_json``), else None."""
        value = self.training_value("format_prompt_as_json")
        return None if value is None else ("json" if bool(value) else "plain")


def _transformer_kwargs(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    from diffusers import Cosmos3OmniTransformer

    accepted = set(inspect.signature(Cosmos3OmniTransformer.__init__).parameters) - {"self"}
    kwargs = {k: v for k, v in config.items() if k in accepted}
    ignored = sorted(k for k in config if k not in accepted and not k.startswith("_"))
    return kwargs, ignored


def _shard_files(folder: Path, stem: str) -> dict[str, list[str]]:
    """Map shard file -> tensor names, from ``<stem>.safetensors.index.json`` or a single ``<stem>.safetensors``."""
    index_path = folder / f"{stem}.safetensors.index.json"
    if index_path.exists():
        index = read_json_object(index_path, "weight index")
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{str(index_path)!r}: 'weight_map' must be a non-empty object")
        files: dict[str, list[str]] = {}
        for name, file in weight_map.items():
            files.setdefault(str(file), []).append(str(name))
        return files
    single = folder / f"{stem}.safetensors"
    if single.exists():
        return {single.name: []}  # empty list = every tensor in the file
    raise CheckpointError(f"{str(folder)!r} has neither {stem}.safetensors.index.json nor {stem}.safetensors")


def _load_tensors(
    folder: Path, stem: str, expected: dict[str, torch.Size], *, device: torch.device, dtype: torch.dtype,
    skip_prefixes: Iterable[str] = (), fp32_prefixes: Iterable[str] = (),
    convert: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Read every expected tensor (shape-checked) from the shards; tensors under ``skip_prefixes`` are never read.

    ``convert(name, tensor)`` is applied to each tensor once it is on ``device`` (FP8 storage quantises there).
    """
    from safetensors import SafetensorError, safe_open

    skip, keep32 = tuple(skip_prefixes), tuple(fp32_prefixes)
    state: dict[str, torch.Tensor] = {}
    for file, names in _shard_files(folder, stem).items():
        path = folder / file
        if not path.exists():
            raise CheckpointError(f"weight shard {str(path)!r} is listed in the index but missing")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                keys = names or list(handle.keys())
                available = set(handle.keys())
                for raw_name in keys:
                    name = raw_name.removeprefix("model.")  # tolerate the native prefix
                    if name.startswith(skip) or name not in expected:
                        continue
                    if raw_name not in available:
                        raise CheckpointError(
                            f"weight shard {str(path)!r} lacks tensor {raw_name!r} named by the index"
                        )
                    tensor = handle.get_tensor(raw_name)
                    if tensor.shape != expected[name]:
                        raise CheckpointError(
                            f"tensor {name!r} in {str(path)!r} has shape {list(tensor.shape)}; expected "
                            f"{list(expected[name])}"
                        )
                    target = torch.float32 if name.startswith(keep32) else dtype
                    state[name] = tensor.to(device=device, dtype=target)
                    if convert is not None:
                        state[name] = convert(name, state[name])
        except SafetensorError as exc:
            raise CheckpointError(f"weight shard {str(path)!r} is corrupt or unreadable ({exc})") from exc
        except OSError as exc:
            raise CheckpointError(f"weight shard {str(path)!r} could not be read ({exc})") from exc
    return state


def _materialize_buffers(module: torch.nn.Module, rebuild: dict[str, torch.nn.Module], device: torch.device) -> None:
    """Replace submodules whose (non-persistent) buffers are still on the meta device."""
    for name, fresh in rebuild.items():
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, fresh.to(device))
    leftover = [n for n, b in module.named_buffers() if b.is_meta]
    if leftover:
        raise CheckpointError(f"internal: buffers {leftover[:4]} were not materialised")


def load_transformer(info: CheckpointInfo, device: torch.device | str, dtype: torch.dtype,
                     weights: str = "bf16") -> torch.nn.Module:
    """Build ``Cosmos3OmniTransformer`` from ``transformer/`` without its ``lm_head``; weights on ``device``.

    ``weights="fp8"``: the blocks' linear weights are quantised to FP8 tensor by tensor as they are read.
    """
    from diffusers import Cosmos3OmniTransformer
    from diffusers.models.transformers.transformer_cosmos3 import Cosmos3VLTextRotaryEmbedding

    from .fp8 import Fp8Storage

    device = torch.device(device)
    kwargs, ignored = _transformer_kwargs(info.transformer_config)
    if ignored:
        info.notes.append(f"transformer/config.json keys not used by the model: {ignored}")
    try:
        with torch.device("meta"):
            model = Cosmos3OmniTransformer(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{info.root}/transformer/config.json cannot build Cosmos3OmniTransformer: {exc}"
        ) from exc
    del model.lm_head  # never materialised: actions never read text logits
    expected = {name: t.shape for name, t in model.state_dict().items()}
    storage = Fp8Storage(model) if weights == "fp8" else None
    state = _load_tensors(
        info.root / "transformer", "diffusion_pytorch_model", expected, device=device, dtype=dtype,
        skip_prefixes=SKIPPED_TRANSFORMER_PREFIXES, fp32_prefixes=FP32_MODULE_PREFIXES, convert=storage,
    )
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(
            f"{info.root}/transformer is missing {len(missing)} tensor(s), e.g. {missing[:3]}; "
            "expected the flat Cosmos3OmniTransformer layout"
        )
    if storage is not None:
        storage.install(model, state)
    model.load_state_dict(state, strict=True, assign=True)
    config = model.config
    _materialize_buffers(
        model,
        {"rotary_emb": Cosmos3VLTextRotaryEmbedding(config.head_dim, config.rope_theta, tuple(config.rope_axes_dim))},
        device,
    )
    return model.eval().requires_grad_(False)


def load_vae(
    info: CheckpointInfo, device: torch.device | str, dtype: torch.dtype, *, with_decoder: bool
) -> torch.nn.Module:
    """Build ``AutoencoderKLWan`` from ``vae/``; without the decoder its weights stay unloaded (meta)."""
    from diffusers import AutoencoderKLWan

    device = torch.device(device)
    accepted = set(inspect.signature(AutoencoderKLWan.__init__).parameters) - {"self"}
    kwargs = {k: v for k, v in info.vae_config.items() if k in accepted}
    try:
        with torch.device("meta"):
            vae = AutoencoderKLWan(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{info.root}/vae/config.json cannot build AutoencoderKLWan: {exc}") from exc
    expected = {name: t.shape for name, t in vae.state_dict().items()}
    skip = () if with_decoder else VAE_DECODER_PREFIXES
    state = _load_tensors(info.root / "vae", "diffusion_pytorch_model", expected, device=device, dtype=dtype,
                          skip_prefixes=skip)
    needed = {n for n in expected if not n.startswith(skip)} if skip else set(expected)
    missing = sorted(needed - set(state))
    if missing:
        raise CheckpointError(f"{info.root}/vae is missing {len(missing)} tensor(s), e.g. {missing[:3]}")
    vae.load_state_dict(state, strict=False, assign=True)
    vae.requires_grad_(False).eval()
    vae._cosmos3_decoder_loaded = with_decoder  # type: ignore[attr-defined]
    return vae


def load_vae_decoder(info: CheckpointInfo, vae: torch.nn.Module, device: torch.device | str,
                     dtype: torch.dtype) -> None:
    """Fill in the decoder weights of a VAE loaded without them (first rollout request)."""
    if getattr(vae, "_cosmos3_decoder_loaded", True):
        return
    expected = {name: t.shape for name, t in vae.state_dict().items() if name.startswith(VAE_DECODER_PREFIXES)}
    state = _load_tensors(info.root / "vae", "diffusion_pytorch_model", expected, device=torch.device(device),
                          dtype=dtype)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"{info.root}/vae is missing decoder tensor(s), e.g. {missing[:3]}")
    vae.load_state_dict(state, strict=False, assign=True)
    vae._cosmos3_decoder_loaded = True  # type: ignore[attr-defined]
