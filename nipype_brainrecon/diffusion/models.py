"""Latent diffusion models: loading them offline-safely and building small ones.

The method needs three parts of Stable Diffusion v1: the VAE (image <-> latent ``z``), the CLIP
text encoder with its tokenizer (captions -> ``c``) and the U-Net with a DDIM scheduler (img2img
reconstruction). This module

* loads them from a local diffusers folder or a hub id without touching the network when the
  model is local or ``HF_HUB_OFFLINE=1`` (:func:`load_pipeline`, :func:`load_vae`,
  :func:`load_text_encoder`),
* builds small random-weight models with the same diffusers/transformers classes and SD v1's
  interface shapes, so tests and demos run on CPU without any download (:func:`build_tiny_sd`),
* writes a CLIP-style byte-level BPE tokenizer without a hub, optionally learning merges from
  captions (:func:`build_clip_tokenizer`),
* describes a model's shapes for sidecars and checks (:class:`ModelInfo`, :func:`describe_model`).

Heavy libraries (torch, diffusers, transformers) are imported inside the functions so that
importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError, MissingInputError, UsageError
from ..io import atomic_directory, atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import AutoencoderKL, StableDiffusionImg2ImgPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

#: The model used by the paper (Takagi & Nishimoto 2023) for real work.
DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"

#: Sub-folders a Stable Diffusion img2img diffusers folder must have.
PIPELINE_COMPONENTS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")

#: SD v1's DDIM settings (CompVis DDIM sampler: uniform steps + 1, alpha_prev of step 0 kept).
SD_V1_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"

# CLIP's pre-tokenisation: contractions, runs of letters, single digits, runs of other symbols.
_CLIP_WORD_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """Map each of the 256 byte values to a printable unicode character (byte-level BPE).

    Bytes that are printable Latin-1 characters map to themselves; the others (control
    characters, space, ...) are moved past U+00FF in increasing order, so every byte has a
    visible, whitespace-free symbol and merges can be written one per line.

    Returns
    -------
    dict
        ``{byte value: character}`` with 256 distinct characters.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\xa1"), ord("\xac") + 1),
        *range(ord("\xae"), ord("\xff") + 1),
    ]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return dict(sorted(table.items()))


