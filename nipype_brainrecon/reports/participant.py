"""The participant report: one page, ``sub-<label>.html``, drawn from the run's summary.

Sections: Summary, ROIs, Decoding, Reconstructions, Metrics, Encoding (with ``--encoding``),
About and Errors. Figures are SVG files written into ``figures_dir`` and linked by paths
relative to the page, as are the reconstructions; images outside the page's folder (the
stimuli, in the raw dataset) are embedded as small PNG thumbnails.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .._version import __version__
from ..derivatives.portable import RAW, model_name, resolve_uri
from ..errors import DataError, UsageError
from ..io import atomic_write_text
from .encoding import report_section
from .figures import plot_alpha_counts, plot_rois
from .glossary import COLUMNS, DECODING_COLUMNS, TARGETS, legend_html, titled
from .headline import headline
from .layout import (
    Cell,
    build_sections,
    definition_list,
    error_list_html,
    figure_html,
    html_table,
    macro,
    render_page,
)
from .markup import (
    data_uri,
    escape,
    file_url,
    flatten,
    format_value,
    is_inside,
    is_missing,
    relative_url,
    value_html,
)
from .per_image import per_image_section, read_per_image, sample_label, stimulus_label
from .provenance import METHODS_TEXT
from .summary import ParticipantSummary, Roi, RunError
from .tables import ci_text, metrics_html, p_text, read_metrics_table, wrap_table

__all__ = ["THUMBNAIL_SIZE", "ExternalImages", "write_participant_report"]

#: Longest side, in pixels, of images embedded as thumbnails.
THUMBNAIL_SIZE = 256
#: Display names of the decoding summary's keys, in table order.
_DECODING_COLUMNS = tuple((key, name) for key, name, _ in DECODING_COLUMNS)
_DECODING_TITLES = {key: text for key, _, text in DECODING_COLUMNS}
#: The reference each decoding score is compared with (all: higher is better).
_DECODING_REFERENCES = {
    "target_r_mean": "target_r_chance",
    "pattern_r_mean": "baseline_pattern_r_mean",
    "identification": "identification_chance",
}

ExternalImages = Literal["embed", "link"]


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


def _resolved(summary: ParticipantSummary, root: Path) -> ParticipantSummary:
    """The summary with the files it names as paths on this machine: ``bids:<name>:<path>``
    URIs through ``inputs.datasets``, relative paths under ``root`` (the output dataset)."""
    links = summary.inputs.locations

    def at(path: str | None) -> str | None:
        return resolve_uri(path, links, root) if path else path

    encoding = summary.encoding
    if encoding is not None:
        maps = tuple(replace(m, path=at(m.path)) for m in encoding.maps)
        encoding = replace(encoding, roi_table=at(encoding.roi_table), maps=maps)
    stimuli = tuple(
        replace(s, stimulus=at(s.stimulus), reconstructions=tuple(map(at, s.reconstructions)))
        for s in summary.test_stimuli
    )
    return replace(
        summary,
        reference_bold=at(summary.reference_bold),
        rois=tuple(replace(r, mask=at(r.mask)) for r in summary.rois),
        test_stimuli=stimuli,
        metrics=at(summary.metrics),
        per_image=at(summary.per_image),
        encoding=encoding,
    )


def _dataset_html(name: str, location: str, ctx: _Context) -> str:
    """A dataset as its name linked by a relative URL, with its location."""
    href = relative_url(resolve_uri(location, {}, ctx.root), ctx.base)
    return f'<a href="{escape(href)}">{escape(name)}</a> (<code>{escape(location)}</code>)'


@dataclass
class _Context:
    base: Path  # the page's folder: links are relative to it
    root: Path  # the output dataset: relative paths of the summary are relative to it
    figures_dir: Path
    prefix: str  # "sub-<label>"
    external_images: str
    problems: list[str] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)

    def metrics_table(self, path: str) -> Any:
        """The metrics table at ``path``, read once (errors propagate to the section)."""
        if path not in self.tables:
            self.tables[path] = read_metrics_table(path)
        return self.tables[path]

    def image_src(self, path: Any) -> str | None:
        """``src`` of an image: relative inside the page's folder, else a thumbnail (or a
        relative link when ``external_images="link"``); None (and a problem) when missing."""
        if is_missing(path) or not str(path):
            self.problems.append("report: an image path is empty in the summary")
            return None
        p = Path(os.path.abspath(path))
        if not p.is_file():
            self.problems.append(f"report: {p}: image not found")
            return None
        if is_inside(p, self.base) or self.external_images == "link":
            return relative_url(p, self.base)
        try:
            return data_uri(_thumbnail_png(p), "image/png")
        except DataError as exc:
            self.problems.append(f"report: {exc}")
            return None


def _roi_label(roi: Roi) -> str:
    name = roi.name or "ROI"
    n = roi.n_voxels
    return f"{roi.target} \u2190 {name}" + ("" if is_missing(n) else f" ({int(n)} voxels)")


def _max_samples(summary: ParticipantSummary) -> int:
    return max(len(s.reconstructions) for s in summary.test_stimuli)


def _summary_section(summary: ParticipantSummary, ctx: _Context) -> str:
    inputs = summary.inputs
    status = macro("participant.html", "status")(len(summary.errors))
    items = [("Subject", escape(ctx.prefix)), ("Status", str(status))]
    if summary.software is not None:
        software = summary.software
        text = f"{software.name or ''} {software.version or ''}".strip()
        items.append(("Software", escape(text)))
    names = {RAW: inputs.bids_dir, "fmriprep": inputs.derivatives}
    for key, label in ((RAW, "Input dataset"), ("fmriprep", "Preprocessed data")):
        dataset, path = inputs.datasets.get(key) or {}, names[key]
        if dataset.get("URL"):
            name = str(dataset.get("Name") or key)
            items.append((label, _dataset_html(name, str(dataset["URL"]), ctx)))
        elif path:
            items.append((label, f"<code>{escape(path)}</code>"))
    counts = [
        f"{escape(n)} {label}{'' if str(n) == '1' else 's'}"
        for n, label in ((inputs.n_runs, "run"), (inputs.n_trials, "trial"))
        if not is_missing(n)
    ]
    if counts:
        items.append(("Data", ", ".join(counts)))
    model = model_name(summary.model)
    for found, label in ((model, "Model"), (summary.random_seed, "Random seed")):
        if found is not None:
            items.append((label, value_html(found)))
    if summary.rois:
        items.append(("ROIs", "; ".join(escape(_roi_label(r)) for r in summary.rois)))
    if summary.split:
        split = "; ".join(f"{escape(k)}: {value_html(v)}" for k, v in flatten(summary.split))
        items.append(("Split", split))
    if summary.test_stimuli:
        n_stimuli, n_samples = len(summary.test_stimuli), _max_samples(summary)
        items.append(
            ("Reconstructions", f"{n_stimuli} test stimuli, up to {n_samples} samples each")
        )
    return definition_list(items)


def _rois_section(summary: ParticipantSummary, ctx: _Context) -> str | None:
    if not summary.rois:
        return None
    parts = []
    reference = summary.reference_bold
    if reference:
        out = ctx.figures_dir / f"{ctx.prefix}_desc-rois_mask.svg"
        plot_rois(reference, [(_roi_label(r), r.mask) for r in summary.rois], out)
        parts.append(
            figure_html(
                relative_url(out, ctx.base),
                "ROI masks on the mean BOLD image",
                "ROI masks (filled and outlined) on the mean over time of "
                f"<code>{escape(Path(reference).name)}</code>; sagittal, coronal and axial slices "
                "through the ROIs (world coordinates in mm).",
            )
        )
    else:
        parts.append('<p class="note">No reference BOLD image in the summary; masks not drawn.</p>')
    rows = []
    for roi in summary.rois:
        mask = roi.mask
        link = (
            f'<a href="{escape(file_url(mask, ctx.base))}">{escape(Path(mask).name)}</a>'
            if mask and os.path.isfile(mask)
            else escape(mask or "")
        )
        name = (escape(roi.name or ""), "text")
        rows.append([escape(roi.target), name, format_value(roi.n_voxels), (link, "text")])
    parts.append(html_table(["Target", "ROI", "Voxels", "Mask"], rows, id_="roi-table"))
    return "\n".join(parts)


def _decoding_cell(scores: Mapping[str, Any], key: str) -> Cell:
    """One score, green (``beats``) when it is above its reference."""
    value = scores.get(key)
    if isinstance(value, str):
        return (escape(value), "text")
    text = format_value(value)
    ref = scores.get(_DECODING_REFERENCES.get(key, ""))
    if key in _DECODING_REFERENCES and not is_missing(value) and not is_missing(ref):
        return (text, "beats" if float(value) > float(ref) else "")
    return text


def _decoding_table(decoding: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The decoding table (the known scores present, each p followed by its CI when given,
    then any others), its legend and note."""
    known = [k for k, _ in _DECODING_COLUMNS]
    ci_keys = {
        f"{score}_p_value": (f"{score}_ci_low", f"{score}_ci_high")
        for score in ("target_r", "pattern_r", "identification")
    }
    # "baseline" names the baseline (e.g. "mean training feature"): said in the note.
    skip = {*known, *(k for pair in ci_keys.values() for k in pair), "baseline", "target"}
    extra = sorted({k for d in decoding.values() for k in d if k not in skip})
    baseline_names = sorted({str(d["baseline"]) for d in decoding.values() if d.get("baseline")})
    present = [(k, lbl) for k, lbl in _DECODING_COLUMNS if any(k in d for d in decoding.values())]
    columns: list[tuple[str, str]] = []
    for key, lbl in present:
        columns.append((key, lbl))
        pair = ci_keys.get(key)
        if pair and all(any(k in d for d in decoding.values()) for k in pair):
            columns.append((f"ci:{key}", "95% CI"))
    columns += [(k, k) for k in extra]
    titles = {**_DECODING_TITLES, **{f"ci:{k}": COLUMNS["95% CI"] for k in ci_keys}}
    rows = []
    for target, d in decoding.items():
        cells: list[Cell] = [titled(escape(target), TARGETS.get(target, ""))]
        for key, _ in columns:
            if key.startswith("ci:"):
                low, high = ci_keys[key[3:]]
                cells.append(ci_text(d.get(low), d.get(high)))
            elif key in ci_keys:
                cells.append(p_text(d.get(key)))
            else:
                cells.append(_decoding_cell(d, key))
        rows.append(cells)
    target_title = "what was decoded: " + "; ".join(f"{k}, {v}" for k, v in TARGETS.items())
    header = [titled("Target", target_title)]
    header += [titled(escape(lbl), titles.get(k, "")) for k, lbl in columns]
    legend = [("Target", target_title)]
    legend += [(lbl, titles.get(k, "")) for k, lbl in columns]
    legend = list(dict.fromkeys(legend))  # null 95%, p and CI read the same for every score
    return [
        wrap_table(html_table(header, rows, id_="decoding-table")),
        str(macro("participant.html", "decoding_note")(baseline_names)),
        legend_html(legend, id_="decoding-legend"),
    ]


