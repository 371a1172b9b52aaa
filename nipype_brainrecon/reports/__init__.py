"""HTML reports of a participant run and of a group, in the style of fMRIPrep's.

A participant report is one page, ``sub-<label>.html`` at the derivatives root, with a navigation
bar and the sections Summary, ROIs, Decoding, Reconstructions, Metrics, Encoding (with
``--encoding``), About and Errors. Its
figures are SVG files written into ``figures_dir`` (e.g. ``sub-01/figures``) and linked by paths
relative to the page, as are the reconstructions; images outside the page's folder (the
stimuli, which live in the raw dataset) are embedded as small PNG thumbnails so the derivatives
stay readable on their own. The group report is one table of subjects by metrics, with the
chance level, the mismatched-pairs level and every baseline beside them, and one figure per
metric across subjects.

Pages work offline: no external CSS, scripts or fonts. All text from the run is escaped. A
section that cannot be drawn (a missing file, an unreadable table) does not stop the page: the
problem is listed in the Errors box, so a report of a failed run is still written. Figures are
written without dates and with fixed SVG ids, so the same summary gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import inspect
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
import pandas as pd

from .._version import __version__
from ..errors import DataError, MissingInputError, UsageError
from ..io import atomic_write_bytes, atomic_write_text

__all__ = [
    "ROI_COLOURS",
    "THUMBNAIL_SIZE",
    "alpha_histogram",
    "collect_group_table",
    "mean_volume",
    "plot_alpha_counts",
    "plot_group_metric",
    "plot_rois",
    "read_metrics_table",
    "roi_cut_coords",
    "write_group_report",
    "write_participant_report",
]

#: Colours of the ROIs in figures, in the order of the summary's ``rois`` (colour-blind safe).
ROI_COLOURS = ("#e69f00", "#56b4e9", "#009e73", "#cc79a7", "#f0e442", "#0072b2")
#: Longest side, in pixels, of images embedded as thumbnails.
THUMBNAIL_SIZE = 256
#: Display names of the decoding summary's keys, in table order.
_DECODING_COLUMNS = (
    ("roi", "ROI"),
    ("n_voxels", "Voxels"),
    ("n_targets", "Outputs"),
    ("n_stimuli", "Test stimuli"),
    ("target_r_mean", "Feature r"),
    ("target_r_chance", "chance"),
    ("pattern_r_mean", "Pattern r"),
    ("baseline_pattern_r_mean", "baseline"),
    ("identification", "2-way identification"),
    ("identification_chance", "chance"),
)
_METRIC_INFO_COLUMNS = ("features", "score", "rule", "better")
_SVG_SALT = "nipype-brainrecon"

ExternalImages = Literal["embed", "link"]

# --------------------------------------------------------------------------------------------
# Small HTML helpers
# --------------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell (escaped): ints as is, floats to ``digits``, missing as a dash."""
    if _is_missing(value):
        return '<span class="na">&mdash;</span>'
    if isinstance(value, (bool, np.bool_)):
        return _e(str(bool(value)).lower())
    if isinstance(value, (int, np.integer)):
        return _e(int(value))
    if isinstance(value, (float, np.floating)):
        return _e(f"{float(value):.{digits}f}")
    return _e(value)


def _inside(path: Path, base: Path) -> bool:
    try:
        rel = os.path.relpath(path, base)
    except ValueError:  # another drive
        return False
    return not (rel == ".." or rel.startswith(".." + os.sep))


def _relative_url(path: str | os.PathLike, base: Path) -> str:
    """URL of ``path`` relative to the folder ``base`` (the page's), percent-encoded."""
    rel = os.path.relpath(os.path.abspath(path), base)
    return quote(rel.replace(os.sep, "/"))


def _file_url(path: str | os.PathLike, base: Path) -> str:
    """A link to a file: relative when inside the page's folder, else an absolute file URI."""
    path = Path(os.path.abspath(path))
    return _relative_url(path, base) if _inside(path, base) else path.as_uri()


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _thumbnail_png(path: Path, size: int = THUMBNAIL_SIZE) -> bytes:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
            img.thumbnail((size, size), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            img.save(buffer, format="PNG", optimize=True)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as an image ({exc})") from exc
    return buffer.getvalue()


def _cell(tag: str, cell: str | tuple[str, str], extra: str = "") -> str:
    content, cls = cell if isinstance(cell, tuple) else (cell, "")
    attr = f' class="{_e(cls)}"' if cls else ""
    return f"<{tag}{extra}{attr}>{content}</{tag}>"


def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[str | tuple[str, str]]],
    *,
    cls: str = "",
    id_: str = "",
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table from pre-escaped cells (or ``(cell, class)`` pairs); the first cell of
    each row is its header."""
    attrs = (f' class="{_e(cls)}"' if cls else "") + (f' id="{_e(id_)}"' if id_ else "")
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        rc = row_classes[i] if row_classes and row_classes[i] else ""
        cells = [_cell("th", row[0], ' scope="row"')] + [_cell("td", c) for c in row[1:]]
        tr = f'<tr class="{_e(rc)}">' if rc else "<tr>"
        body.append(f"{tr}{''.join(cells)}</tr>")
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _definitions(items: Iterable[tuple[str, str]]) -> str:
    """A definition list from (escaped term, pre-escaped description) pairs."""
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def _value_html(value: Any) -> str:
    """Any setting's value as escaped text; lists and mappings as compact JSON."""
    if isinstance(value, (Mapping, list, tuple)):
        return f"<code>{_e(json.dumps(value, default=str, sort_keys=False))}</code>"
    if isinstance(value, (float, np.floating)) and not _is_missing(value):
        return _e(f"{float(value):g}")
    if _is_missing(value):
        return '<span class="na">&mdash;</span>'
    return _e(value)