def _clip_words(texts: Iterable[str]) -> Counter[str]:
    """Count byte-level words of ``texts`` exactly as CLIP's tokenizer splits them."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    splitter = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_WORD_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    counts: Counter[str] = Counter()
    for text in texts:
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)):
            if word not in (BOS_TOKEN, EOS_TOKEN):
                counts[word] += 1
    return counts


def learn_bpe_merges(
    texts: Iterable[str], n_merges: int, *, min_frequency: int = 2
) -> list[tuple[str, str]]:
    """Learn byte-level BPE merges (CLIP style, ``</w>`` marks a word end) from texts.

    Greedy: repeatedly merge the most frequent adjacent symbol pair; ties go to the
    lexicographically smallest pair, so the result is deterministic.

    Parameters
    ----------
    texts : iterable of str
        The training corpus (e.g. all captions of the stimulus set).
    n_merges : int
        Maximum number of merges to learn.
    min_frequency : int
        Stop when the best pair occurs fewer times than this.

    Returns
    -------
    list of (str, str)
        The merges in priority order.
    """
    words = _clip_words(texts)
    symbols: list[list[str]] = []
    freqs: list[int] = []
    for word, freq in sorted(words.items()):
        parts = list(word)
        parts[-1] += END_OF_WORD
        symbols.append(parts)
        freqs.append(freq)

    pair_counts: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for idx, parts in enumerate(symbols):
        for pair in zip(parts, parts[1:], strict=False):
            pair_counts[pair] += freqs[idx]
            where.setdefault(pair, set()).add(idx)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while heap and len(merges) < n_merges:
        neg, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg:
            continue  # stale heap entry
        if -neg < min_frequency:
            break
        merges.append(pair)
        first, second = pair
        joined = first + second
        changed: set[tuple[str, str]] = set()
        for idx in sorted(where.pop(pair, ())):
            parts, freq = symbols[idx], freqs[idx]
            for old in zip(parts, parts[1:], strict=False):
                pair_counts[old] -= freq
                changed.add(old)
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(joined)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            symbols[idx] = merged
            for new in zip(merged, merged[1:], strict=False):
                pair_counts[new] += freq
                where.setdefault(new, set()).add(idx)
                changed.add(new)
        pair_counts.pop(pair, None)
        for other in changed:
            count = pair_counts.get(other, 0)
            if count > 0:
                heapq.heappush(heap, (-count, other))
            else:
                pair_counts.pop(other, None)
    return merges


def build_clip_tokenizer(
    out_dir: str | os.PathLike,
    *,
    captions: Iterable[str] | None = None,
    vocab_size: int | None = None,
    model_max_length: int = 77,
) -> Path:
    """Write a CLIP byte-level BPE tokenizer folder that ``CLIPTokenizer.from_pretrained`` loads.

    The vocabulary holds the 256 byte symbols, the same 256 with ``</w>`` (word end), then the
    merges learnt from ``captions`` (if any), then ``<|startoftext|>`` and ``<|endoftext|>``
    (also the padding and unknown token), the layout of OpenAI's CLIP vocabulary. Without
    captions every character is one token (514 entries); with captions frequent words become
    single tokens, so a 77-token context holds whole captions.

    Parameters
    ----------
    out_dir : path
        Folder to create (``vocab.json``, ``merges.txt``, ``tokenizer_config.json``).
    captions : iterable of str, optional
        Corpus to learn merges from.
    vocab_size : int, optional
        Total vocabulary size with captions (default 4096); ignored without captions.
    model_max_length : int
        Context length (77 for SD v1).

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out = Path(out_dir)
    byte_chars = list(bytes_to_unicode().values())
    merges: list[tuple[str, str]] = []
    if captions is not None:
        target = 4096 if vocab_size is None else int(vocab_size)
        if target < 2 * 256 + 2:
            raise UsageError(f"vocab_size={target}: must be at least 514 (bytes + specials)")
        merges = learn_bpe_merges(captions, target - (2 * 256 + 2))
    vocab: dict[str, int] = {}
    for token in [*byte_chars, *(c + END_OF_WORD for c in byte_chars)]:
        vocab[token] = len(vocab)
    for first, second in merges:
        vocab.setdefault(first + second, len(vocab))
    vocab[BOS_TOKEN] = len(vocab)
    vocab[EOS_TOKEN] = len(vocab)

    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": int(model_max_length),
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
    atomic_write_text(
        out / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    )
    atomic_write_text(out / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
    return out


# --------------------------------------------------------------------------------------------
# Tiny Stable-Diffusion-shaped models
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TinySDConfig:
    """Sizes of a small Stable-Diffusion-shaped model (see :func:`build_tiny_sd`).

    The VAE needs 4 blocks for SD's 8x down-sampling; channel counts must be multiples of the
    group-norm group counts; ``text_hidden_size`` must be a multiple of ``text_heads``.
    """

    text_hidden_size: int = 768
    text_layers: int = 1
    text_heads: int = 12
    text_intermediate_size: int = 512
    max_text_tokens: int = 77
    unet_block_channels: tuple[int, ...] = (32, 64)
    unet_layers_per_block: int = 1
    unet_attention_head_dim: int = 8
    unet_norm_groups: int = 32
    sample_size: int = 64
    vae_block_channels: tuple[int, ...] = (16, 16, 32, 32)
    vae_layers_per_block: int = 1
    vae_norm_groups: int = 8
    latent_channels: int = 4
    scaling_factor: float = 0.18215

    def __post_init__(self) -> None:
        if self.text_hidden_size % self.text_heads:
            raise UsageError(
                f"text_hidden_size={self.text_hidden_size}: must be a multiple of "
                f"text_heads={self.text_heads}"
            )
        for name, channels, groups in (
            ("unet_block_channels", self.unet_block_channels, self.unet_norm_groups),
            ("vae_block_channels", self.vae_block_channels, self.vae_norm_groups),
        ):
            if any(ch % groups for ch in channels):
                raise UsageError(f"{name}={channels}: each must be a multiple of {groups} groups")
        if len(self.unet_block_channels) < 2:
            raise UsageError("unet_block_channels: give at least 2 blocks")
        if len(self.vae_block_channels) < 1:
            raise UsageError("vae_block_channels: give at least 1 block")

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae_block_channels) - 1)


