"""Stimulus features: image latents ``z`` (VAE) and caption embeddings ``c`` (text encoder).

Following Takagi & Nishimoto (2023):

* ``z``: the image resized to ``resolution`` x ``resolution`` (Lanczos), mapped to [-1, 1],
  encoded by the VAE and multiplied by its scaling factor (0.18215 for SD v1); 4 x 40 x 40 at
  320 px.
* ``c``: each caption's text-encoder last hidden state (padded to 77 tokens), averaged over the
  image's captions; 77 x 768 for SD v1.

The VAE returns a diagonal Gaussian over latents. The authors' code takes a random *sample* of
it (CompVis ``get_first_stage_encoding``); we take its *mean* by default, so features are
deterministic, identical across batch sizes and devices, and safely cacheable. For SD v1's VAE
the posterior standard deviation is small next to the spread of the means, so the difference
is minor; ``posterior="sample"`` reproduces the authors' choice with noise seeded per image.

Features are cached on disk, one ``.npy`` file per image (never pickled, written atomically),
under a key made of the image's content hash (or the captions' text), the model identity and the
settings. Renamed or copied images hit the cache; changed pixels, another model or another
resolution miss it. When every requested image is cached the model is not loaded at all: the
model arguments accept a loader (a model folder, hub id or zero-argument callable) that is
called only on a cache miss.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import DataError, MissingInputError, UsageError
from ..io import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Bump when the meaning of a cached array changes, so old caches are ignored.
CACHE_FORMAT = 1

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------
# Hashing and the on-disk cache
# --------------------------------------------------------------------------------------------
def file_sha256(path: PathLike) -> str:
    """SHA-256 hex digest of a file's bytes.

    Raises
    ------
    MissingInputError
        The file does not exist.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError as exc:
        raise MissingInputError(f"{path}: image not found; check the stimulus path") from exc
    except IsADirectoryError as exc:
        raise MissingInputError(f"{path}: is a folder, not an image file") from exc
    return digest.hexdigest()


def cache_key(fields: Mapping[str, Any]) -> str:
    payload = json.dumps({"format": CACHE_FORMAT, **fields}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def cache_path(cache_dir: Path, kind: str, key: str) -> Path:
    return cache_dir / kind / key[:2] / f"{key}.npy"


def cache_read(path: Path) -> np.ndarray | None:
    """The cached array, or ``None`` if absent or unreadable (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def cache_write(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
    # The cache is meant to be shared (across subjects, maybe users): readable like a normal file.
    os.chmod(path, 0o644)


class _Output:
    """Output array allocated once the first item's shape is known."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.array: np.ndarray | None = None

    def put(self, index: int, value: np.ndarray) -> None:
        if self.array is None:
            self.array = np.empty((self.n, *value.shape), dtype=np.float32)
        elif value.shape != self.array.shape[1:]:
            raise DataError(
                f"feature shape {value.shape} differs from {self.array.shape[1:]} of the other "
                "items; clear the feature cache folder"
            )
        self.array[index] = value


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="image", disable=not enabled or total == 0)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --------------------------------------------------------------------------------------------
# Resolving models lazily
# --------------------------------------------------------------------------------------------
def _is_source(obj: Any) -> bool:
    return isinstance(obj, str | os.PathLike)


def _is_module(obj: Any) -> bool:
    return hasattr(obj, "parameters") and hasattr(obj, "config")


def _module_id(module: Any) -> str | None:
    ident = getattr(module, "brainrecon_model_id", None)
    if ident:
        return str(ident)
    name = getattr(getattr(module, "config", None), "_name_or_path", "")
    return str(name) if name else None


def _module_device(module: Any, device: str | torch.device | None) -> torch.device:
    import torch

    current = next(module.parameters()).device
    if device is None:
        return current
    target = torch.device(device)
    if target != current:
        module.to(target)
    return target


