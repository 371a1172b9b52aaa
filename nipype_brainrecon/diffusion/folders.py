"""Diffusers model folders: local folder or hub id, what a folder must hold, the shipped demo model.

:func:`local_folder` tells a local folder from a hub id, :func:`check_model_folder` checks that a
folder has the components a reconstruction needs and that they fit together, and
:func:`demo_model_path` / :func:`native_resolution` locate the small demo model and read the
image size a folder generates.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError, MissingInputError

#: The model used by the paper (Takagi & Nishimoto 2023) for real work.
DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"


#: Sub-folders a Stable Diffusion img2img diffusers folder must have.
PIPELINE_COMPONENTS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")


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
