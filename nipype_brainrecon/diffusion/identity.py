"""Which model is this: an identity of its weights (for cache keys) and its interface shapes.

:func:`model_identity` names a hub model by its id and commit (``org/name@<40 hex>``) once it
is resolved in the local Hugging Face cache (:func:`split_revision`, :func:`snapshot_folder`,
:func:`hub_identity`), and a local folder by its name and a hash of its files, so stale cached
features are never reused after a retraining; :func:`describe_model` gives the shapes of ``z``
and ``c`` a model works with (:class:`ModelInfo`, for sidecars and checks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .folders import PIPELINE_COMPONENTS

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


#: A full commit hash of a hub repository (the name of its snapshot folder in the cache).
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def split_revision(model: str | os.PathLike) -> tuple[str, str | None]:
    """A model argument split into the model and its revision (``None`` when not given).

    ``ID@REVISION`` names a branch, tag or commit of a hub model; an existing folder is never
    split (its name may hold an ``@``).

    >>> split_revision("CompVis/stable-diffusion-v1-4@main")
    ('CompVis/stable-diffusion-v1-4', 'main')
    >>> split_revision("CompVis/stable-diffusion-v1-4")
    ('CompVis/stable-diffusion-v1-4', None)
    """
    text = os.fspath(model)
    if isinstance(model, os.PathLike) or Path(text).expanduser().is_dir() or "@" not in text:
        return text, None
    name, _, revision = text.rpartition("@")
    return name, revision or None


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (``HF_HUB_CACHE``, else
    ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``), as ``huggingface_hub`` reads it."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def snapshot_folder(
    repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None
) -> Path | None:
    """The cached snapshot of ``repo_id`` at ``revision`` (default ``main``), or ``None``.

    A branch or tag is looked up in the cache's ``refs/`` (what the last download of it
    resolved to); a commit (its full 40 hex digits, or an unambiguous prefix of 7 or more) is
    the snapshot folder's own name. Nothing is downloaded.
    """
    repo = Path(cache_dir or hub_cache_dir()) / f"models--{repo_id.replace('/', '--')}"
    revision = revision or "main"
    snapshots = repo / "snapshots"
    ref = repo / "refs" / revision
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
    elif re.fullmatch(r"[0-9a-f]{7,40}", revision) and snapshots.is_dir():
        found = [p.name for p in snapshots.iterdir() if p.name.startswith(revision)]
        commit = found[0] if len(found) == 1 else ""
    else:
        commit = ""
    folder = snapshots / commit
    return folder if _COMMIT.match(commit) and folder.is_dir() else None


def hub_identity(folder: str | os.PathLike) -> str | None:
    """``org/name@<commit>`` of a snapshot folder of the hub cache
    (``models--org--name/snapshots/<commit>``), ``None`` for any other folder.

    >>> hub_identity("/c/hub/models--CompVis--stable-diffusion-v1-4/snapshots/" + "a" * 40)
    'CompVis/stable-diffusion-v1-4@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
    """
    path = Path(os.fspath(folder))
    repo = path.parent.parent.name
    if path.parent.name != "snapshots" or not repo.startswith("models--"):
        return None
    if not _COMMIT.match(path.name):
        return None
    return f"{repo.removeprefix('models--').replace('--', '/')}@{path.name}"


def model_identity(
    model: str | os.PathLike, components: Sequence[str] = PIPELINE_COMPONENTS
) -> str:
    """A string identifying the weights of ``components`` of ``model`` (for cache keys).

    A hub id is its own identity (with ``@revision`` when given); a snapshot folder of the hub
    cache is ``org/name@<commit>`` (:func:`hub_identity`). Any other local folder is identified by its name and a SHA-256 over
    the components' files (whole files up to 64 MiB; size, first and last 8 MiB of larger
    ones), so rebuilding or retraining a model in the same folder gives a new identity (stale
    cached features are never reused), while copies of a folder share one.
    """
    text = os.fspath(model)
    path = Path(text).expanduser()
    if not path.is_dir():
        return text
    path = path.absolute()
    hub = hub_identity(path)
    if hub is not None:
        return hub
    files = sorted(p for name in components for p in (path / name).rglob("*") if p.is_file())
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return f"{path.name}@sha256:{_folder_digest(str(path), tuple(components), stamp)}"


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
