"""The report's figures, drawn with matplotlib's object API (no pyplot state, no backend switch).

Figures are saved as SVG without a date and with fixed ids (:func:`svg_bytes`), so the same
input gives the same bytes.
"""

from __future__ import annotations

import inspect
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, MissingInputError, UsageError
from ..io import atomic_write_bytes
from .markup import is_missing

__all__ = [
    "ROI_COLOURS",
    "mean_volume",
    "new_figure",
    "plot_alpha_counts",
    "plot_group_metric",
    "plot_rois",
    "roi_cut_coords",
    "save_svg",
    "sorted_alpha_counts",
    "svg_bytes",
]

#: Colours of the ROIs in figures, in the order of the summary's ``rois`` (colour-blind safe).
ROI_COLOURS = ("#e69f00", "#56b4e9", "#009e73", "#cc79a7", "#f0e442", "#0072b2")
_SVG_SALT = "nipype-brainrecon"


def svg_bytes(fig: Any) -> bytes:
    """Render a matplotlib figure to SVG bytes without a date and with fixed ids."""
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": _SVG_SALT, "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buffer.getvalue()


def save_svg(fig: Any, out_svg: str | os.PathLike) -> Path:
    """Write a figure as SVG (:func:`svg_bytes`) to ``out_svg``, atomically; returns the path."""
    return atomic_write_bytes(out_svg, svg_bytes(fig))