def _decoding_section(summary: ParticipantSummary, ctx: _Context) -> str | None:
    decoding, alpha_counts = summary.decoding, summary.alpha_counts
    if not decoding and not alpha_counts:
        return None
    parts = _decoding_table(decoding) if decoding else []
    if alpha_counts:
        rois = {r.target: r for r in summary.rois}
        titles = {t: _roi_label(rois[t]) if t in rois else t for t in alpha_counts}
        out = ctx.figures_dir / f"{ctx.prefix}_desc-alphas_hist.svg"
        plot_alpha_counts(alpha_counts, out, titles=titles)
        parts.append(
            figure_html(
                relative_url(out, ctx.base),
                "Ridge penalties chosen by cross-validation",
                "Ridge penalty (alpha) chosen by cross-validation for each output of each "
                "decoder. Many outputs at the largest penalty mean little was decodable.",
            )
        )
    return "\n".join(parts)


class _GridCell(NamedTuple):
    cls: str  # "stimulus" or "sample"
    src: str | None  # None: the image is missing
    alt: str = ""
    caption: str = ""
    name: str = ""  # of the missing file


def _grid_cell(ctx: _Context, path: Any, caption: str, cls: str, stim_id: str) -> _GridCell:
    src = ctx.image_src(path)
    if src is None:
        return _GridCell(cls, None, name=Path(str(path)).name if path else "(no file)")
    return _GridCell(cls, src, alt=f"{stim_id}: {caption}", caption=caption)