#: Named size presets. ``sd-v1-shapes`` keeps SD v1's interfaces (77x768 text, 4-channel latents,
#: VAE factor 8, scaling 0.18215) with tiny widths, for fast tests; ``demo`` has a narrower
#: two-layer text encoder (128), a wider VAE and a 128 px default: a starting point for the
#: trained demo model (override any field, see :class:`TinySDConfig`).
PROFILES: dict[str, TinySDConfig] = {
    "sd-v1-shapes": TinySDConfig(),
    "demo": TinySDConfig(
        text_hidden_size=128,
        text_layers=2,
        text_heads=4,
        text_intermediate_size=256,
        unet_block_channels=(32, 64),
        sample_size=16,
        vae_block_channels=(32, 32, 64, 64),
        vae_norm_groups=32,
    ),
}


def tiny_sd_config(profile: str = "sd-v1-shapes", **overrides: Any) -> TinySDConfig:
    """The :class:`TinySDConfig` of ``profile`` with ``overrides`` (field names) applied."""
    if profile not in PROFILES:
        raise UsageError(f"profile={profile!r}: unknown; choose one of {sorted(PROFILES)}")
    fields = {f.name for f in dataclasses.fields(TinySDConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UsageError(f"{', '.join(unknown)}: not a TinySDConfig field; use {sorted(fields)}")
    for key in ("unet_block_channels", "vae_block_channels"):
        if key in overrides:
            overrides[key] = tuple(int(v) for v in overrides[key])
    return dataclasses.replace(PROFILES[profile], **overrides)


def build_tiny_sd(
    out_dir: str | os.PathLike,
    *,
    profile: str = "sd-v1-shapes",
    seed: int = 0,
    captions: Iterable[str] | None = None,
    vocab_size: int | None = None,
    overwrite: bool = False,
    **sizes: Any,
) -> Path:
    """Write a small random-weight Stable-Diffusion-shaped img2img model as a diffusers folder.

    The parts are the classes of Stable Diffusion v1: ``AutoencoderKL`` (4-channel latents,
    8x down-sampling with 4 blocks, scaling factor 0.18215), ``UNet2DConditionModel`` with
    cross-attention on the text states, ``CLIPTextModel``, a CLIP tokenizer
    (:func:`build_clip_tokenizer`) and ``DDIMScheduler`` with SD v1's settings. Saved with
    ``save_pretrained`` (``model_index.json``, safetensors), it loads with :func:`load_pipeline`.

    Parameters
    ----------
    out_dir : path
        Folder to create; written whole or not at all.
    profile : {"sd-v1-shapes", "demo"}
        Size preset (see :data:`PROFILES`).
    seed : int
        Seeds the random weights (each part from its own offset, so resizing one part leaves the
        others' weights unchanged). The global torch RNG state is left as it was.
    captions : iterable of str, optional
        Learn the tokenizer's merges from these (else a byte-only vocabulary of 514 tokens).
    vocab_size : int, optional
        Tokenizer vocabulary size with captions.
    overwrite : bool
        Replace an existing ``out_dir``.
    **sizes
        :class:`TinySDConfig` fields overriding the profile (e.g. ``text_hidden_size=64``).

    Returns
    -------
    pathlib.Path
        The model folder.
    """
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    cfg = tiny_sd_config(profile, **sizes)
    with tempfile.TemporaryDirectory() as scratch:
        tok_dir = build_clip_tokenizer(
            Path(scratch) / "tokenizer",
            captions=captions,
            vocab_size=vocab_size,
            model_max_length=cfg.max_text_tokens,
        )
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
        # vocab.json + merges.txt beside tokenizer.json keep older (slow) CLIPTokenizers working.
        slow_files = {name: (tok_dir / name).read_bytes() for name in ("vocab.json", "merges.txt")}

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=cfg.text_hidden_size,
                intermediate_size=cfg.text_intermediate_size,
                projection_dim=cfg.text_hidden_size,
                num_hidden_layers=cfg.text_layers,
                num_attention_heads=cfg.text_heads,
                max_position_embeddings=cfg.max_text_tokens,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        torch.manual_seed(seed + 1)
        n_blocks = len(cfg.unet_block_channels)
        unet = UNet2DConditionModel(
            sample_size=cfg.sample_size,
            in_channels=cfg.latent_channels,
            out_channels=cfg.latent_channels,
            down_block_types=("CrossAttnDownBlock2D",) * (n_blocks - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n_blocks - 1),
            block_out_channels=cfg.unet_block_channels,
            layers_per_block=cfg.unet_layers_per_block,
            attention_head_dim=cfg.unet_attention_head_dim,
            norm_num_groups=cfg.unet_norm_groups,
            cross_attention_dim=cfg.text_hidden_size,
        )
        torch.manual_seed(seed + 2)
        n_vae = len(cfg.vae_block_channels)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * n_vae,
            up_block_types=("UpDecoderBlock2D",) * n_vae,
            block_out_channels=cfg.vae_block_channels,
            layers_per_block=cfg.vae_layers_per_block,
            norm_num_groups=cfg.vae_norm_groups,
            latent_channels=cfg.latent_channels,
            sample_size=cfg.sample_size * cfg.vae_scale_factor,
            scaling_factor=cfg.scaling_factor,
        )
    scheduler = DDIMScheduler(**SD_V1_SCHEDULER)
    pipe = StableDiffusionImg2ImgPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    meta = {
        "profile": profile,
        "seed": seed,
        "sizes": dataclasses.asdict(cfg),
        "vocab_size": len(tokenizer),
        "vocab_learnt_from_captions": captions is not None,
    }
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        for name, data in slow_files.items():
            atomic_write_bytes(tmp / "tokenizer" / name, data)
        atomic_write_text(tmp / "brainrecon_model.json", json.dumps(meta, indent=2) + "\n")
    return Path(out_dir).absolute()


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def _is_offline(offline: bool | None) -> bool:
    if offline is not None:
        return bool(offline)
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def local_folder(model: str | os.PathLike) -> Path | None:
    """The model as a local folder, ``None`` for a hub id; error for a path that is absent."""
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.is_dir():
        return path.absolute()
    if isinstance(model, os.PathLike) or path.exists() or not _HUB_ID.match(text):
        raise MissingInputError(
            f"{text}: model folder not found; give a diffusers folder or a hub id such as "
            f"{DEFAULT_MODEL}"
        )
    return None


def check_model_folder(
    folder: str | os.PathLike, components: Sequence[str] = PIPELINE_COMPONENTS
) -> Path:
    """Check that a diffusers folder has ``components`` (config + safetensors weights each).

    Raises
    ------
    MissingInputError
        Naming the folder and the first missing component or file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"{folder}: model folder not found")
    if set(components) & {"unet", "scheduler"} and not (folder / "model_index.json").is_file():
        raise MissingInputError(
            f"{folder}: model_index.json missing; not a diffusers pipeline folder "
            "(save one with save_pretrained or build_tiny_sd)"
        )
    needs = {
        "vae": ("config.json", True),
        "unet": ("config.json", True),
        "text_encoder": ("config.json", True),
        "scheduler": ("scheduler_config.json", False),
        "tokenizer": (None, False),
    }
    for name in components:
        sub = folder / name
        if not sub.is_dir():
            raise MissingInputError(
                f"{folder}: component '{name}' missing (no {name}/ folder); use a complete "
                "Stable Diffusion diffusers folder"
            )
        config, weights = needs[name]
        if config and not (sub / config).is_file():
            raise MissingInputError(f"{sub}: {config} missing; the '{name}' component is broken")
        if weights and not any(sub.glob("*.safetensors")):
            raise MissingInputError(
                f"{sub}: no .safetensors weights for '{name}'; convert the model to safetensors "
                "(pickled .bin weights are not loaded)"
            )
        if name == "tokenizer" and not (
            (sub / "tokenizer.json").is_file() or (sub / "vocab.json").is_file()
        ):
            raise MissingInputError(f"{sub}: no tokenizer.json or vocab.json for 'tokenizer'")
    _check_model_shapes(folder, components)
    return folder


def _model_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable JSON config ({exc}); re-save the model") from exc
    if not isinstance(config, dict):
        raise DataError(f"{path}: config is not a JSON object; re-save the model")
    return config


def _check_model_shapes(folder: Path, components: Sequence[str]) -> None:
    """The components must fit together: latent channels and text width as the UNet expects."""
    if "unet" not in components:
        return
    unet = _model_config(folder / "unet" / "config.json")
    pairs = []
    if "vae" in components:
        vae = _model_config(folder / "vae" / "config.json")
        pairs.append(("latent_channels", vae.get("latent_channels"), "in_channels", "vae"))
    if "text_encoder" in components:
        text = _model_config(folder / "text_encoder" / "config.json")
        pairs.append(
            ("hidden_size", text.get("hidden_size"), "cross_attention_dim", "text_encoder")
        )
    for key, value, unet_key, name in pairs:
        expected = unet.get(unet_key)
        if value is not None and expected is not None and value != expected:
            raise DataError(
                f"{folder / name / 'config.json'}: {key} {value} but the UNet expects "
                f"{unet_key} {expected}; the components come from different models, use one "
                "complete diffusers folder"
            )


def default_device() -> str:
    """``"cuda"`` when a CUDA GPU is usable, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_device_dtype(
    device: str | torch.device | None, dtype: torch.dtype | str | None, *, half_on_cuda: bool
) -> tuple[torch.device, torch.dtype]:
    import torch

    dev = torch.device(device if device is not None else default_device())
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.replace("torch.", ""), None)
        if not isinstance(resolved, torch.dtype):
            raise UsageError(f"dtype={dtype!r}: not a torch dtype (e.g. float32, float16)")
        dtype = resolved
    if dtype is None:
        dtype = torch.float16 if (dev.type == "cuda" and half_on_cuda) else torch.float32
    return dev, dtype


