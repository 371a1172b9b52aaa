"""docs/demo_model.md's table of the demo model's parts matches the shipped configuration.

The table once gave the VAE blocks as (16, 16, 32, 32) while the shipped model has
(16, 32, 64, 64); this reads both and compares every number the demo-model column states.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from nipype_brainrecon.diffusion.models import demo_model_path

DOC = Path(__file__).parents[2] / "docs" / "demo_model.md"


def _table() -> dict[str, str]:
    """``{part: demo-model cell}`` of the table under "What it is"."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in {"part", "---"} and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[2]
    return rows


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


def _config(part: str) -> dict:
    return json.loads((Path(demo_model_path()) / part / "config.json").read_text())


def test_table_matches_the_shipped_configs():
    table = _table()
    vae, unet, text = _config("vae"), _config("unet"), _config("text_encoder")
    assert _ints(table["VAE"]) == vae["block_out_channels"]
    assert _ints(table["U-Net"]) == unet["block_out_channels"]
    layers, width, tokens = _ints(table["text encoder"])
    assert (layers, width, tokens) == (
        text["num_hidden_layers"],
        text["hidden_size"],
        text["max_position_embeddings"],
    )
    native, *latent, c_tokens, c_width = _ints(table["native size"])
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
    assert native == unet["sample_size"] * factor == vae["sample_size"]
    assert latent == [vae["latent_channels"], unet["sample_size"], unet["sample_size"]]
    assert (c_tokens, c_width) == (text["max_position_embeddings"], unet["cross_attention_dim"])
