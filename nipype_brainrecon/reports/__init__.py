"""HTML reports of a participant run and of a group, in the style of fMRIPrep's.

A participant report is one page, ``sub-<label>.html`` at the derivatives root, with a navigation
bar and the sections Summary, ROIs, Decoding, Reconstructions, Metrics, Encoding (with
``--encoding``), About and Errors. Its figures are SVG files written into ``figures_dir`` (e.g.
``sub-01/figures``) and linked by paths relative to the page, as are the reconstructions; images
outside the page's folder (the stimuli, which live in the raw dataset) are embedded as small PNG
thumbnails so the derivatives stay readable on their own. The group report is one table of
subjects by metrics, with the chance level, the mismatched-pairs level and every baseline beside
them, and one figure per metric across subjects.

Pages work offline: no external CSS, scripts or fonts. All text from the run is escaped. A
section that cannot be drawn (a missing file, an unreadable table) does not stop the page: the
problem is listed in the Errors box, so a report of a failed run is still written. Figures are
written without dates and with fixed SVG ids, so the same summary gives the same bytes.

Modules
-------
summary
    The participant summary as typed, checked records (:class:`ParticipantSummary`).
participant
    The participant report (:func:`write_participant_report`).
group
    The group table and the group report (:func:`write_group_report`).
encoding
    The Encoding section of the participant report and its figures.
figures
    The matplotlib figures (ROIs, ridge penalties, group metrics) and SVG saving.
tables
    Metrics tables: reading, stacking for the group, the HTML table.
layout
    The Jinja2 templates (``templates/``), the stylesheet and the blocks of every page.
markup
    Escaping, number formatting, links.
"""

from .figures import (
    ROI_COLOURS,
    mean_volume,
    plot_alpha_counts,
    plot_group_metric,
    plot_rois,
    roi_cut_coords,
    sorted_alpha_counts,
)
from .group import write_group_report
from .participant import THUMBNAIL_SIZE, ExternalImages, write_participant_report
from .summary import ParticipantSummary, crash_message
from .tables import collect_group_table, read_metrics_table

__all__ = [
    "ROI_COLOURS",
    "THUMBNAIL_SIZE",
    "ExternalImages",
    "ParticipantSummary",
    "collect_group_table",
    "crash_message",
    "mean_volume",
    "plot_alpha_counts",
    "plot_group_metric",
    "plot_rois",
    "read_metrics_table",
    "roi_cut_coords",
    "sorted_alpha_counts",
    "write_group_report",
    "write_participant_report",
]