_PATH_RE = re.compile(r"(?<![\w:/.])(/[^\s\"'<>`]+)")


def _linkify(text: str, base: Path) -> str:
    """Escape ``text`` and link every absolute path in it that names an existing file."""
    out, last = [], 0
    for match in _PATH_RE.finditer(text):
        token = match.group(1).rstrip(".,;:)]}")
        if not os.path.isfile(token):
            continue
        start = match.start(1)
        out.append(_e(text[last:start]))
        out.append(f'<a href="{_e(_file_url(token, base))}">{_e(token)}</a>')
        last = start + len(token)
    out.append(_e(text[last:]))
    return "".join(out)


_CSS = """
:root { --accent: #2c5d8f; --muted: #666; --bad: #b00020; --good: #1b7837; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #222; background: #fff; }
nav.navbar { position: sticky; top: 0; z-index: 10; display: flex; flex-wrap: wrap;
             align-items: center; gap: 0.2rem 1.2rem; padding: 0.55rem 1.5rem;
             background: #f8f9fa; border-bottom: 1px solid #ddd; }
nav.navbar .brand { font-weight: 600; color: #333; margin-right: 0.8rem; }
nav.navbar a { color: var(--accent); text-decoration: none; }
nav.navbar a:hover { text-decoration: underline; }
nav.navbar a.errors-link { color: var(--bad); font-weight: 600; }
main { max-width: 1200px; margin: 0 auto; padding: 0.5rem 1.5rem 3rem; }
h1 { font-size: 1.7rem; margin: 1rem 0 0.3rem; }
h2 { font-size: 1.35rem; margin: 0 0 0.6rem; padding-bottom: 0.2rem;
     border-bottom: 2px solid var(--accent); color: var(--accent); }
h3 { font-size: 1.05rem; margin: 1rem 0 0.4rem; }
section { margin-top: 1.6rem; scroll-margin-top: 3.5rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; margin: 0.4rem 0; }
dt { font-weight: 600; color: #444; }
dd { margin: 0; word-break: break-word; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.92rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #e3e3e3; text-align: right; }
thead th { border-bottom: 2px solid #bbb; background: #f3f5f7; }
th:first-child, tbody th { text-align: left; }
tbody th { font-weight: 500; }
td.text, th.text, table.kv th, table.kv td { text-align: left; }
tr.reference th, tr.reference td { color: var(--muted); font-style: italic; }
tr.reference.first th, tr.reference.first td { border-top: 2px solid #bbb; }
tr.summary-row th, tr.summary-row td { font-weight: 600; border-top: 2px solid #bbb; }
td.beats { color: var(--good); font-weight: 600; }
.na { color: #aaa; }
.note { color: var(--muted); font-size: 0.9rem; }
.figure { margin: 0.6rem 0 1rem; }
.figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.figure .caption { color: var(--muted); font-size: 0.88rem; margin-top: 0.2rem; }
.alert { border: 2px solid var(--bad); background: #fdecee; color: #5f0010;
         border-radius: 6px; padding: 0.7rem 1rem; margin: 0.8rem 0; }
.alert a { color: var(--bad); }
.alert ul { margin: 0.3rem 0 0; padding-left: 1.2rem; }
.alert li { margin: 0.25rem 0; font-family: ui-monospace, Menlo, Consolas, monospace;
            font-size: 0.86rem; white-space: pre-wrap; word-break: break-word; }
.ok { color: var(--good); font-weight: 600; }
.bad { color: var(--bad); font-weight: 600; }
pre, code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.86rem; }
pre { background: #f6f8fa; padding: 0.6rem 0.8rem; border-radius: 4px;
      white-space: pre-wrap; word-break: break-word; }
.recon-grid { display: flex; flex-direction: column; gap: 0.5rem; }
.recon-row { display: flex; align-items: flex-start; gap: 0.35rem; flex-wrap: wrap; }
.recon-row .label { width: 7.5rem; font-size: 0.82rem; color: #444; word-break: break-all;
                    padding-top: 0.2rem; }
.recon-row figure { margin: 0; text-align: center; }
.recon-row img { width: 112px; height: 112px; object-fit: contain; background: #fafafa;
                 border: 1px solid #ddd; display: block; }
.recon-row figure.stimulus img { border: 3px solid #333; }
.recon-row figcaption { font-size: 0.72rem; color: var(--muted); }
.recon-row .missing { width: 112px; height: 112px; border: 2px dashed var(--bad); color: var(--bad);
                      font-size: 0.72rem; display: flex; align-items: center;
                      justify-content: center; text-align: center; padding: 0.2rem; }
.metric-figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr));
                  gap: 0.8rem; }
footer { color: var(--muted); font-size: 0.82rem; border-top: 1px solid #ddd;
         margin-top: 2.5rem; padding-top: 0.6rem; }
"""