def _recon_section(summary: ParticipantSummary, ctx: _Context) -> str | None:
    if not summary.test_stimuli:
        return None
    rows = []
    for k, item in enumerate(summary.test_stimuli):
        # labelled as in the file names: stim-<label>, sample-<n>
        stim = f"stim-{stimulus_label(item, k)}"
        cells = [_grid_cell(ctx, item.stimulus, "seen", "stimulus", stim)]
        for s, recon in enumerate(item.reconstructions):
            name = f"sample-{sample_label(recon, s)}"
            cells.append(_grid_cell(ctx, recon, name, "sample", stim))
        rows.append((stim, str(item.stim_id if item.stim_id is not None else ""), cells))
    return str(macro("participant.html", "reconstructions")(_max_samples(summary), rows))


def _metrics_section(summary: ParticipantSummary, ctx: _Context) -> str | None:
    path = summary.metrics
    if not path:
        return None
    table = ctx.metrics_table(path)
    note = macro("participant.html", "metrics_note")(file_url(path, ctx.base), Path(path).name)
    return metrics_html(table, id_="metrics-table", note=str(note))


def _per_image_section(summary: ParticipantSummary, ctx: _Context) -> str | None:
    if not summary.per_image:
        return None
    data = read_per_image(summary.per_image, summary.test_stimuli)
    try:
        table = ctx.metrics_table(summary.metrics) if summary.metrics else None
    except Exception:  # the Metrics section reports it; sort by the first metric
        table = None
    metric = headline(summary, table).metric
    better = None
    if table is not None and metric in table.index and "better" in table.columns:
        better = table.at[metric, "better"]
    return per_image_section(data, metric, better, ctx.image_src)


