"""Caption embeddings ``c``: text-encoder last hidden states averaged over an image's captions.

Each caption is tokenized with padding to the tokenizer's maximum length (77 for SD v1), encoded
to its last hidden state, and the states of an image's captions are averaged token by token;
77 x 768 for SD v1. Cached per image under the captions' text. The empty prompt's embedding is
the unconditional branch of classifier-free guidance.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..batching import batches, progress_bar
from ..errors import DataError, UsageError
from .cache import (
    FeatureRows,
    PathLike,
    cache_key,
    cache_path,
    cache_write,
)
from .loaders import get_text_model, module_device, resolve_model_id

if TYPE_CHECKING:  # pragma: no cover
    import torch


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
    out = FeatureRows(n)
    cache = Path(cache_dir) if cache_dir is not None else None
    keys: list[Path | None] = [None] * n
    if cache is not None:
        for i, caps in enumerate(captions):
            key = cache_key({"feature": "c", "captions": caps, "model": model_id})
            keys[i] = cache_path(cache, "c", key)
    missing = out.fill_from_cache(keys)

    if missing:
        tok, module = get_text_model(tokenizer, text_encoder, device)
        _encode_caption_batches(
            tok,
            module,
            captions,
            missing,
            out,
            keys,
            batch_size=int(batch_size),
            device=device,
            progress=progress,
        )
    if out.array is None:
        return np.empty((0,), dtype=np.float32)
    return out.array


def _encode_caption_batches(
    tok: Any,
    module: Any,
    captions: Sequence[Sequence[str]],
    missing: Sequence[int],
    out: FeatureRows,
    keys: Sequence[Path | None],
    *,
    batch_size: int,
    device: str | torch.device | None,
    progress: bool,
) -> None:
    """Encode the captions of the ``missing`` images, average them per image, cache the means."""
    import torch

    dev = module_device(module, device)
    max_length = int(tok.model_max_length)
    with progress_bar(len(missing), "text embeddings c", progress) as bar, torch.inference_mode():
        for group in _caption_groups(missing, captions, batch_size):
            texts = [c for i in group for c in captions[i]]
            states = []
            for rows in batches(len(texts), batch_size):
                ids = tok(
                    texts[rows],
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