def _page(
    title: str, heading: str, sections: Sequence[tuple[str, str, str]], *, alert: str = ""
) -> str:
    """The whole page: navbar, heading, optional alert, sections (title, anchor, body)."""
    links = []
    for name, anchor, _ in sections:
        cls = ' class="errors-link"' if anchor == "errors" else ""
        links.append(f'<a href="#{_e(anchor)}"{cls}>{_e(name)}</a>')
    body = "\n".join(
        f'<section id="{_e(anchor)}">\n<h2>{_e(name)}</h2>\n{content}\n</section>'
        for name, anchor, content in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="nipype-brainrecon {_e(__version__)}">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<nav class="navbar"><span class="brand">nipype-brainrecon</span>{"".join(links)}</nav>\n'
        f"<main>\n<h1>{_e(heading)}</h1>\n{alert}\n{body}\n"
        f"<footer>Written by nipype-brainrecon {_e(__version__)} "
        "(<code>nipype_brainrecon.reports</code>).</footer>\n"
        "</main>\n</body>\n</html>\n"
    )


def _figure(src: str, alt: str, caption: str = "") -> str:
    cap = f'<div class="caption">{caption}</div>' if caption else ""
    return f'<div class="figure"><img src="{_e(src)}" alt="{_e(alt)}">{cap}</div>'


# --------------------------------------------------------------------------------------------
# Figures (matplotlib's object API: no pyplot state, no backend switch)
# --------------------------------------------------------------------------------------------


def _svg_bytes(fig: Any) -> bytes:
    """Render a matplotlib figure to SVG bytes without a date and with fixed ids."""
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": _SVG_SALT, "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buffer.getvalue()


def _new_figure(figsize: tuple[float, float]) -> Any:
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
    fig = _new_figure((11, 6.6))
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
    return atomic_write_bytes(out_svg, _svg_bytes(fig))


def alpha_histogram(alpha_counts: Mapping[Any, Any]) -> tuple[list[float], list[int]]:
    """Sort a ``{alpha: count}`` mapping (keys may be strings such as ``"1e3"``) by alpha.

    Returns
    -------
    alphas : list of float
        The distinct penalties, ascending.
    counts : list of int
        How many outputs chose each.
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
    fig = _new_figure((4.2 * len(targets) + 0.4, 3.0))
    for i, target in enumerate(targets):
        ax = fig.add_subplot(1, len(targets), i + 1)
        alphas, counts = alpha_histogram(alpha_counts[target])
        ax.bar(range(len(alphas)), counts, color=ROI_COLOURS[i % len(ROI_COLOURS)], width=0.8)
        ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas], rotation=45, ha="right")
        ax.set_xlabel("ridge penalty (alpha)")
        ax.set_ylabel("outputs")
        ax.set_title((titles or {}).get(target, target), fontsize=11)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return atomic_write_bytes(out_svg, _svg_bytes(fig))


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
    fig = _new_figure((4.4, 3.0))
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
        if _is_missing(level):
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
    return _svg_bytes(fig)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def read_metrics_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a metrics TSV written from :func:`nipype_brainrecon.evaluation.evaluate`.

    Accepts the table written with its index (first column ``metric``, or unnamed) or with a
    ``metric`` column. ``n/a`` cells are NaN.

    Returns
    -------
    pandas.DataFrame
        Indexed by metric label, with at least a ``value`` column.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: metrics table not found")
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as a TSV table ({exc})") from exc
    if "metric" in table.columns:
        table = table.set_index("metric")
    elif len(table.columns) and str(table.columns[0]).startswith("Unnamed"):
        table = table.set_index(table.columns[0]).rename_axis("metric")
    else:
        raise DataError(
            f"{path}: no 'metric' column; write the table of evaluate() with its index "
            "(table.to_csv(path, sep='\\t'))"
        )
    if "value" not in table.columns:
        raise DataError(f"{path}: no 'value' column; expected the table of evaluate()")
    table.index = table.index.astype(str)
    return table


def collect_group_table(metrics_files: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """Stack the participants' metrics tables into one long table for the group report.

    Parameters
    ----------
    metrics_files : mapping of subject label to path
        Each subject's metrics TSV (see :func:`read_metrics_table`).

    Returns
    -------
    pandas.DataFrame
        Columns ``subject``, ``metric`` and those of the tables (``value``, ``chance``,
        ``mismatched``, ``baseline: NAME``, ``better``, ...), one row per subject and metric.
    """
    if not metrics_files:
        raise UsageError("metrics_files: no subject given; give at least one metrics table")
    parts = []
    for subject, path in metrics_files.items():
        table = read_metrics_table(path).reset_index()
        table.insert(0, "subject", _subject_label(subject))
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


def _subject_label(subject: Any) -> str:
    label = str(subject)
    return label[4:] if label.startswith("sub-") else label


def _beats(row: pd.Series, references: Sequence[str]) -> bool:
    """Whether a metric's value is better than every finite reference level in ``row``."""
    value = row.get("value")
    if _is_missing(value):
        return False
    lower = str(row.get("better", "higher")) == "lower"
    levels = [float(row[c]) for c in references if c in row and not _is_missing(row[c])]
    if not levels:
        return False
    return all((value < lv) if lower else (value > lv) for lv in levels)