def _encoding_section(summary: ParticipantSummary, ctx: _Context) -> str | None:
    if summary.encoding is None:
        return None
    return report_section(
        summary.encoding,
        figures_dir=ctx.figures_dir,
        prefix=ctx.prefix,
        base=ctx.base,
        reference=summary.reference_bold,
    )


def _about_section(summary: ParticipantSummary, ctx: _Context) -> str:
    software = summary.software
    name = software.name if software and software.name is not None else "nipype-brainrecon"
    version = software.version if software and software.version is not None else ""
    items = [
        ("Software", escape(f"{name} {version}")),
        ("Report written by", escape(f"nipype_brainrecon.reports {__version__}")),
    ]
    parts = [definition_list(items)]
    if summary.command:
        parts.append(f"<h3>Command</h3><pre>{escape(summary.command)}</pre>")
    if summary.settings:
        rows = [[escape(k), (value_html(v), "text")] for k, v in flatten(summary.settings)]
        table = html_table(["Setting", "Value"], rows, id_="settings-table", cls="kv")
        parts.append("<h3>Settings</h3>" + table)
    if summary.inputs.entries:
        rows = []
        for key, value in summary.inputs.entries.items():
            if isinstance(value, (list, tuple)):
                text = "<br>".join(f"<code>{escape(v)}</code>" for v in value) or "&mdash;"
            else:
                text = value_html(value)
            rows.append([escape(key), (text, "text")])
        table = html_table(["Input", "Value"], rows, id_="inputs-table", cls="kv")
        parts.append("<h3>Inputs</h3>" + table)
    return "\n".join(parts)


def _headline_html(summary: ParticipantSummary, ctx: _Context) -> str:
    """The headline sentence and the link to the methods text (a problem when undrawable)."""
    table = None
    if summary.metrics:
        try:
            table = ctx.metrics_table(summary.metrics)
        except Exception:  # the Metrics section reports it
            table = None
    text = headline(summary, table).html()
    methods = ctx.root / METHODS_TEXT
    if methods.is_file():
        href = escape(relative_url(methods, ctx.base))
        text += (
            f'<p class="methods" id="methods-link">Methods text to cite and adapt: '
            f'<a href="{href}">{escape(METHODS_TEXT)}</a>.</p>'
        )
    return text