# --------------------------------------------------------------------------------------------
# Image latents z
# --------------------------------------------------------------------------------------------
def load_image_array(path: PathLike, resolution: int) -> np.ndarray:
    """Read an image as RGB, resize to ``resolution`` x ``resolution`` (Lanczos), map to [-1, 1].

    Non-square images are resized without cropping, as the reference code does.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(3, resolution, resolution)``.

    Raises
    ------
    MissingInputError
        The file does not exist.
    DataError
        The file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB").resize((resolution, resolution), Image.Resampling.LANCZOS)
    except FileNotFoundError as exc:
        raise MissingInputError(f"{path}: image not found; check the stimulus path") from exc
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"{path}: not a readable image ({exc.__class__.__name__}); replace or re-export it"
        ) from exc
    array = np.asarray(rgb, dtype=np.float32) / 255.0
    return np.ascontiguousarray((2.0 * array - 1.0).transpose(2, 0, 1))


def check_images(paths: Sequence[Path]) -> None:
    """Fail early, before loading a model, on images PIL cannot identify."""
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        try:
            with Image.open(path) as img:
                img.verify()
        except FileNotFoundError as exc:
            raise MissingInputError(f"{path}: image not found; check the stimulus path") from exc
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise DataError(
                f"{path}: not a readable image ({exc.__class__.__name__}); replace or re-export it"
            ) from exc


def _noise_seed(seed: int, image_hash: str) -> int:
    digest = hashlib.sha256(f"{seed}:{image_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def encode_images_z(
    image_paths: Sequence[PathLike],
    vae: Any,
    *,
    resolution: int = 320,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    cache_dir: PathLike | None = None,
    model_id: str | None = None,
    posterior: Literal["mean", "sample"] = "mean",
    seed: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """VAE latents ``z`` of images, scaled by the VAE's scaling factor.

    Parameters
    ----------
    image_paths : sequence of path
        Image files (any format PIL reads; converted to RGB).
    vae : AutoencoderKL, model folder / hub id, or callable
        The VAE, or where to get it: a diffusers model (loaded with
        :func:`nipype_brainrecon.diffusion.models.load_vae`) or a zero-argument callable returning it.
        Loaded only if some image is not cached.
    resolution : int
        Images are resized to ``resolution`` x ``resolution`` (320 in the paper); a multiple of
        the VAE factor (8).
    batch_size : int
        Images per VAE call.
    device : str or torch.device, optional
        Where to encode (a given module is moved there); default: the VAE's device, or CUDA if
        available when the VAE is loaded here.
    cache_dir : path, optional
        Feature cache folder (shared across subjects and runs); no caching if ``None``.
    model_id : str, optional
        Model identity for the cache key; default: set by the loaders (content hash of a local
        folder, or the hub id). Required with a callable ``vae``.
    posterior : {"mean", "sample"}
        Take the posterior mean (deterministic, default) or a sample (the authors' choice) with
        noise seeded by ``seed`` and the image's content.
    seed : int
        Seed of ``posterior="sample"``; ignored for the mean.
    progress : bool
        Show a progress bar.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_images, latent_channels, resolution / 8, resolution / 8)``.

    Raises
    ------
    MissingInputError
        An image (or the model's VAE) is missing.
    DataError
        An image cannot be read.
    UsageError
        Bad ``resolution``, ``batch_size``, ``posterior``, or no ``model_id`` for a callable.
    """
    if int(resolution) <= 0 or int(resolution) % 8:
        raise UsageError(f"resolution={resolution}: must be a positive multiple of 8")
    if int(batch_size) < 1:
        raise UsageError(f"batch_size={batch_size}: must be at least 1")
    if posterior not in ("mean", "sample"):
        raise UsageError(f"posterior={posterior!r}: choose 'mean' or 'sample'")
    resolution = int(resolution)
    paths = [Path(p) for p in image_paths]
    n = len(paths)
    model_id = resolve_model_id(vae, model_id, ("vae",), "vae")

    hashes = [file_sha256(p) for p in paths]
    out = _Output(n)
    cache = Path(cache_dir) if cache_dir is not None else None
    keys: list[Path | None] = [None] * n
    missing: list[int] = []
    for i, digest in enumerate(hashes):
        if cache is not None:
            fields = {
                "feature": "z",
                "image_sha256": digest,
                "model": model_id,
                "resolution": resolution,
                "posterior": posterior,
            }
            if posterior == "sample":
                fields["seed"] = int(seed)
            keys[i] = cache_path(cache, "z", cache_key(fields))
            cached = cache_read(keys[i])
            if cached is not None:
                out.put(i, cached)
                continue
        missing.append(i)

    if missing:
        check_images([paths[i] for i in missing])
        module = _get_vae(vae, device)
        _encode_z_batches(
            module,
            paths,
            hashes,
            missing,
            out,
            keys,
            resolution=resolution,
            batch_size=int(batch_size),
            device=device,
            posterior=posterior,
            seed=int(seed),
            progress=progress,
        )
    if out.array is None:
        return np.empty((0,), dtype=np.float32)
    return out.array


def _get_vae(vae: Any, device: str | torch.device | None) -> Any:
    if _is_module(vae):
        return vae
    if _is_source(vae):
        from ..diffusion.models import load_vae

        return load_vae(vae, device=device)
    if callable(vae):
        module = vae()
        if not _is_module(module):
            raise UsageError(f"vae loader returned {type(module).__name__}, not a VAE module")
        return module
    raise UsageError(f"vae={vae!r}: give an AutoencoderKL, a model folder/hub id or a loader")


def _encode_z_batches(
    vae: Any,
    paths: Sequence[Path],
    hashes: Sequence[str],
    missing: Sequence[int],
    out: _Output,
    keys: Sequence[Path | None],
    *,
    resolution: int,
    batch_size: int,
    device: str | torch.device | None,
    posterior: str,
    seed: int,
    progress: bool,
) -> None:
    import torch

    dev = _module_device(vae, device)
    dtype = next(vae.parameters()).dtype
    scaling = float(vae.config.scaling_factor)
    with _progress(len(missing), "VAE latents z", progress) as bar, torch.inference_mode():
        for chunk in _chunks(missing, batch_size):
            images = np.stack([load_image_array(paths[i], resolution) for i in chunk])
            x = torch.from_numpy(images).to(device=dev, dtype=dtype)
            dist = vae.encode(x).latent_dist
            latents = dist.mean.float()
            if posterior == "sample":
                std = dist.std.float()
                noise = torch.stack(
                    [
                        torch.randn(
                            latents.shape[1:],
                            generator=torch.Generator().manual_seed(_noise_seed(seed, hashes[i])),
                        )
                        for i in chunk
                    ]
                ).to(latents.device)
                latents = latents + std * noise
            values = (latents * scaling).cpu().numpy().astype(np.float32)
            for j, i in enumerate(chunk):
                out.put(i, values[j])
                if keys[i] is not None:
                    cache_write(keys[i], values[j])
            bar.update(len(chunk))


# --------------------------------------------------------------------------------------------
# Caption embeddings c
# --------------------------------------------------------------------------------------------
def _normalise_captions(
    captions_per_image: Sequence[Sequence[str] | str] | Mapping[str, Sequence[str] | str],
    names: Sequence[str] | None,
    *,
    allow_empty: bool = False,
) -> tuple[list[list[str]], list[str]]:
    if isinstance(captions_per_image, Mapping):
        labels = [str(k) for k in captions_per_image]
        entries = list(captions_per_image.values())
    else:
        entries = list(captions_per_image)
        labels = (
            [str(x) for x in names]
            if names is not None
            else [f"image #{i}" for i in range(len(entries))]
        )
    if len(labels) != len(entries):
        raise UsageError(
            f"names: {len(labels)} given for {len(entries)} images; give one per image"
        )
    result: list[list[str]] = []
    for label, entry in zip(labels, entries, strict=True):
        caps = [entry] if isinstance(entry, str) else list(entry)
        if not all(isinstance(c, str) for c in caps):
            raise DataError(
                f"{label}: captions must be text, got {[type(c).__name__ for c in caps]}"
            )
        if not allow_empty and not any(c.strip() for c in caps):
            raise DataError(
                f"{label}: no captions for this image; add at least one caption to the captions table"
            )
        result.append(caps)
    return result, labels


def _get_text_model(
    tokenizer: Any, text_encoder: Any, device: str | torch.device | None
) -> tuple[Any, Any]:
    if _is_source(text_encoder):
        from ..diffusion.models import load_text_encoder

        loaded_tok, module = load_text_encoder(text_encoder, device=device)
        if tokenizer is None or _is_loader(tokenizer):
            tokenizer = loaded_tok
        return tokenizer, module
    if not _is_module(text_encoder):
        if not callable(text_encoder):
            raise UsageError(
                f"text_encoder={text_encoder!r}: give a CLIPTextModel, a model folder/hub id "
                "or a loader"
            )
        loaded = text_encoder()
        if isinstance(loaded, tuple):
            loaded_tok, text_encoder = loaded
            tokenizer = loaded_tok if tokenizer is None else tokenizer
        else:
            text_encoder = loaded
        if not _is_module(text_encoder):
            raise UsageError("text_encoder loader did not return a text encoder module")
    if _is_loader(tokenizer):
        tokenizer = tokenizer()
    if tokenizer is None:
        raise UsageError("tokenizer: missing; give the tokenizer that goes with the text encoder")
    return tokenizer, text_encoder


def _is_loader(obj: Any) -> bool:
    """A zero-argument loader: a callable that is not itself a tokenizer or a module."""
    return (
        obj is not None
        and callable(obj)
        and not hasattr(obj, "model_max_length")
        and not _is_module(obj)
    )


def resolve_model_id(
    model: Any, model_id: str | None, components: tuple[str, ...], what: str
) -> str:
    if model_id:
        return str(model_id)
    if _is_source(model):
        from ..diffusion.models import model_identity

        return model_identity(model, components)
    if _is_module(model):
        ident = _module_id(model)
        if ident:
            return ident
    raise UsageError(
        f"model_id: needed to key the feature cache when {what} is given as "
        f"{type(model).__name__}; pass model_id= (e.g. the hub id or model folder)"
    )


def encode_captions_c(
    captions_per_image: Sequence[Sequence[str] | str] | Mapping[str, Sequence[str] | str],
    tokenizer: Any = None,
    text_encoder: Any = None,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    cache_dir: PathLike | None = None,
    model_id: str | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Caption embeddings ``c``: text-encoder last hidden states averaged over each image's captions.

    Each caption is tokenized with padding to the tokenizer's maximum length (77 for SD v1,
    truncating longer ones), encoded to its last hidden state, and the states of an image's
    captions are averaged token by token (as in the authors' code).

    Parameters
    ----------
    captions_per_image : sequence or mapping
        Per image, a list of captions (or one caption string). A mapping from image name to
        captions names the image in errors.
    tokenizer : CLIPTokenizer or callable, optional
        Not needed when ``text_encoder`` is a model folder / hub id (loaded with it).
    text_encoder : CLIPTextModel, model folder / hub id, or callable
        The text encoder, or where to get it (a callable may return ``(tokenizer, encoder)``).
        Loaded only if some image is not cached.
    batch_size : int
        Captions per text-encoder call.
    device : str or torch.device, optional
        As in :func:`encode_images_z`.
    cache_dir : path, optional
        Feature cache folder; no caching if ``None``.
    model_id : str, optional
        Model identity for the cache key (see :func:`encode_images_z`).
    names : sequence of str, optional
        Image names for error messages when ``captions_per_image`` is a sequence.
    progress : bool
        Show a progress bar.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_images, max_tokens, hidden_size)``.

    Raises
    ------
    DataError
        An image has no (non-blank) caption.
    """
    return _encode_texts(
        captions_per_image,
        tokenizer,
        text_encoder,
        batch_size=batch_size,
        device=device,
        cache_dir=cache_dir,
        model_id=model_id,
        names=names,
        progress=progress,
        allow_empty=False,
    )


def empty_prompt_embedding(
    tokenizer: Any = None,
    text_encoder: Any = None,
    *,
    device: str | torch.device | None = None,
    cache_dir: PathLike | None = None,
    model_id: str | None = None,
) -> np.ndarray:
    """Embedding of the empty prompt ``""``: the unconditional branch of classifier-free guidance.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(max_tokens, hidden_size)``.
    """
    return _encode_texts(
        [[""]],
        tokenizer,
        text_encoder,
        batch_size=1,
        device=device,
        cache_dir=cache_dir,
        model_id=model_id,
        names=["empty prompt"],
        progress=False,
        allow_empty=True,
    )[0]


def _encode_texts(
    captions_per_image: Any,
    tokenizer: Any,
    text_encoder: Any,
    *,
    batch_size: int,
    device: str | torch.device | None,
    cache_dir: PathLike | None,
    model_id: str | None,
    names: Sequence[str] | None,
    progress: bool,
    allow_empty: bool,
) -> np.ndarray:
    if int(batch_size) < 1:
        raise UsageError(f"batch_size={batch_size}: must be at least 1")
    if text_encoder is None:
        raise UsageError("text_encoder: missing; give a CLIPTextModel, model folder or loader")
    captions, _ = _normalise_captions(captions_per_image, names, allow_empty=allow_empty)
    model_id = resolve_model_id(
        text_encoder, model_id, ("text_encoder", "tokenizer"), "text_encoder"
    )
    n = len(captions)
    out = _Output(n)
    cache = Path(cache_dir) if cache_dir is not None else None
    keys: list[Path | None] = [None] * n
    missing: list[int] = []
    for i, caps in enumerate(captions):
        if cache is not None:
            key = cache_key({"feature": "c", "captions": caps, "model": model_id})
            keys[i] = cache_path(cache, "c", key)
            cached = cache_read(keys[i])
            if cached is not None:
                out.put(i, cached)
                continue
        missing.append(i)

    if missing:
        import torch

        tok, module = _get_text_model(tokenizer, text_encoder, device)
        dev = _module_device(module, device)
        max_length = int(tok.model_max_length)
        with _progress(len(missing), "text embeddings c", progress) as bar, torch.inference_mode():
            for group in _caption_groups(missing, captions, int(batch_size)):
                texts = [c for i in group for c in captions[i]]
                states = []
                for start in range(0, len(texts), int(batch_size)):
                    ids = tok(
                        texts[start : start + int(batch_size)],
                        padding="max_length",
                        max_length=max_length,
                        truncation=True,
                        return_tensors="pt",
                    ).input_ids.to(dev)
                    states.append(module(ids)[0].float().cpu())
                hidden = torch.cat(states).numpy()
                pos = 0
                for i in group:
                    k = len(captions[i])
                    value = hidden[pos : pos + k].mean(axis=0, dtype=np.float64).astype(np.float32)
                    pos += k
                    out.put(i, value)
                    if keys[i] is not None:
                        cache_write(keys[i], value)
                bar.update(len(group))
    if out.array is None:
        return np.empty((0,), dtype=np.float32)
    return out.array


def _caption_groups(
    missing: Sequence[int], captions: Sequence[Sequence[str]], batch_size: int
) -> Iterator[list[int]]:
    """Consecutive images whose captions fill about one batch (at least one image each)."""
    group: list[int] = []
    count = 0
    for i in missing:
        if group and count + len(captions[i]) > batch_size:
            yield group
            group, count = [], 0
        group.append(i)
        count += len(captions[i])
    if group:
        yield group


__all__ = [
    "CACHE_FORMAT",
    "empty_prompt_embedding",
    "encode_captions_c",
    "encode_images_z",
    "file_sha256",
    "load_image_array",
]
