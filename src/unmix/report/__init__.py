"""Figures and a self-contained HTML report of one or several factorizations.

>>> from unmix.report import write_report
>>> write_report("out", {"PCA": pca, "NMF": nmf}, X=X, image=image)  # doctest: +SKIP
PosixPath('out/report.html')
"""

from __future__ import annotations

from ._figures import (
    plot_comparison,
    plot_endmembers,
    plot_loss,
    plot_maps,
    plot_pixel_fits,
    plot_residual_map,
    relative_residuals,
)
from ._html import write_report
from ._interactive import VIEWER_BYTES, Viewer, new_viewer, viewer_section
from ._model import default_pixels
from ._panels import HtmlFigure, figure_html
from ._template import CSS, PAGE

__all__ = [
    "CSS",
    "PAGE",
    "VIEWER_BYTES",
    "HtmlFigure",
    "Viewer",
    "default_pixels",
    "figure_html",
    "new_viewer",
    "plot_comparison",
    "plot_endmembers",
    "plot_loss",
    "plot_maps",
    "plot_pixel_fits",
    "plot_residual_map",
    "relative_residuals",
    "viewer_section",
    "write_report",
]