def _error_banner(errors: list[Any]) -> str:
    """The red banner: how many errors, then the first three one-line messages."""
    messages = [e.message if isinstance(e, RunError) else str(e) for e in errors]
    first = [escape(m.strip().splitlines()[0] if m.strip() else m) for m in messages[:3]]
    banner = str(macro("participant.html", "error_banner")(len(errors)))
    summary = str(macro("participant.html", "error_summary")(first, len(messages) - len(first)))
    return banner.replace("</div>", summary + "</div>", 1)


def write_participant_report(
    summary: Mapping[str, Any] | ParticipantSummary,
    out_html: str | os.PathLike,
    *,
    figures_dir: str | os.PathLike,
    external_images: ExternalImages = "embed",
    root: str | os.PathLike | None = None,
) -> Path:
    """Write one participant's HTML report and its figures.

    Parameters
    ----------
    summary : mapping or ParticipantSummary
        What the run produced (see :mod:`nipype_brainrecon.reports.summary` and
        ``docs/report.md``): ``subject`` (required), ``software``, ``command``, ``settings``,
        ``inputs``, ``reference_bold``, ``rois``, ``split``, ``decoding``, ``alpha_counts``,
        ``test_stimuli``, ``metrics`` (a TSV path), ``encoding``
        (:func:`nipype_brainrecon.encoding.write_encoding_derivatives`) and ``errors``.
        Absent keys leave their section out.
    out_html : path
        The page, e.g. ``<derivatives>/sub-01.html``; links are relative to its folder.
    figures_dir : path
        Where the SVG figures go, e.g. ``<derivatives>/sub-01/figures``.
    external_images : {"embed", "link"}
        Images outside the page's folder (stimuli in the raw dataset): embedded as PNG
        thumbnails of at most :data:`THUMBNAIL_SIZE` px (the page stays readable when the
        derivatives move), or linked by relative path.
    root : path, optional
        The output dataset, which the summary's relative paths are relative to (default: the
        page's folder); its ``bids:<name>:<path>`` URIs name files of the input datasets at the
        locations of ``inputs.datasets`` (relative to ``root``).

    Returns
    -------
    pathlib.Path
        ``out_html``.

    Raises
    ------
    UsageError
        If ``summary`` has no subject, an entry of the wrong kind (see
        :meth:`ParticipantSummary.from_dict`), or ``external_images`` is unknown.
    OutputError
        If the page cannot be written (from :func:`nipype_brainrecon.io.atomic_write_text`).
    """
    if not isinstance(summary, (Mapping, ParticipantSummary)):
        raise UsageError(f"summary: a {type(summary).__name__}; give a mapping (dict)")
    if external_images not in ("embed", "link"):
        raise UsageError(f"external_images={external_images!r}: use 'embed' or 'link'")
    if not isinstance(summary, ParticipantSummary):
        summary = ParticipantSummary.from_dict(summary)
    out_html = Path(os.path.abspath(out_html))
    root = Path(os.path.abspath(root)) if root is not None else out_html.parent
    summary = _resolved(summary, root)
    ctx = _Context(
        base=out_html.parent,
        root=root,
        figures_dir=Path(os.path.abspath(figures_dir)),
        prefix=summary.prefix,
        external_images=external_images,
    )
    sections = build_sections(
        [
            (title, anchor, lambda build=build: build(summary, ctx))
            for title, anchor, build in (
                ("Summary", "summary", _summary_section),
                ("ROIs", "rois", _rois_section),
                ("Decoding", "decoding", _decoding_section),
                ("Reconstructions", "reconstructions", _recon_section),
                ("Metrics", "metrics", _metrics_section),
                ("Per-image scores", "per-image", _per_image_section),
                ("Encoding", "encoding", _encoding_section),
                ("About", "about", _about_section),
            )
        ],
        ctx.problems,
    )
    errors = [*summary.errors, *ctx.problems]
    alert = _headline_html(summary, ctx)
    if errors:
        sections.append(("Errors", "errors", error_list_html(errors, ctx.base)))
        alert = _error_banner(errors) + alert
    page = render_page(
        f"{ctx.prefix}: nipype-brainrecon report",
        f"Reconstruction report: {ctx.prefix}",
        sections,
        alert=alert,
    )
    return atomic_write_text(out_html, page)
