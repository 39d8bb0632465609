"""A self-contained HTML report: sections of paragraphs, tables and figures in one file.

The report is written for clinical researchers: one page, plain CSS, figures embedded as
base64 PNG so that the file can be mailed or archived alone, and every table also saved as
CSV beside it (``tables/*.csv``). The study runner decides what goes in; this module only
lays it out with the Jinja2 template ``templates/report.html``.

Examples:
    >>> import pandas as pd
    >>> report = Report(title="Demo", subtitle="")
    >>> sec = report.section("results", "Results")
    >>> sec.text("One model.")
    >>> sec.table("Main table", pd.DataFrame({"AUC": ["0.700"]}), csv_name="main")
    >>> html = report.render()                                   # doctest: +SKIP
    >>> write_report(report, "out/report")                       # doctest: +SKIP
"""
from __future__ import annotations

import base64
import html as _html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from npcai.fsutil import atomic_write_text

__all__ = ["Report", "Section", "Block", "write_report", "dataframe_html"]


@dataclass
class Block:
    """One item of a section: ``text`` (HTML-escaped paragraph), ``list``, ``table``,
    ``figure`` (PNG path) or ``note`` (a highlighted paragraph)."""

    kind: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    caption: str = ""
    table: pd.DataFrame | None = None
    csv_name: str | None = None
    image: Path | None = None


@dataclass
class Section:
    """A titled part of the report (its ``id`` is the HTML anchor)."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def text(self, text: str) -> None:
        self.blocks.append(Block("text", text=text))

    def note(self, text: str) -> None:
        self.blocks.append(Block("note", text=text))

    def bullets(self, items: list[str]) -> None:
        self.blocks.append(Block("list", items=list(items)))

    def table(self, caption: str, table: pd.DataFrame, csv_name: str | None = None) -> None:
        self.blocks.append(Block("table", caption=caption, table=table, csv_name=csv_name))

    def figure(self, caption: str, image: str | os.PathLike) -> None:
        self.blocks.append(Block("figure", caption=caption, image=Path(image)))


@dataclass
class Report:
    """The whole report: a title block, key facts, and ordered sections."""

    title: str
    subtitle: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    footer: str = ""

    def section(self, id: str, title: str) -> Section:
        sec = Section(id, title)
        self.sections.append(sec)
        return sec

    def render(self) -> str:
        """The report as one HTML string (figures inlined)."""
        import jinja2

        env = jinja2.Environment(
            loader=jinja2.PackageLoader("npcai.report", "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
        )
        template = env.get_template("report.html")
        return template.render(report=self, sections=[_prepare(s) for s in self.sections])


def dataframe_html(table: pd.DataFrame) -> str:
    """A DataFrame as a plain HTML table (escaped; empty cells kept empty)."""
    head = "".join(f"<th>{_html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for _, r in table.iterrows():
        cells = "".join(f"<td>{_html.escape('' if pd.isna(v) else str(v))}</td>" for v in r.tolist())
        rows.append(f"<tr>{cells}</tr>")
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _prepare(section: Section) -> dict[str, Any]:
    blocks = []
    for b in section.blocks:
        d: dict[str, Any] = {"kind": b.kind, "text": b.text, "entries": b.items, "caption": b.caption}
        if b.kind == "table":
            d["html"] = dataframe_html(b.table if b.table is not None else pd.DataFrame())
            d["csv"] = f"tables/{b.csv_name}.csv" if b.csv_name else None
        if b.kind == "figure":
            d["src"] = _png_data_uri(b.image) if b.image and b.image.is_file() else None
            d["file"] = b.image.name if b.image else ""
        blocks.append(d)
    return {"id": section.id, "title": section.title, "blocks": blocks}


def write_report(report: Report, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/report.html`` and every table with a ``csv_name`` to ``out_dir/tables/``.

    Figures are expected under ``out_dir/figures/`` already (they are embedded, not linked).
    """
    out_dir = Path(out_dir)
    for sec in report.sections:
        for b in sec.blocks:
            if b.kind == "table" and b.csv_name and b.table is not None:
                atomic_write_text(out_dir / "tables" / f"{b.csv_name}.csv", b.table.to_csv(index=False))
    path = out_dir / "report.html"
    atomic_write_text(path, report.render())
    return path
