"""Captions of the NSD images from the COCO 2017 caption annotations.

Each NSD image is a crop of a COCO image (``cocoId``, ``cocoSplit`` in
``nsd_stim_info_merged.csv``); its captions are the ``annotations`` of that ``image_id`` in
``captions_train2017.json`` or ``captions_val2017.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ...errors import DataError
from .trials import stim_file


def read_coco_captions(path: Path) -> dict[int, list[str]]:
    """``{image_id: [caption, ...]}`` of a COCO captions file, captions in annotation-id order
    with runs of white space (newlines included) made one space."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
        annotations = content["annotations"]
        rows = sorted((int(a["image_id"]), int(a["id"]), str(a["caption"])) for a in annotations)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: cannot read COCO caption annotations ({type(exc).__name__}: {exc}); "
            "expected COCO's captions_*2017.json"
        ) from exc
    captions: dict[int, list[str]] = {}
    for image_id, _, text in rows:
        text = " ".join(text.split())
        if text:
            captions.setdefault(image_id, []).append(text)
    return captions


def captions_table(
    stim_info: pd.DataFrame, nsd_ids: list[int], annotations: Callable[[str], Path]
) -> pd.DataFrame:
    """``stim_file``, ``caption`` (long format: one row per caption) of the given 73k-IDs.

    ``annotations(split)`` gives the captions file of a COCO split (``train2017``,
    ``val2017``); each split's file is read once.
    """
    ids = sorted({int(i) for i in nsd_ids})
    info = stim_info.loc[ids]
    by_split: dict[str, dict[int, list[str]]] = {}
    rows: list[tuple[str, str]] = []
    for nsd_id, coco_id, split in zip(ids, info["cocoId"], info["cocoSplit"], strict=True):
        split = str(split)
        if split not in by_split:
            by_split[split] = read_coco_captions(annotations(split))
        found = by_split[split].get(int(coco_id))
        if not found:
            raise DataError(
                f"{annotations(split)}: no caption of COCO image {int(coco_id)} (NSD 73k-ID "
                f"{nsd_id}, cocoSplit {split}); use COCO's complete 2017 annotations"
            )
        rows.extend((stim_file(nsd_id), text) for text in found)
    return pd.DataFrame(rows, columns=["stim_file", "caption"])