def _reference_columns(columns: Iterable[str]) -> list[str]:
    cols = list(columns)
    return [c for c in ("chance", "mismatched") if c in cols] + [
        c for c in cols if str(c).startswith("baseline")
    ]


def _better_arrow(better: Any) -> str:
    text = "" if _is_missing(better) else str(better)
    return {"higher": "&uarr; higher", "lower": "&darr; lower"}.get(text, _e(text))


def _metrics_html(table: pd.DataFrame, *, id_: str) -> str:
    """The metrics table: each value beside chance, the mismatched level and every baseline."""
    refs = _reference_columns(table.columns)
    header = ["Metric", "Better", "Reconstructions"] + [_e(c) for c in refs]
    rows = []
    for metric, row in table.iterrows():
        value = _fmt(row["value"])
        cells: list[str | tuple[str, str]] = [_e(metric), _better_arrow(row.get("better"))]
        cells.append((value, "beats") if _beats(row, refs) else value)
        cells += [_fmt(row[c]) for c in refs]
        rows.append(cells)
    return _table(header, rows, id_=id_, cls="metrics")


# --------------------------------------------------------------------------------------------
# The participant report
# --------------------------------------------------------------------------------------------


@dataclass
class _Context:
    base: Path  # the page's folder: links are relative to it
    figures_dir: Path
    prefix: str  # "sub-<label>"
    external_images: str
    problems: list[str] = field(default_factory=list)

    def image_src(self, path: Any) -> str | None:
        """``src`` of an image: relative inside the page's folder, else a thumbnail (or a
        relative link when ``external_images="link"``); None (and a problem) when missing."""
        if _is_missing(path) or not str(path):
            self.problems.append("report: an image path is empty in the summary")
            return None
        p = Path(os.path.abspath(path))
        if not p.is_file():
            self.problems.append(f"report: {p}: image not found")
            return None
        if _inside(p, self.base) or self.external_images == "link":
            return _relative_url(p, self.base)
        try:
            return _data_uri(_thumbnail_png(p), "image/png")
        except DataError as exc:
            self.problems.append(f"report: {exc}")
            return None