def _source_and_kwargs(model: str | os.PathLike, offline: bool | None) -> tuple[str, dict]:
    folder = local_folder(model)
    if folder is not None:
        return str(folder), {"local_files_only": True}
    return os.fspath(model), {"local_files_only": _is_offline(offline)}


def _not_cached(model: str, exc: Exception) -> MissingInputError:
    return MissingInputError(
        f"{model}: not in the local Hugging Face cache and the hub is offline ({type(exc).__name__});"
        " download it first (with network access, HF_HUB_OFFLINE unset) or pass a local diffusers"
        " folder"
    )


def load_pipeline(
    model: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    offline: bool | None = None,
) -> StableDiffusionImg2ImgPipeline:
    """Load a Stable Diffusion img2img pipeline with a DDIM scheduler, offline-safely.

    Parameters
    ----------
    model : str or path
        A local diffusers folder or a hub id (default ``CompVis/stable-diffusion-v1-4``).
    device : str or torch.device, optional
        Default ``cuda`` when available, else ``cpu``.
    dtype : torch.dtype or str, optional
        Default float16 on CUDA, float32 on CPU.
    offline : bool, optional
        Never reach the hub (only the local cache); default from ``HF_HUB_OFFLINE``. A local
        folder never reaches the hub whatever this says.

    Returns
    -------
    diffusers.StableDiffusionImg2ImgPipeline
        Without safety checker, scheduler replaced by DDIM with SD v1's settings
        (``clip_sample=False``, ``set_alpha_to_one=False``, ``steps_offset=1``). Its
        ``brainrecon_model_id`` attribute holds :func:`model_identity`.

    Raises
    ------
    MissingInputError
        The folder is absent or lacks a component, or a hub id is not cached while offline.
    """
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    source, kwargs = _source_and_kwargs(model, offline)
    if Path(source).is_dir():
        check_model_folder(source)
    dev, dt = _resolve_device_dtype(device, dtype, half_on_cuda=True)
    try:
        pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
            source,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            use_safetensors=True,
            trust_remote_code=False,
            **kwargs,
        )
    except OSError as exc:
        if kwargs["local_files_only"] and not Path(source).is_dir():
            raise _not_cached(source, exc) from exc
        raise MissingInputError(
            f"{source}: cannot load the model ({' '.join(str(exc).split())}); re-download "
            "or re-save the model (safetensors weights)"
        ) from exc
    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, clip_sample=False, set_alpha_to_one=False, steps_offset=1
    )
    pipe = pipe.to(dev)
    if pipe.unet.dtype != dt:  # cast only when needed: diffusers warns on every dtype cast
        pipe = pipe.to(dtype=dt)
    pipe.brainrecon_model_id = model_identity(model, PIPELINE_COMPONENTS)
    # The same identities as the light loaders give, so features share one cache either way.
    pipe.vae.brainrecon_model_id = model_identity(model, ("vae",))
    pipe.text_encoder.brainrecon_model_id = model_identity(model, ("text_encoder", "tokenizer"))
    return pipe