def new_figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib figure on its own Agg canvas (no pyplot), at 100 dpi."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def mean_volume(bold: str | os.PathLike, *, max_bytes: int = 256 * 2**20) -> Any:
    """Mean over time of a 4D image (a 3D image is returned as float32), read in chunks.

    Parameters
    ----------
    bold : path
        A NIfTI image, 3D or 4D.
    max_bytes : int
        About how much memory one chunk of volumes may take (float32).

    Returns
    -------
    nibabel.Nifti1Image
        3D float32 image on the same grid.
    """
    import nibabel as nib

    path = Path(bold)
    if not path.is_file():
        raise MissingInputError(f"{path}: reference BOLD not found; give an existing NIfTI file")
    try:
        # Keep one file handle so a gzip file is read forwards once, not from the start per chunk.
        img = nib.load(path, keep_file_open=True)
        if len(img.shape) == 3 or (len(img.shape) == 4 and img.shape[3] == 1):
            data = np.asarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3])
        elif len(img.shape) == 4:
            n = img.shape[3]
            per_volume = 4 * int(np.prod(img.shape[:3]))
            step = max(1, max_bytes // max(1, per_volume))
            total = np.zeros(img.shape[:3], dtype=np.float64)
            for start in range(0, n, step):
                chunk = np.asarray(img.dataobj[..., start : start + step], dtype=np.float32)
                total += chunk.sum(axis=-1, dtype=np.float64)
            data = (total / n).astype(np.float32)
        else:
            raise DataError(f"{path}: shape {img.shape} is not a 3D or 4D image")
    except DataError:
        raise
    except Exception as exc:  # nibabel raises many types for a broken file
        raise DataError(f"{path}: cannot read as NIfTI ({exc})") from exc
    return nib.Nifti1Image(data, img.affine)


def _load_mask(path: str | os.PathLike) -> Any:
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: ROI mask not found")
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for a broken file
        raise DataError(f"{path}: cannot read the ROI mask as NIfTI ({exc})") from exc
    data = (
        data.reshape(data.shape[:3])
        if data.ndim > 3 and data.size == np.prod(data.shape[:3])
        else data
    )
    if data.ndim != 3:
        raise DataError(f"{path}: ROI mask has shape {data.shape}; give a 3D mask")
    return nib.Nifti1Image((data > 0).astype(np.uint8), img.affine)


def _overlay_opacity(display: Any, value: float) -> dict[str, float]:
    # nilearn 0.12 renamed the overlay's ``alpha`` to ``transparency`` (and warns on alpha).
    params = inspect.signature(display.add_overlay).parameters
    return {"transparency": value} if "transparency" in params else {"alpha": value}


def roi_cut_coords(masks: Sequence[Any], n_cuts: int = 6) -> dict[str, list[float]]:
    """World coordinates (mm) of slices through the union of ROI masks, per display axis.

    Parameters
    ----------
    masks : sequence of nibabel images
        3D masks (non-zero inside), on any grids.
    n_cuts : int
        Most slices per axis; fewer when the ROIs span fewer distinct positions.

    Returns
    -------
    dict
        ``{"x": [...], "y": [...], "z": [...]}``, each sorted, evenly spaced over the distinct
        voxel-centre positions of the ROIs along that world axis (outermost included). Empty
        lists when every mask is empty.
    """
    if n_cuts < 1:
        raise UsageError(f"n_cuts={n_cuts}: give at least one slice")
    points = []
    for img in masks:
        ijk = np.argwhere(np.asanyarray(img.dataobj) > 0)
        if len(ijk):
            points.append(ijk @ img.affine[:3, :3].T + img.affine[:3, 3])
    out: dict[str, list[float]] = {"x": [], "y": [], "z": []}
    if not points:
        return out
    xyz = np.concatenate(points)
    for axis, name in enumerate("xyz"):
        values = np.unique(np.round(xyz[:, axis], 3))
        idx = np.unique(np.round(np.linspace(0, len(values) - 1, min(n_cuts, len(values)))))
        out[name] = [float(values[int(i)]) for i in idx]
    return out


def plot_rois(
    reference: str | os.PathLike,
    rois: Sequence[tuple[str, str | os.PathLike]],
    out_svg: str | os.PathLike,
    *,
    n_cuts: int = 6,
) -> Path:
    """Draw ROI masks in colour over the mean of a BOLD series: sagittal, coronal, axial rows.

    Parameters
    ----------
    reference : path
        A 3D or 4D BOLD image; its mean over time is the background.
    rois : sequence of (label, mask path)
        One entry per ROI, drawn in :data:`ROI_COLOURS` order (filled and outlined).
    out_svg : path
        Where to write the SVG (atomically).
    n_cuts : int
        Slices per row, spread over the ROIs' extent.

    Returns
    -------
    pathlib.Path
        ``out_svg``.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from nilearn import plotting

    if not rois:
        raise UsageError("rois: no ROI to draw; give at least one (label, mask) pair")
    if len(rois) > len(ROI_COLOURS):
        raise UsageError(f"rois: {len(rois)} ROIs; at most {len(ROI_COLOURS)} can be drawn at once")
    background = mean_volume(reference)
    masks = [_load_mask(path) for _, path in rois]
    cuts = roi_cut_coords(masks, n_cuts)
    fig = new_figure((11, 6.6))
    height = 0.9 / 3
    for row, mode in enumerate("xyz"):
        display = plotting.plot_anat(
            background,
            display_mode=mode,
            cut_coords=cuts[mode] or n_cuts,
            figure=fig,
            axes=(0.0, 0.1 + (2 - row) * height, 1.0, height),
            black_bg=True,
            dim=-0.3,
            annotate=True,
            draw_cross=False,
            colorbar=False,
        )
        for mask, colour in zip(masks, ROI_COLOURS, strict=False):
            display.add_overlay(
                mask,
                cmap=ListedColormap([colour]),
                vmin=0.5,
                vmax=1.5,
                threshold=0.5,
                **_overlay_opacity(display, 0.55),
            )
            if np.count_nonzero(np.asanyarray(mask.dataobj)) > 1:
                display.add_contours(mask, levels=[0.5], colors=[colour], linewidths=1.0)
    fig.legend(
        handles=[
            Patch(facecolor=colour, edgecolor=colour, label=label)
            for (label, _), colour in zip(rois, ROI_COLOURS, strict=False)
        ],
        loc="lower center",
        ncol=len(rois),
        frameon=False,
        fontsize=11,
    )
    fig.patch.set_facecolor("black")
    for text in fig.legends[0].get_texts():
        text.set_color("white")
    return save_svg(fig, out_svg)


def sorted_alpha_counts(alpha_counts: Mapping[Any, Any]) -> tuple[list[float], list[int]]:
    """Sort a ``{alpha: count}`` mapping (keys may be strings such as ``"1e3"``) by alpha.

    Unlike :func:`nipype_brainrecon.ridge.alpha_histogram`, which counts a decoder's chosen
    penalties over its grid, this reads counts already made (as the summary stores them:
    string keys), checks them, adds up keys naming the same alpha (``"1e3"`` and ``"1000"``)
    and sorts them by value.

    Returns
    -------
    alphas : list of float
        The distinct penalties, ascending.
    counts : list of int
        How many outputs chose each.

    Examples
    --------
    >>> sorted_alpha_counts({"1e3": 4, "0.01": 3, "1000": 1})
    ([0.01, 1000.0], [3, 5])
    """
    pairs: dict[float, int] = {}
    for key, count in alpha_counts.items():
        try:
            alpha = float(key)
            n = int(count)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"alpha_counts: entry {key!r}: {count!r} is not a number of outputs per penalty"
            ) from exc
        if not math.isfinite(alpha) or n < 0:
            raise DataError(f"alpha_counts: entry {key!r}: {count!r} is out of range")
        pairs[alpha] = pairs.get(alpha, 0) + n
    alphas = sorted(pairs)
    return alphas, [pairs[a] for a in alphas]


def plot_alpha_counts(
    alpha_counts: Mapping[str, Mapping[Any, Any]],
    out_svg: str | os.PathLike,
    *,
    titles: Mapping[str, str] | None = None,
) -> Path:
    """Bar chart per decoder of how many outputs chose each ridge penalty in cross-validation.

    Parameters
    ----------
    alpha_counts : mapping of target to {alpha: count}
        E.g. ``{"z": {"0.01": 3, "100": 250}, "c": {...}}``.
    out_svg : path
        Where to write the SVG (atomically).
    titles : mapping of target to str, optional
        Panel titles (default: the target names).
    """
    targets = [t for t in alpha_counts if alpha_counts[t]]
    if not targets:
        raise UsageError("alpha_counts: no decoder has penalty counts to draw")
    fig = new_figure((4.2 * len(targets) + 0.4, 3.0))
    for i, target in enumerate(targets):
        ax = fig.add_subplot(1, len(targets), i + 1)
        alphas, counts = sorted_alpha_counts(alpha_counts[target])
        ax.bar(range(len(alphas)), counts, color=ROI_COLOURS[i % len(ROI_COLOURS)], width=0.8)
        ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas], rotation=45, ha="right")
        ax.set_xlabel("ridge penalty (alpha)")
        ax.set_ylabel("outputs")
        ax.set_title((titles or {}).get(target, target), fontsize=11)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return save_svg(fig, out_svg)


def plot_group_metric(
    values: pd.Series,
    references: Mapping[str, float],
    *,
    title: str,
    better: str | None = None,
) -> bytes:
    """One metric across subjects: a point per subject, the group mean, reference lines.

    Parameters
    ----------
    values : pandas.Series
        Scores indexed by subject label.
    references : mapping of str to float
        Horizontal lines, e.g. ``{"chance": 0.5, "mismatched": 0.49, "baseline: mean image":
        0.52}``; NaN entries are left out.
    title : str
        The metric's name.
    better : {"higher", "lower"}, optional
        Shown beside the title.

    Returns
    -------
    bytes
        The SVG.
    """
    fig = new_figure((4.4, 3.0))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(values))
    y = values.to_numpy(dtype=float)
    ax.bar(x, y, color="#c6dbef", width=0.6, zorder=1)
    ax.scatter(x, y, color="#2c5d8f", zorder=3, s=22)
    if np.isfinite(y).any():
        ax.axhline(np.nanmean(y), color="#2c5d8f", lw=1.2, zorder=2, label="mean")
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (1, 3))]
    colours = ["#222222", "#777777", "#d95f02", "#7570b3", "#e7298a", "#66a61e"]
    # Style by position in ``references`` so a reference looks the same in every panel.
    for k, (name, level) in enumerate(references.items()):
        if is_missing(level):
            continue
        ax.axhline(
            float(level),
            color=colours[k % len(colours)],
            ls=styles[k % len(styles)],
            lw=1.1,
            zorder=2,
            label=name,
        )
    ax.set_xticks(
        x,
        [str(s) for s in values.index],
        rotation=45 if len(x) > 6 else 0,
        ha="right" if len(x) > 6 else "center",
        fontsize=8 if len(x) > 12 else 9,
    )
    if len(x) > 30:
        ax.set_xticks([])
    ax.set_xlabel("subject")
    arrow = {"higher": " (higher is better)", "lower": " (lower is better)"}.get(better or "", "")
    ax.set_title(f"{title}{arrow}", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
    fig.tight_layout()
    return svg_bytes(fig)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
