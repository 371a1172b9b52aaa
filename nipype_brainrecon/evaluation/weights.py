"""Finding and loading local network weights (never downloaded)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DataError, MissingInputError

#: Environment variable naming a folder of local network weights (torchvision files, CLIP).
WEIGHTS_ENV = "BRAINRECON_WEIGHTS_DIR"


def _weights_dirs() -> list[Path]:
    """Where network weights are looked for: $BRAINRECON_WEIGHTS_DIR, then torch's cache."""
    dirs = []
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    return dirs


def find_weights(
    what: str, patterns: Sequence[str], weights: str | os.PathLike | None = None
) -> Path:
    """Locate a local weights file: ``weights`` if given, else the first file matching
    ``patterns`` in ``$BRAINRECON_WEIGHTS_DIR`` and then in torch's hub cache
    (``$TORCH_HOME/hub/checkpoints``, where torchvision keeps what it downloads).

    Raises
    ------
    MissingInputError
        Nothing found; the message names every place looked and the fix.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingInputError(f"{path}: {what} weights file not found; check weights=")
        return path
    looked = []
    for folder in _weights_dirs():
        looked.append(str(folder))
        if folder.is_dir():
            for pattern in patterns:
                hits = sorted(p for p in folder.glob(pattern) if p.is_file())
                if hits:
                    return hits[0]
    raise MissingInputError(
        f"{what}: no weights file matching {' or '.join(patterns)} in {', '.join(looked)}; "
        f"copy the file there, set {WEIGHTS_ENV}=FOLDER, or pass weights=PATH (never downloaded)"
    )


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors, or from a torch file without unpickling code.

    ``.pth``/``.pt``/``.tar`` files are read with ``torch.load(weights_only=True)``; a dict
    nested under ``"state_dict"`` or ``"model"`` is unwrapped and a ``"module."`` prefix
    (from ``DataParallel`` training, e.g. SwAV's checkpoint) removed.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated or carrying pickled code
        raise DataError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise DataError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[key[len("module.") :] if key.startswith("module.") else key] = value
    return out


def load_network_weights(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    optional: Sequence[str] = (),
) -> nn.Module:
    """Copy ``state`` into ``module``, checking names and shapes.

    Every parameter and buffer of ``module`` must be in ``state`` except those under the
    ``optional`` prefixes (classification heads, unused for features) and BatchNorm's
    ``num_batches_tracked``; extra entries (other heads) are ignored.
    """
    own = module.state_dict()
    missing = [
        k
        for k in own
        if k not in state
        and not k.endswith("num_batches_tracked")
        and not any(k.startswith(p) for p in optional)
    ]
    if missing:
        raise DataError(
            f"{source}: not weights for this network ({len(missing)} entries missing, e.g. "
            f"{', '.join(missing[:3])}); give the torchvision-format file"
        )
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise DataError(
                f"{source}: {key} has shape {tuple(value.shape)}, the network expects "
                f"{tuple(own[key].shape)}; give the torchvision-format file"
            )
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return module.eval()