def load_vae(
    model: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    offline: bool | None = None,
) -> AutoencoderKL:
    """Load only the VAE of a diffusers model (for the image latents ``z``).

    Defaults to float32 on every device so that features do not depend on the GPU; otherwise
    as :func:`load_pipeline`. The module is in eval mode; ``brainrecon_model_id`` is set.
    """
    from diffusers import AutoencoderKL

    source, kwargs = _source_and_kwargs(model, offline)
    if Path(source).is_dir():
        check_model_folder(source, ("vae",))
    dev, dt = _resolve_device_dtype(device, dtype, half_on_cuda=False)
    try:
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", use_safetensors=True, **kwargs)
    except OSError as exc:
        if kwargs["local_files_only"] and not Path(source).is_dir():
            raise _not_cached(source, exc) from exc
        raise MissingInputError(
            f"{source}: cannot load the VAE ({' '.join(str(exc).split())}); re-download "
            "or re-save the model (safetensors weights)"
        ) from exc
    vae = vae.to(dev).eval()
    if vae.dtype != dt:
        vae = vae.to(dtype=dt)
    vae.brainrecon_model_id = model_identity(model, ("vae",))
    return vae


def load_text_encoder(
    model: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    offline: bool | None = None,
) -> tuple[CLIPTokenizer, CLIPTextModel]:
    """Load only the tokenizer and text encoder of a diffusers model (for captions ``c``).

    Defaults to float32 on every device; otherwise as :func:`load_pipeline`. The text
    encoder's ``brainrecon_model_id`` is set.
    """
    from transformers import CLIPTextModel, CLIPTokenizer

    source, kwargs = _source_and_kwargs(model, offline)
    if Path(source).is_dir():
        check_model_folder(source, ("text_encoder", "tokenizer"))
    dev, dt = _resolve_device_dtype(device, dtype, half_on_cuda=False)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kwargs)
        text_encoder = CLIPTextModel.from_pretrained(
            source, subfolder="text_encoder", use_safetensors=True, **kwargs
        )
    except OSError as exc:
        if kwargs["local_files_only"] and not Path(source).is_dir():
            raise _not_cached(source, exc) from exc
        raise MissingInputError(
            f"{source}: cannot load the text encoder ({' '.join(str(exc).split())}); re-download "
            "or re-save the model (safetensors weights)"
        ) from exc
    text_encoder = text_encoder.to(device=dev, dtype=dt).eval()
    text_encoder.brainrecon_model_id = model_identity(model, ("text_encoder", "tokenizer"))
    return tokenizer, text_encoder


