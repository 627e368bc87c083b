"""The HTML report: `render(content)` -> one self-contained HTML document (figures inline as SVG,
tables from great_tables, CSS inline, system fonts only, no script and no external reference).

`ml.reporting` imports no domain code: the content (`ReportContent`) is plain data made by
`ml.workflows.report`."""

from __future__ import annotations

import html
from importlib import resources

import jinja2

from ml.reporting.report.content import KMPanel, Nomogram, ReportContent, Study
from ml.reporting.report.sections import (
    SECTIONS,
    Section,
    balance_section,
    cox_section,
    data_section,
    survival_section,
    table_one_section,
)
from ml.reporting.report.sections_models import (
    explain_section,
    methods_section,
    models_section,
    tripod_section,
)

BANNER = "simulated cohort — not patient data"
BUILDERS = (data_section, table_one_section, balance_section, survival_section, cox_section, models_section,
            explain_section, tripod_section, methods_section)


def _section(build, content: ReportContent, key: str, title: str) -> Section:
    """One section; a part that cannot be drawn from this cohort's results becomes a statement."""
    try:
        return build(content)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return Section(key, title, "This section could not be made from this cohort's results.",
                       [f'<p class="statement">{html.escape(f"{type(exc).__name__}: {exc}")}</p>'])


def sections(content: ReportContent) -> list[Section]:
    return [_section(build, content, key, title)
            for build, (key, title) in zip(BUILDERS, SECTIONS, strict=True)]


def render(content: ReportContent) -> str:
    """The report as one HTML string."""
    env = jinja2.Environment(autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                             lstrip_blocks=True)
    template = env.from_string(resources.files(__package__).joinpath("report.html.j2").read_text("utf-8"))
    css = resources.files(__package__).joinpath("report.css").read_text("utf-8")
    return template.render(content=content, sections=sections(content), toc=SECTIONS, css=css,
                           banner=BANNER if content.study.is_twin else "")


__all__ = ["render", "sections", "ReportContent", "Study", "KMPanel", "Nomogram", "Section", "SECTIONS",
           "BANNER"]
