"""The encoding section of the participant report: ROI tables, score maps and their figures."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError, UsageError
from .figures import ROI_COLOURS, mean_volume, new_figure, save_svg
from .layout import Cell, figure_html, html_table, macro
from .markup import escape, format_value, relative_url
from .summary import EncodingSummary

if TYPE_CHECKING:  # pragma: no cover
    import nibabel as nib
    import pandas as pd


def plot_encoding_maps(
    maps: Sequence[tuple[str, str | os.PathLike]],
    out_svg: str | os.PathLike,
    *,
    background: str | os.PathLike | nib.Nifti1Image | None = None,
    vmax: float | None = None,
) -> Path:
    """Draw statistical maps side by side: a glass brain and axial slices per map (nilearn).

    Parameters
    ----------
    maps : sequence of (title, NIfTI path)
        The maps (e.g. test r of each feature space), one row each.
    out_svg : path
        The SVG to write.
    background : path or image, optional
        Anatomy under the slices (default: none, black background).
    vmax : float, optional
        Colour scale limit (symmetric); default per map, the 99th percentile of its absolute
        values. Values below a tenth of it are not coloured.

    Returns
    -------
    pathlib.Path
        ``out_svg``.
    """
    import nibabel as nib
    from nilearn import plotting

    if not maps:
        raise UsageError("maps: give at least one (title, path) pair")
    images = [nib.load(p) for _, p in maps]
    fig = new_figure((12, 2.4 * len(maps)))
    height = 1.0 / len(maps)
    for row, ((title, _), img) in enumerate(zip(maps, images, strict=True)):
        data = np.asanyarray(img.dataobj).astype(np.float32)
        finite = np.abs(data[np.isfinite(data)])
        # A robust scale per map: R² of a few near-constant voxels can be far below -1.
        top = float(vmax) if vmax else (float(np.quantile(finite, 0.99)) if finite.size else 1.0)
        top = max(top, 1e-3)
        clean = nib.Nifti1Image(np.clip(np.nan_to_num(data), -top, top), img.affine)
        bottom = 1.0 - (row + 1) * height
        plotting.plot_glass_brain(
            clean, figure=fig, axes=(0.0, bottom, 0.32, height * 0.9), title=title,
            plot_abs=False, vmin=-top, vmax=top, cmap="RdBu_r", colorbar=False,
            annotate=False, threshold=0.1 * top,
        )  # fmt: skip
        plotting.plot_stat_map(
            clean, bg_img=background if background is not None else False, figure=fig,
            axes=(0.33, bottom, 0.67, height * 0.9), display_mode="z", cut_coords=5,
            vmin=-top, vmax=top, cmap="RdBu_r", colorbar=True, annotate=True,
            draw_cross=False, black_bg=True, threshold=0.1 * top,
        )  # fmt: skip
    return save_svg(fig, out_svg)


def plot_roi_summary(
    table: pd.DataFrame,
    out_svg: str | os.PathLike,
    *,
    statistic: str = "r",
    features: Sequence[str] | None = None,
    rois: Sequence[str] | None = None,
) -> Path:
    """Bar chart of a statistic's ROI means per feature space, with the chance level of r.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`roi_summary`.
    out_svg : path
        The SVG to write.
    statistic : str
        Which statistic (``r``, ``r2``, ``unique_r2`` ...).
    features, rois : sequence of str, optional
        Which feature spaces and regions (default all, ``all`` excluded).

    Returns
    -------
    pathlib.Path
        ``out_svg``.
    """
    sub = table[table["statistic"] == statistic]
    feats = list(features) if features is not None else list(dict.fromkeys(sub["feature"]))
    regions = (
        list(rois) if rois is not None else [r for r in dict.fromkeys(sub["roi"]) if r != "all"]
    )
    if not feats or not regions:
        raise DataError(f"table: no rows of statistic {statistic!r} to draw")
    fig = new_figure((max(5.0, 1.2 * len(feats) * len(regions) / 2 + 3), 3.2))
    ax = fig.add_subplot(111)
    width = 0.8 / len(regions)
    base = table[table["statistic"] == "chance_r"]
    for k, roi in enumerate(regions):
        values, nulls = [], []
        for f in feats:
            row = sub[(sub["feature"] == f) & (sub["roi"] == roi)]
            values.append(float(row["mean"].iloc[0]) if len(row) else np.nan)
            null = base[(base["feature"] == f) & (base["roi"] == roi)]
            nulls.append(float(null["mean"].iloc[0]) if len(null) else np.nan)
        x = np.arange(len(feats)) + (k - (len(regions) - 1) / 2) * width
        ax.bar(x, values, width, label=roi, color=ROI_COLOURS[k % len(ROI_COLOURS)])
        if statistic == "r":
            ax.scatter(x, nulls, marker="_", s=200, color="black", zorder=3)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(np.arange(len(feats)))
    ax.set_xticklabels(feats, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"mean {statistic} (test)")
    ax.legend(frameon=False, fontsize=8)
    if statistic == "r":
        ax.set_title("black ticks: chance (95th percentile, shuffled test stimuli)", fontsize=8)
    return save_svg(fig, out_svg)


def _main_spaces(features: Sequence[str]) -> list[str]:
    return [f for f in features if not f.startswith("unet_")]


def _roi_mean(table: pd.DataFrame, feature: str, roi: str, stat: str) -> float:
    row = table[(table["feature"] == feature) & (table["roi"] == roi)]
    row = row[row["statistic"] == stat]
    return float(row["mean"].iloc[0]) if len(row) else float("nan")


def _encoding_table(table: pd.DataFrame, features: Sequence[str], rois: Sequence[str]) -> str:
    """Mean test r per feature space and region beside its chance level (green above it)."""
    rows = []
    for feature in features:
        if np.isnan(_roi_mean(table, feature, "all", "r")):
            continue
        cells: list[Cell] = [escape(feature)]
        for roi in rois:
            r = _roi_mean(table, feature, roi, "r")
            chance = _roi_mean(table, feature, roi, "chance_r")
            cells.append((format_value(r), "beats" if r > chance else ""))
            cells.append(format_value(chance))
        rows.append(cells)
    header = ["Feature space"] + [h for roi in rois for h in (f"r {escape(roi)}", "chance")]
    return html_table(header, rows, id_="encoding-table")


def _maps_figure(encoding: EncodingSummary, main: Sequence[str], out: Path, reference: Any) -> bool:
    """Draw the r maps of the main feature spaces and the unique R² maps; False when none."""
    maps = {(m.feature, m.statistic): m.path for m in encoding.maps}
    shown = [(f"{f}: r", maps[(f, "r")]) for f in main if (f, "r") in maps and "+" not in f]
    shown += [(f"{f}: unique R²", p) for (f, s), p in maps.items() if s == "unique_r2"]
    if not shown:
        return False
    background = mean_volume(reference) if reference and Path(reference).is_file() else None
    plot_encoding_maps(shown, out, background=background)
    return True


def report_section(
    encoding: Mapping[str, Any] | EncodingSummary,
    *,
    figures_dir: str | os.PathLike,
    prefix: str,
    base: str | os.PathLike,
    reference: str | os.PathLike | None = None,
) -> str:
    """HTML of the report's Encoding section, drawing its figures into ``figures_dir``.

    Parameters
    ----------
    encoding : mapping or EncodingSummary
        The summary's ``"encoding"`` entry (:func:`write_encoding_derivatives`).
    figures_dir : path
        Where the SVG figures go.
    prefix : str
        ``sub-<label>``, the figures' name prefix.
    base : path
        The page's folder (links are relative to it).
    reference : path, optional
        A BOLD image whose mean is drawn under the map slices.

    Returns
    -------
    str
        The section body.
    """
    import pandas as pd

    if not isinstance(encoding, EncodingSummary):
        encoding = EncodingSummary.from_dict(encoding)
    figures = Path(figures_dir)
    base = Path(base)
    table = pd.read_csv(encoding.roi_table, sep="\t")
    features = list(dict.fromkeys(table["feature"]))
    rois = [r for r in dict.fromkeys(table["roi"]) if r != "all"]
    parts = [
        str(macro("encoding.html", "note")(int(encoding.n_train), int(encoding.n_test))),
        _encoding_table(table, features, rois),
    ]

    def figure(out: Path, alt: str, caption: str) -> None:
        parts.append(figure_html(relative_url(out, base), alt, caption))

    main = _main_spaces(features)
    out = figures / f"{prefix}_desc-encodingR_bars.svg"
    plot_roi_summary(table, out, statistic="r", features=main, rois=rois)
    figure(
        out,
        "Encoding accuracy per region",
        "Mean test r per region and feature space; black ticks: chance level.",
    )
    if (table["statistic"] == "unique_r2").any():
        out = figures / f"{prefix}_desc-encodingUnique_bars.svg"
        plot_roi_summary(table, out, statistic="unique_r2", rois=rois)
        figure(
            out,
            "Unique variance per region",
            "Mean unique R² (variance partitioning of the joint model) per region.",
        )
    out = figures / f"{prefix}_desc-encoding_maps.svg"
    if _maps_figure(encoding, main, out, reference):
        figure(
            out,
            "Encoding maps",
            "Per-voxel test r of each feature space and unique R² of z and c: glass brain "
            "and axial slices (colour scale shared, symmetric).",
        )
    unet = [f for f in features if f.startswith("unet_")]
    if unet:
        out = figures / f"{prefix}_desc-encodingUnet_bars.svg"
        plot_roi_summary(table, out, statistic="r", features=unet, rois=rois)
        figure(
            out,
            "U-Net features",
            "Mean test r of U-Net block activations per block, denoising step (early, "
            "middle, late) and conditioning (c: on the caption embedding; none: on the "
            "empty prompt); black ticks: chance level.",
        )
    return "\n".join(parts)