#: Files up to this size are hashed whole; larger ones by size, head and tail (see below).
_FULL_HASH_LIMIT = 64 << 20
_SAMPLE_BYTES = 8 << 20


def _update_with_file(digest: Any, path: Path) -> None:
    size = path.stat().st_size
    digest.update(f"{size}\0".encode())
    with path.open("rb") as handle:
        if size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        else:
            # Multi-GB weights: the safetensors header (names, shapes, offsets) plus the first and
            # last tensors' bytes tell retrained weights apart at a fraction of the reading cost.
            digest.update(handle.read(_SAMPLE_BYTES))
            handle.seek(size - _SAMPLE_BYTES)
            digest.update(handle.read(_SAMPLE_BYTES))


@lru_cache(maxsize=64)
def _folder_digest(folder: str, components: tuple[str, ...], stamp: tuple) -> str:
    digest = hashlib.sha256()
    for name in components:
        sub = Path(folder) / name
        for path in sorted(p for p in sub.rglob("*") if p.is_file()):
            digest.update(f"{name}/{path.relative_to(sub).as_posix()}\0".encode())
            _update_with_file(digest, path)
    return digest.hexdigest()[:16]


def model_identity(
    model: str | os.PathLike, components: Sequence[str] = PIPELINE_COMPONENTS
) -> str:
    """A string identifying the weights of ``components`` of ``model`` (for cache keys).

    A hub id is its own identity. A local folder is identified by its name and a SHA-256 over
    the components' files (whole files up to 64 MiB; size, first and last 8 MiB of larger
    ones), so rebuilding or retraining a model in the same folder gives a new identity (stale
    cached features are never reused), while copies of a folder share one.
    """
    text = os.fspath(model)
    path = Path(text).expanduser()
    if not path.is_dir():
        return text
    path = path.absolute()
    files = sorted(p for name in components for p in (path / name).rglob("*") if p.is_file())
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return f"{path.name}@sha256:{_folder_digest(str(path), tuple(components), stamp)}"


