"""What a figures run wrote and skipped, and the index.html that shows it."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

VERSION_COLUMNS = ("benchmark_version", "torch_version", "sklearn_version", "numpy_version",
                   "python_version", "device")


@dataclass(frozen=True)
class FigureEntry:
    """One figure file: where it is, what it shows, the index section it belongs to and, within
    it, its group (a sub-heading: a representation, or one model's views)."""

    path: Path
    caption: str
    section: str
    group: str = ""


@dataclass(frozen=True)
class Skip:
    """A figure that could not be drawn, and why."""

    what: str
    reason: str
    section: str = ""


@dataclass(frozen=True)
class HtmlSection:
    """A section of index.html that is not a figure (a table with its note); `html` is its body,
    already escaped, with paths relative to the index."""

    title: str
    html: str


@dataclass
class Report:
    """The outcome of ``draw_all``: figures written, figures skipped, index pages written, rows
    files that could not be read (skipped: their jobs are missing from every figure)."""

    out_dir: Path
    figures: list[FigureEntry] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    indexes: list[Path] = field(default_factory=list)
    unreadable: list[Skip] = field(default_factory=list)  # what = the rows file
    sections: list[HtmlSection] = field(default_factory=list)

    @property
    def index(self) -> Path | None:
        """The (first) index.html written."""
        return self.indexes[0] if self.indexes else None

    def add(self, path: Path, caption: str, section: str, group: str = "") -> None:
        self.figures.append(FigureEntry(Path(path), caption, section, group))

    def add_section(self, title: str, html: str) -> None:
        self.sections.append(HtmlSection(title, html))

    def skip(self, what: str, reason: str, section: str = "") -> None:
        self.skipped.append(Skip(what, reason, section))

    def skip_file(self, path: Path, reason: str) -> None:
        self.unreadable.append(Skip(str(path), reason))

    def extend(self, other: Report) -> None:
        self.figures += other.figures
        self.skipped += other.skipped
        self.indexes += other.indexes
        self.unreadable += other.unreadable
        self.sections += other.sections

    def summary(self) -> str:
        """A few lines for the terminal: counts, the index, and every skip with its reason."""
        lines = [f"wrote {len(self.figures)} figures; skipped {len(self.skipped)}"]
        lines += [f"index: {p}" for p in self.indexes]
        lines += [f"skipped {s.section + ': ' if s.section else ''}{s.what}: {s.reason}"
                  for s in self.skipped]
        if self.unreadable:
            lines.append(f"skipped {len(self.unreadable)} unreadable rows files (their jobs are "
                         "in no figure; `benchmark run` quarantines and re-runs them):")
            lines += [f"  {s.what}: {s.reason}" for s in self.unreadable]
        return "\n".join(lines)


def _table(df: pd.DataFrame) -> str:
    """A small HTML table (escaped), index included when it is named."""
    if df.empty:
        return "<p>none</p>"
    return df.to_html(border=0, classes="tbl", na_rep="", escape=True,
                      index=df.index.name is not None or isinstance(df.index, pd.MultiIndex))


def summary_tables(df: pd.DataFrame, failures: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The study summary: finished jobs per dataset × method, failures, and software versions."""
    out: dict[str, pd.DataFrame] = {}
    if len(df):
        jobs = df.drop_duplicates("job_id")
        ds = jobs["dataset"].astype(str) + " (" + jobs["dataset_source"].astype(str) + ")"
        counts = pd.crosstab(ds.rename("dataset"), jobs["model"].astype(str).rename("method"),
                             margins=True, margins_name="all")
        out["Finished jobs per dataset and method"] = counts
        cols = [c for c in VERSION_COLUMNS if c in jobs]
        if cols:
            versions = (jobs[cols].astype(str).value_counts().rename("jobs").reset_index()
                        .sort_values(cols).reset_index(drop=True))
            out["Software versions (jobs per combination)"] = versions
        if "train_seconds" in jobs and "job_seconds" in jobs:
            # min_count: seconds nobody recorded (imported rows) show as blank, not as 0 hours
            t = pd.DataFrame({
                "jobs": [len(jobs)],
                "training hours": [round(jobs["train_seconds"].astype(float).sum(min_count=1)
                                         / 3600, 3)],
                "job hours": [round(jobs["job_seconds"].astype(float).sum(min_count=1) / 3600,
                                    3)],
            })
            out["Compute"] = t
    if len(failures):
        by_kind = failures.groupby(failures["kind"].astype(str)).size().rename("jobs")
        out["Failures by kind"] = by_kind.to_frame()
        out["Failures"] = failures[["job_id", "kind", "reason"]].reset_index(drop=True)
    return out


CSS = """
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
figure { display: inline-block; vertical-align: top; margin: 0.5em; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; width: 0; min-width: 100%; }  /* as wide as its image, no wider */
table.tbl { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
table.tbl td, table.tbl th { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
.skip { color: #8a4b00; font-size: 0.9em; }
"""


def _heading(text: str) -> str:
    """``text`` with a capital first letter where it is a Latin one (not β of β-VAE)."""
    return text[:1].upper() + text[1:] if text[:1].isascii() else text


def write_index(report: Report, title: str, tables: dict[str, pd.DataFrame],
                path: Path) -> Path:
    """Write index.html: the summary tables, then every figure with its caption grouped by
    section (in the order drawn), then what was skipped and why. Paths are relative."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{len(report.figures)} figures, {len(report.skipped)} skipped.</p>",
    ]
    sections = list(dict.fromkeys(f.section for f in report.figures))
    anchors = {s: f"s{i}" for i, s in enumerate(sections, 1)}
    groups = {s: list(dict.fromkeys(f.group for f in report.figures if f.section == s and f.group))
              for s in sections}
    toc = ['<li><a href="#summary">Summary</a></li>']
    toc += [f'<li><a href="#t{i}">{esc(t.title)}</a></li>' for i, t in enumerate(report.sections, 1)]
    for s in sections:
        sub = "".join(f'<li><a href="#{anchors[s]}-{j}">{esc(_heading(g))}</a></li>'
                      for j, g in enumerate(groups[s], 1))
        toc.append(f'<li><a href="#{anchors[s]}">{esc(s)}</a>{f"<ul>{sub}</ul>" if sub else ""}</li>')
    if report.skipped or report.unreadable:
        toc.append('<li><a href="#skipped">Skipped</a></li>')
    parts += ["<ul>", *toc, "</ul>", '<h2 id="summary">Summary</h2>']
    for name, table in tables.items():
        parts += [f"<h3>{esc(name)}</h3>", _table(table)]
    for i, extra in enumerate(report.sections, 1):
        parts += [f'<h2 id="t{i}">{esc(extra.title)}</h2>', extra.html]
    for section in sections:
        parts.append(f'<h2 id="{anchors[section]}">{esc(section)}</h2>')
        group = ""
        for f in (f for f in report.figures if f.section == section):
            if f.group and f.group != group:
                j = groups[section].index(f.group) + 1
                parts.append(f'<h3 id="{anchors[section]}-{j}">{esc(_heading(f.group))}</h3>')
            group = f.group
            rel = Path(f.path).relative_to(path.parent).as_posix()
            csv = Path(f.path).with_suffix(".csv")
            data = (f' <a href="{esc(csv.relative_to(path.parent).as_posix())}">numbers (CSV)</a>'
                    if csv.is_file() else "")
            parts.append(f'<figure><a href="{esc(rel)}"><img src="{esc(rel)}" alt="{esc(f.caption)}">'
                         f"</a><figcaption>{esc(f.caption)}{data}</figcaption></figure>")
    if report.skipped or report.unreadable:
        parts.append('<h2 id="skipped">Skipped</h2><ul>')
        parts += [f'<li class="skip">{esc(s.section + ": " if s.section else "")}'
                  f"{esc(s.what)}: {esc(s.reason)}</li>" for s in report.skipped]
        parts += [f'<li class="skip">unreadable rows file {esc(s.what)}: {esc(s.reason)}</li>'
                  for s in report.unreadable]
        parts.append("</ul>")
    parts.append("</body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def write_links(path: Path, title: str, indexes: list[Path]) -> Path:
    """An index.html linking other index pages (each study's, each comparison's), by folder."""
    esc = html.escape
    items = []
    for p in indexes:
        rel = Path(os.path.relpath(p, path.parent)).as_posix()
        items.append(f'<li><a href="{esc(rel)}">{esc(Path(rel).parent.as_posix())}</a></li>')
    page = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{esc(title)}</h1>", "<ul>", *items, "</ul>", "</body></html>\n"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(page), encoding="utf-8")
    return path