def _rois_of(summary: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    rois = summary.get("rois") or {}
    return [(str(t), r if isinstance(r, Mapping) else {"mask": r}) for t, r in rois.items()]


def _roi_label(target: str, roi: Mapping[str, Any]) -> str:
    name = roi.get("name") or "ROI"
    n = roi.get("n_voxels")
    return f"{target} \u2190 {name}" + ("" if _is_missing(n) else f" ({int(n)} voxels)")


def _summary_section(summary: Mapping[str, Any], ctx: _Context) -> str:
    software = summary.get("software") or {}
    inputs = summary.get("inputs") or {}
    settings = summary.get("settings") or {}
    n_errors = len(summary.get("errors") or [])
    status = (
        f'<span class="bad">{n_errors} error{"s" if n_errors != 1 else ""}: '
        '<a href="#errors">see Errors</a></span>'
        if n_errors
        else '<span class="ok">completed without errors</span>'
    )
    items = [("Subject", _e(ctx.prefix)), ("Status", status)]
    if software:
        items.append(
            ("Software", _e(f"{software.get('name', '')} {software.get('version', '')}".strip()))
        )
    for key, label in (("bids_dir", "Input dataset"), ("derivatives", "Preprocessed data")):
        if inputs.get(key):
            items.append((label, f"<code>{_e(inputs[key])}</code>"))
    counts = [
        f"{_e(inputs[k])} {label}{'' if str(inputs[k]) == '1' else 's'}"
        for k, label in (("n_runs", "run"), ("n_trials", "trial"))
        if not _is_missing(inputs.get(k))
    ]
    if counts:
        items.append(("Data", ", ".join(counts)))
    for keys, label in ((("model", "model_id"), "Model"), (("random_seed", "seed"), "Random seed")):
        found = next((settings[k] for k in keys if k in settings), None)
        if found is not None:
            items.append((label, _value_html(found)))
    rois = _rois_of(summary)
    if rois:
        items.append(("ROIs", "; ".join(_e(_roi_label(t, r)) for t, r in rois)))
    split = summary.get("split") or {}
    if split:
        items.append(("Split", "; ".join(f"{_e(k)}: {_value_html(v)}" for k, v in _flatten(split))))
    stimuli = summary.get("test_stimuli") or []
    if stimuli:
        n_samples = max(len(s.get("reconstructions") or []) for s in stimuli)
        items.append(
            ("Reconstructions", f"{len(stimuli)} test stimuli, up to {n_samples} samples each")
        )
    return _definitions(items)


def _rois_section(summary: Mapping[str, Any], ctx: _Context) -> str | None:
    rois = _rois_of(summary)
    if not rois:
        return None
    parts = []
    reference = summary.get("reference_bold")
    if reference:
        out = ctx.figures_dir / f"{ctx.prefix}_desc-rois_mask.svg"
        plot_rois(reference, [(_roi_label(t, r), r.get("mask")) for t, r in rois], out)
        parts.append(
            _figure(
                _relative_url(out, ctx.base),
                "ROI masks on the mean BOLD image",
                "ROI masks (filled and outlined) on the mean over time of "
                f"<code>{_e(Path(reference).name)}</code>; sagittal, coronal and axial slices "
                "through the ROIs (world coordinates in mm).",
            )
        )
    else:
        parts.append('<p class="note">No reference BOLD image in the summary; masks not drawn.</p>')
    rows = []
    for target, roi in rois:
        mask = roi.get("mask")
        link = (
            f'<a href="{_e(_file_url(mask, ctx.base))}">{_e(Path(mask).name)}</a>'
            if mask and os.path.isfile(mask)
            else _e(mask or "")
        )
        name = (_e(roi.get("name", "")), "text")
        rows.append([_e(target), name, _fmt(roi.get("n_voxels")), (link, "text")])
    parts.append(_table(["Target", "ROI", "Voxels", "Mask"], rows, id_="roi-table"))
    return "\n".join(parts)


def _decoding_section(summary: Mapping[str, Any], ctx: _Context) -> str | None:
    decoding = summary.get("decoding") or {}
    alpha_counts = summary.get("alpha_counts") or {}
    if not decoding and not alpha_counts:
        return None
    parts = []
    if decoding:
        known = [k for k, _ in _DECODING_COLUMNS]
        # "baseline" names the baseline (e.g. "mean training feature"): said in the note.
        extra = sorted(
            {k for d in decoding.values() for k in d if k not in known and k != "baseline"}
        )
        baseline_names = sorted(
            {str(d["baseline"]) for d in decoding.values() if d.get("baseline")}
        )
        columns = [
            (k, lbl) for k, lbl in _DECODING_COLUMNS if any(k in d for d in decoding.values())
        ]
        columns += [(k, k) for k in extra]
        # The reference each score is compared with (all: higher is better).
        compare = {
            "target_r_mean": "target_r_chance",
            "pattern_r_mean": "baseline_pattern_r_mean",
            "identification": "identification_chance",
        }
        rows = []
        for target, d in decoding.items():
            cells: list[str | tuple[str, str]] = [_e(target)]
            for key, _ in columns:
                value = d.get(key)
                if isinstance(value, str):
                    cells.append((_e(value), "text"))
                    continue
                text = _fmt(value)
                ref = d.get(compare.get(key, ""))
                if key in compare and not _is_missing(value) and not _is_missing(ref):
                    cells.append((text, "beats" if float(value) > float(ref) else ""))
                else:
                    cells.append(text)
            rows.append(cells)
        parts.append(
            _table(["Target"] + [_e(lbl) for _, lbl in columns], rows, id_="decoding-table")
        )
        baseline_note = (
            f" The baseline is the pattern r of a constant prediction ({_e(', '.join(baseline_names))})."
            if baseline_names
            else ""
        )
        parts.append(
            '<p class="note">Decoded features of the held-out test stimuli. <em>Feature r</em>: '
            "Pearson r across stimuli between decoded and true values, averaged over the "
            "decoder's outputs (chance 0). <em>Pattern r</em>: r between the decoded and true "
            "feature vectors, averaged over stimuli. <em>2-way identification</em>: how often a "
            "decoded vector correlates more with its own stimulus's features than with another's "
            f"(chance 0.5).{baseline_note} Green values beat their chance level or baseline.</p>"
        )
    if alpha_counts:
        rois = dict(_rois_of(summary))
        titles = {t: _roi_label(t, rois[t]) if t in rois else t for t in alpha_counts}
        out = ctx.figures_dir / f"{ctx.prefix}_desc-alphas_hist.svg"
        plot_alpha_counts(alpha_counts, out, titles=titles)
        parts.append(
            _figure(
                _relative_url(out, ctx.base),
                "Ridge penalties chosen by cross-validation",
                "Ridge penalty (alpha) chosen by cross-validation for each output of each "
                "decoder. Many outputs at the largest penalty mean little was decodable.",
            )
        )
    return "\n".join(parts)


def _recon_section(summary: Mapping[str, Any], ctx: _Context) -> str | None:
    stimuli = summary.get("test_stimuli") or []
    if not stimuli:
        return None
    rows = []
    for k, item in enumerate(stimuli):
        stim_id = str(item.get("stim_id") or f"stimulus {k + 1}")
        cells = [_grid_cell(ctx, item.get("stimulus"), "seen", "stimulus", stim_id)]
        for s, recon in enumerate(item.get("reconstructions") or []):
            cells.append(_grid_cell(ctx, recon, f"sample {s + 1}", "sample", stim_id))
        rows.append(
            f'<div class="recon-row"><div class="label">{_e(stim_id)}</div>{"".join(cells)}</div>'
        )
    n_samples = max(len(s.get("reconstructions") or []) for s in stimuli)
    note = (
        f'<p class="note">Each row: a held-out test image (black frame) and its {n_samples} '
        "reconstruction sample(s) from the decoded features.</p>"
    )
    return note + f'<div class="recon-grid" id="reconstruction-grid">{"".join(rows)}</div>'


def _grid_cell(ctx: _Context, path: Any, caption: str, cls: str, stim_id: str) -> str:
    src = ctx.image_src(path)
    if src is None:
        name = Path(str(path)).name if path else "(no file)"
        return f'<figure class="{cls}"><div class="missing">missing: {_e(name)}</div></figure>'
    alt = f"{stim_id}: {caption}"
    return (
        f'<figure class="{cls}"><img src="{_e(src)}" alt="{_e(alt)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _metrics_section(summary: Mapping[str, Any], ctx: _Context) -> str | None:
    path = summary.get("metrics")
    if not path:
        return None
    table = read_metrics_table(path)
    note = (
        '<p class="note">Mean over test images and samples. <em>chance</em>: the analytic '
        "chance level (two-way identification: 0.5; none for PixCorr, SSIM and distances). "
        "<em>mismatched</em>: the reconstructions scored against the wrong images, the "
        "empirical chance level. <em>baseline</em> columns: trivial reconstructions scored the "
        "same way. Green values beat chance, mismatched and every baseline. Table: "
        f'<a href="{_e(_file_url(path, ctx.base))}">{_e(Path(path).name)}</a>.</p>'
    )
    return _metrics_html(table, id_="metrics-table") + note


def _encoding_section(summary: Mapping[str, Any], ctx: _Context) -> str | None:
    encoding = summary.get("encoding")
    if not encoding:
        return None
    from .encoding import report_section

    return report_section(
        encoding,
        figures_dir=ctx.figures_dir,
        prefix=ctx.prefix,
        base=ctx.base,
        reference=summary.get("reference_bold"),
    )


def _about_section(summary: Mapping[str, Any], ctx: _Context) -> str:
    software = summary.get("software") or {}
    parts = []
    items = [
        (
            "Software",
            _e(f"{software.get('name', 'nipype-brainrecon')} {software.get('version', '')}"),
        ),
        ("Report written by", _e(f"nipype_brainrecon.reports {__version__}")),
    ]
    parts.append(_definitions(items))
    if summary.get("command"):
        parts.append(f"<h3>Command</h3><pre>{_e(summary['command'])}</pre>")
    settings = summary.get("settings") or {}
    if settings:
        rows = [[_e(k), (_value_html(v), "text")] for k, v in _flatten(settings)]
        parts.append(
            "<h3>Settings</h3>" + _table(["Setting", "Value"], rows, id_="settings-table", cls="kv")
        )
    inputs = summary.get("inputs") or {}
    if inputs:
        rows = []
        for key, value in inputs.items():
            if isinstance(value, (list, tuple)):
                text = "<br>".join(f"<code>{_e(v)}</code>" for v in value) or "&mdash;"
            else:
                text = _value_html(value)
            rows.append([_e(key), (text, "text")])
        parts.append(
            "<h3>Inputs</h3>" + _table(["Input", "Value"], rows, id_="inputs-table", cls="kv")
        )
    return "\n".join(parts)


def _errors_html(errors: Sequence[Any], base: Path) -> str:
    items = []
    for err in errors:
        if isinstance(err, Mapping):
            message = str(err.get("message") or err.get("error") or "")
            crash = err.get("crash_file") or err.get("crashfile") or err.get("file")
            text = _linkify(message, base)
            if crash:
                href = _file_url(crash, base) if os.path.isfile(crash) else None
                text += (
                    f' (crash file: <a href="{_e(href)}">{_e(crash)}</a>)'
                    if href
                    else f" (crash file: {_e(crash)}, not found)"
                )
        else:
            text = _linkify(str(err), base)
        items.append(f"<li>{text}</li>")
    return f'<div class="alert" id="error-list"><ul>{"".join(items)}</ul></div>'


def _build_sections(
    builders: Sequence[tuple[str, str, Callable[[], str | None]]], problems: list[str]
) -> list[tuple[str, str, str]]:
    sections = []
    for title, anchor, build in builders:
        try:
            body = build()
        except Exception as exc:  # a report of a failed run must still be written
            problems.append(f"report: {title} section: {exc}")
            body = '<p class="bad">This section could not be drawn; see Errors.</p>'
        if body is not None:
            sections.append((title, anchor, body))
    return sections


def write_participant_report(
    summary: Mapping[str, Any],
    out_html: str | os.PathLike,
    *,
    figures_dir: str | os.PathLike,
    external_images: ExternalImages = "embed",
) -> Path:
    """Write one participant's HTML report and its figures.

    Parameters
    ----------
    summary : mapping
        What the run produced (see ``docs/report.md``): ``subject`` (required), ``software``,
        ``command``, ``settings``, ``inputs``, ``reference_bold``, ``rois``, ``split``,
        ``decoding``, ``alpha_counts``, ``test_stimuli``, ``metrics`` (a TSV path),
        ``encoding`` (:func:`nipype_brainrecon.encoding.write_encoding_derivatives`) and
        ``errors``. Absent keys leave their section out.
    out_html : path
        The page, e.g. ``<derivatives>/sub-01.html``; links are relative to its folder.
    figures_dir : path
        Where the SVG figures go, e.g. ``<derivatives>/sub-01/figures``.
    external_images : {"embed", "link"}
        Images outside the page's folder (stimuli in the raw dataset): embedded as PNG
        thumbnails of at most :data:`THUMBNAIL_SIZE` px (the page stays readable when the
        derivatives move), or linked by relative path.

    Returns
    -------
    pathlib.Path
        ``out_html``.

    Raises
    ------
    UsageError
        If ``summary`` has no subject or ``external_images`` is unknown.
    OutputError
        If the page cannot be written (from :func:`nipype_brainrecon.io.atomic_write_text`).
    """
    if not isinstance(summary, Mapping):
        raise UsageError(f"summary: a {type(summary).__name__}; give a mapping (dict)")
    if external_images not in ("embed", "link"):
        raise UsageError(f"external_images={external_images!r}: use 'embed' or 'link'")
    subject = _subject_label(summary.get("subject") or "")
    if not subject:
        raise UsageError("summary: no 'subject'; give the participant label, e.g. '01'")
    out_html = Path(os.path.abspath(out_html))
    ctx = _Context(
        base=out_html.parent,
        figures_dir=Path(os.path.abspath(figures_dir)),
        prefix=f"sub-{subject}",
        external_images=external_images,
    )
    sections = _build_sections(
        [
            ("Summary", "summary", lambda: _summary_section(summary, ctx)),
            ("ROIs", "rois", lambda: _rois_section(summary, ctx)),
            ("Decoding", "decoding", lambda: _decoding_section(summary, ctx)),
            ("Reconstructions", "reconstructions", lambda: _recon_section(summary, ctx)),
            ("Metrics", "metrics", lambda: _metrics_section(summary, ctx)),
            ("Encoding", "encoding", lambda: _encoding_section(summary, ctx)),
            ("About", "about", lambda: _about_section(summary, ctx)),
        ],
        ctx.problems,
    )
    errors = list(summary.get("errors") or []) + ctx.problems
    alert = ""
    if errors:
        sections.append(("Errors", "errors", _errors_html(errors, ctx.base)))
        alert = (
            f'<div class="alert" id="error-banner"><strong>{len(errors)} '
            f"error{'s' if len(errors) != 1 else ''}</strong> in this run or its report: "
            '<a href="#errors">see Errors</a>.</div>'
        )
    page = _page(
        f"{ctx.prefix}: nipype-brainrecon report",
        f"Reconstruction report: {ctx.prefix}",
        sections,
        alert=alert,
    )
    return atomic_write_text(out_html, page)


# --------------------------------------------------------------------------------------------
# The group report
# --------------------------------------------------------------------------------------------


def _long_group_table(table: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise UsageError(f"table: a {type(table).__name__}; give a pandas DataFrame")
    long = table.copy()
    if "metric" not in long.columns and long.index.name == "metric":
        long = long.reset_index()
    missing = [c for c in ("subject", "metric", "value") if c not in long.columns]
    if missing:
        raise DataError(
            f"table: no column(s) {', '.join(missing)}; give one row per subject and metric "
            "(e.g. from collect_group_table)"
        )
    if long.empty:
        raise DataError("table: no rows; give at least one subject's metrics")
    long["subject"] = long["subject"].map(_subject_label)
    long["metric"] = long["metric"].astype(str)
    dup = long.duplicated(["subject", "metric"])
    if dup.any():
        first = long.loc[dup].iloc[0]
        raise DataError(
            f"table: subject {first['subject']!r} has metric {first['metric']!r} more than "
            "once; give one row per subject and metric"
        )
    for col in ["value"] + _reference_columns(long.columns):
        long[col] = pd.to_numeric(long[col], errors="coerce")
    return long


def _group_figure_name(metric: str) -> str:
    # A BIDS label (alphanumeric), e.g. "Pixels 2-way (takagi)" -> "Pixels2WayTakagi".
    slug = "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", metric)) or "metric"
    return f"group_desc-{slug}_scores.svg"


def write_group_report(
    table: pd.DataFrame,
    out_html: str | os.PathLike,
    *,
    subjects_reports: Mapping[str, str | os.PathLike] | None = None,
    provenance: Mapping[str, Any],
    figures_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the group report: subjects by metrics beside chance and baselines, and figures.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per subject and metric: columns ``subject``, ``metric`` (or the index named
        ``metric``), ``value`` and optionally ``better``, ``chance``, ``mismatched`` and
        ``baseline: NAME`` (see :func:`collect_group_table`).
    out_html : path
        The page, e.g. ``<derivatives>/group.html``.
    subjects_reports : mapping of subject label to path or relative URL, optional
        Each subject's report, linked from its row (absolute paths are made relative).
    provenance : mapping
        Software, version, command, settings...: shown in About.
    figures_dir : path, optional
        Write one SVG per metric there and link it; by default the figures are embedded in
        the page.

    Returns
    -------
    pathlib.Path
        ``out_html``.
    """
    long = _long_group_table(table)
    out_html = Path(os.path.abspath(out_html))
    base = out_html.parent
    metrics = list(dict.fromkeys(long["metric"]))
    subjects = list(dict.fromkeys(long["subject"]))
    wide = long.pivot(index="subject", columns="metric", values="value").reindex(
        index=subjects, columns=metrics
    )
    refs = _reference_columns(long.columns)
    ref_means = long.groupby("metric", sort=False)[refs].mean().reindex(metrics)
    better = (
        long.groupby("metric", sort=False)["better"].first().reindex(metrics)
        if "better" in long.columns
        else pd.Series(index=metrics, dtype=object)
    )
    reports = {_subject_label(k): v for k, v in (subjects_reports or {}).items()}
    problems: list[str] = []

    def subject_cell(subject: str) -> str:
        target = reports.get(subject)
        if not target:
            return _e(f"sub-{subject}")
        href = (
            _file_url(target, base)
            if os.path.isabs(target)
            else quote(str(target).replace(os.sep, "/"), safe="/#%")
        )
        return f'<a href="{_e(href)}">{_e(f"sub-{subject}")}</a>'

    def table_section() -> str:
        header = ["Subject"] + [
            f"{_e(m)}<br><small>{_better_arrow(better[m])}</small>" for m in metrics
        ]
        rows: list[list[str | tuple[str, str]]] = []
        classes: list[str] = []
        for subject in subjects:
            rows.append([subject_cell(subject)] + [_fmt(wide.loc[subject, m]) for m in metrics])
            classes.append("")
        mean_row: list[str | tuple[str, str]] = [f"Mean &plusmn; s.d. (n = {len(subjects)})"]
        for m in metrics:
            vals = wide[m].dropna()
            if vals.empty:
                mean_row.append(_fmt(None))
                continue
            sd = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
            text = f"{float(vals.mean()):.3f} &plusmn; {sd:.3f}"
            row = pd.Series({"value": float(vals.mean()), "better": better[m], **ref_means.loc[m]})
            mean_row.append((text, "beats") if _beats(row, refs) else text)
        rows.append(mean_row)
        classes.append("summary-row")
        for k, ref in enumerate(refs):
            label = ref if ref == "chance" else f"{ref} (mean)"
            rows.append([_e(label)] + [_fmt(ref_means.loc[m, ref]) for m in metrics])
            classes.append("reference first" if k == 0 else "reference")
        note = (
            '<p class="note">Rows: subjects, their mean, then the reference levels (chance; '
            "mismatched: reconstructions scored against the wrong images; baselines: trivial "
            "reconstructions), averaged over subjects. Green means beat every reference.</p>"
        )
        return _table(header, rows, id_="group-metrics", row_classes=classes) + note

    def figures_section() -> str:
        figures = []
        for m in metrics:
            try:
                svg = plot_group_metric(
                    wide[m],
                    {r: ref_means.loc[m, r] for r in refs},
                    title=m,
                    better=None if _is_missing(better[m]) else str(better[m]),
                )
                if figures_dir is not None:
                    path = atomic_write_bytes(Path(figures_dir) / _group_figure_name(m), svg)
                    src = _relative_url(path, base)
                else:
                    src = _data_uri(svg, "image/svg+xml")
                figures.append(_figure(src, f"{m} across subjects"))
            except Exception as exc:  # one bad metric must not hide the others
                problems.append(f"report: figure of {m}: {exc}")
        return f'<div class="metric-figures">{"".join(figures)}</div>'

    def summary_section() -> str:
        items = [
            ("Subjects", _e(len(subjects))),
            ("Metrics", _e(len(metrics))),
            ("Reference levels", _e(", ".join(refs)) or "none"),
        ]
        if reports:
            links = ", ".join(subject_cell(s) for s in subjects if s in reports)
            items.append(("Subject reports", links or "none"))
        return _definitions(items)

    def about_section() -> str:
        prov = dict(provenance or {})
        parts = []
        command = prov.pop("command", None)
        rows = [[_e(k), (_value_html(v), "text")] for k, v in _flatten(prov)]
        rows.append([_e("report"), (_e(f"nipype_brainrecon.reports {__version__}"), "text")])
        if command:
            parts.append(f"<h3>Command</h3><pre>{_e(command)}</pre>")
        parts.append(_table(["Item", "Value"], rows, id_="provenance-table", cls="kv"))
        return "\n".join(parts)

    sections = _build_sections(
        [
            ("Summary", "summary", summary_section),
            ("Metrics", "metrics", table_section),
            ("Figures", "figures", figures_section),
            ("About", "about", about_section),
        ],
        problems,
    )
    alert = ""
    if problems:
        sections.append(("Errors", "errors", _errors_html(problems, base)))
        alert = '<div class="alert" id="error-banner">Some parts of this report failed: <a href="#errors">see Errors</a>.</div>'
    page = _page(
        "Group: nipype-brainrecon report",
        f"Group report: {len(subjects)} subject{'s' if len(subjects) != 1 else ''}",
        sections,
        alert=alert,
    )
    return atomic_write_text(out_html, page)