# --------------------------------------------------------------------------------------------
# Describing a model
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """The interface shapes of a latent diffusion model, for sidecars and checks.

    Attributes
    ----------
    model_id : str
        Hub id or folder identity (:func:`model_identity`).
    latent_channels, vae_scale_factor : int
        ``z`` for an ``r`` px image has shape ``(latent_channels, r / f, r / f)``.
    scaling_factor : float
        Multiplier applied to VAE latents (0.18215 for SD v1).
    max_text_tokens, text_hidden_size : int
        ``c`` has shape ``(max_text_tokens, text_hidden_size)`` (77 x 768 for SD v1).
    dtype, device : str
        Of the loaded model.
    """

    model_id: str
    latent_channels: int
    vae_scale_factor: int
    scaling_factor: float
    max_text_tokens: int
    text_hidden_size: int
    dtype: str = "float32"
    device: str = "cpu"

    def latent_shape(self, resolution: int) -> tuple[int, int, int]:
        """Shape of ``z`` for a ``resolution`` x ``resolution`` image."""
        if resolution <= 0 or resolution % self.vae_scale_factor:
            raise UsageError(
                f"resolution={resolution}: must be a positive multiple of {self.vae_scale_factor}"
            )
        side = resolution // self.vae_scale_factor
        return (self.latent_channels, side, side)

    @property
    def text_shape(self) -> tuple[int, int]:
        """Shape of ``c`` (tokens x hidden size)."""
        return (self.max_text_tokens, self.text_hidden_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (for sidecars)."""
        return dataclasses.asdict(self)


def describe_model(
    pipe: Any = None,
    *,
    vae: Any = None,
    text_encoder: Any = None,
    tokenizer: Any = None,
    model_id: str | None = None,
) -> ModelInfo:
    """Describe a pipeline (or its separately loaded parts) as a :class:`ModelInfo`.

    Parameters
    ----------
    pipe : StableDiffusionImg2ImgPipeline, optional
        A loaded pipeline; its parts are used unless given explicitly.
    vae, text_encoder, tokenizer : optional
        Parts loaded with :func:`load_vae` / :func:`load_text_encoder`; fields of a missing part
        are 0.
    model_id : str, optional
        Overrides the identity stored by the loaders (or the config's name).
    """
    vae = vae if vae is not None else getattr(pipe, "vae", None)
    text_encoder = text_encoder if text_encoder is not None else getattr(pipe, "text_encoder", None)
    tokenizer = tokenizer if tokenizer is not None else getattr(pipe, "tokenizer", None)
    if vae is None and text_encoder is None:
        raise UsageError("describe_model: give a pipeline, a vae or a text_encoder")
    if model_id is None:
        for obj in (pipe, vae, text_encoder):
            model_id = getattr(obj, "brainrecon_model_id", None)
            if model_id:
                break
        else:
            cfg = getattr(pipe, "config", None) or getattr(vae or text_encoder, "config", None)
            model_id = str(getattr(cfg, "_name_or_path", "") or "unknown")
    any_module = vae if vae is not None else text_encoder
    param = next(any_module.parameters())
    max_tokens = 0
    hidden = 0
    if text_encoder is not None:
        hidden = int(text_encoder.config.hidden_size)
        max_tokens = int(text_encoder.config.max_position_embeddings)
    if tokenizer is not None:
        max_tokens = int(tokenizer.model_max_length)
    return ModelInfo(
        model_id=str(model_id),
        latent_channels=int(vae.config.latent_channels) if vae is not None else 0,
        vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 0,
        scaling_factor=float(vae.config.scaling_factor) if vae is not None else 0.0,
        max_text_tokens=max_tokens,
        text_hidden_size=hidden,
        dtype=str(param.dtype).replace("torch.", ""),
        device=str(param.device),
    )


def demo_model_path() -> Path:
    """The small demo model shipped with the package (a diffusers folder).

    ``$BRAINRECON_DEMO_MODEL`` points elsewhere (e.g. a retrained copy).
    """
    override = os.environ.get("BRAINRECON_DEMO_MODEL")
    path = (
        Path(override) if override else Path(__file__).resolve().parents[1] / "data" / "demo_model"
    )
    if not (path / "model_index.json").is_file():
        raise MissingInputError(
            f"{path}: the demo model is missing from this installation; reinstall the package "
            "or retrain it with tools/train_demo_model.py"
        )
    return path


def native_resolution(model: str | os.PathLike) -> int:
    """Image size (px) a local diffusers folder generates: UNet sample size × VAE factor."""
    folder = Path(model)
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise MissingInputError(f"{folder}: cannot read the UNet/VAE configs ({exc})") from exc
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
