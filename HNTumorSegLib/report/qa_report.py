"""QA report of a cohort run: one HTML page, overlay pictures per case, sortable by score.

``<out>/report/index.html`` holds a table with one row per case: its score, DSC / HD95 /
volumes per label, the lesion counts, and overlay pictures (slices through each lesion,
reference and prediction contours in colour, drawn by :mod:`HNTumorSegLib.overlay`) in
``<out>/report/img/``. Clicking a column header sorts by it (a few lines of vanilla JS, no
network access, so the page opens from a file share or an air-gapped workstation).

Choices (not in the seeds):
- A case's **score** is the mean DSC over GTVp and GTVn, where a label empty in both the
  prediction and the reference counts as 1 (they agree: nothing there). This is the per-case
  analogue of HNTS-MRG's DSCagg_mean; rows start sorted by it, **worst first**, so a
  physicist reviews the doubtful cases first. A failed case scores -1 and comes first of all.
- Without references there is no score; rows are sorted by case id, and the pictures show
  the prediction alone.
- Patient data: the page shows case ids, no file paths.

Example:
    >>> import shutil
    >>> from HNTumorSegLib.image import read_image
    >>> from HNTumorSegLib.metrics import evaluate_pairs
    >>> from HNTumorSegLib.phantoms import write_hntsmrg_cohort
    >>> _ = write_hntsmrg_cohort(".", 1, shape=(8, 32, 32))     # phantom case 1; its prior as "prediction"
    >>> _ = Path("preds").mkdir(), shutil.copy("1/midRT/1_preRT_mask_registered.nii.gz", "preds/1_midRT_pred.nii.gz")
    >>> result = evaluate_pairs([("1", read_image("preds/1_midRT_pred.nii.gz", label=True),
    ...                           read_image("1/midRT/1_midRT_mask.nii.gz", label=True))])
    >>> cases = [QACase("1", image="1/midRT/1_midRT_T2.nii.gz", prediction="preds/1_midRT_pred.nii.gz",
    ...                 reference="1/midRT/1_midRT_mask.nii.gz", metrics=result["cases"]["1"])]
    >>> write_qa_report("out/report", cases, aggregate=result["aggregate"])
    PosixPath('out/report/index.html')
"""

from __future__ import annotations

import html
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any, Callable

from .. import LABEL_NAMES
from ..fileio import write_text_atomic
from ..prompts.pet_ct_registration import alignment_line

TEMPLATE = Path(__file__).with_name("templates") / "index.html"
LABELS = tuple(LABEL_NAMES.values())   # ("GTVp", "GTVn"), named once in HNTumorSegLib/__init__.py


@dataclass
class QACase:
    """One row of the report. ``error`` is set for a case whose segmentation failed."""

    case_id: str
    image: str | None = None
    prediction: str | None = None
    reference: str | None = None
    metrics: dict | None = None
    error: str | None = None
    seconds: float | None = None
    note: str | None = None
    pictures: list[tuple[str, str]] = field(default_factory=list)  # (relative path, caption)
    regions: list[dict] = field(default_factory=list)  # seed 002's stage crops: {"stage", "origin", "size", "spacing"}
    alignment: dict | None = None   # the PET placed on the CT (PetOnCt.to_dict, issue 24): shown when registered


def case_score(metrics: dict | None) -> float | None:
    """Mean DSC over GTVp and GTVn; a label empty in both counts as 1. None without metrics."""
    if not metrics:
        return None
    values = []
    for label in LABELS:
        entry = metrics.get(label) or {}
        dsc = entry.get("DSC")
        if dsc is None or (isinstance(dsc, float) and math.isnan(dsc)):
            empty = not entry.get("volume_pred_ml") and not entry.get("volume_ref_ml")
            values.append(1.0 if empty else 0.0)
        else:
            values.append(float(dsc))
    return sum(values) / len(values)


def _fmt(value: Any, pattern: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return pattern.format(value)


def _grade(dsc: float | None) -> str:
    if dsc is None:
        return ""
    return "bad" if dsc < 0.5 else "mid" if dsc < 0.75 else "good"


def _num_cell(value: Any, pattern: str = "{:.3f}", css: str = "") -> str:
    sort = "" if value is None else f' data-sort="{value}"'
    return f'<td class="num {css}"{sort}>{html.escape(_fmt(value, pattern))}</td>'


def region_text(region: dict) -> str:
    """One stage crop as a line: ``coarse ROI: 144x144x144 at 2x2x2 mm, origin (x, y, z) mm``."""
    size = "x".join(str(int(v)) for v in region.get("size", []))
    spacing = "x".join(f"{float(v):g}" for v in region.get("spacing", []))
    origin = ", ".join(f"{float(v):.1f}" for v in region.get("origin", []))
    return f"{region.get('stage', '?')} ROI: {size} at {spacing} mm, origin ({origin}) mm"


def _row(case: QACase) -> str:
    score = -1.0 if case.error else case_score(case.metrics)
    cells = [f"<td>{html.escape(case.case_id)}</td>"]
    if case.error:
        cells.append('<td class="num failed" data-sort="-1">failed</td>')
    else:
        cells.append(_num_cell(score, css=_grade(score)))
    m = case.metrics or {}
    for label in LABELS:
        e = m.get(label) or {}
        cells.append(_num_cell(e.get("DSC"), css=_grade(e.get("DSC"))))
        cells.append(_num_cell(e.get("HD95"), "{:.1f}"))
        vp, vr = e.get("volume_pred_ml"), e.get("volume_ref_ml")
        sort = "" if vp is None else f' data-sort="{vp}"'
        cells.append(f'<td class="num"{sort}>{html.escape(_fmt(vp, "{:.2f}"))} / {html.escape(_fmt(vr, "{:.2f}"))}</td>')
    n = m.get("GTVn") or {}
    det = (f"{n.get('TP', '?')}/{n.get('FP', '?')}/{n.get('FN', '?')}" if "TP" in n else "n/a")
    cells.append(f'<td class="num">{html.escape(det)}</td>')
    cells.append(_num_cell(case.seconds, "{:.1f}"))
    if case.error:
        pics = f'<span class="note">{html.escape(case.error)}</span>'
    else:
        pics = "".join(f'<figure style="display:inline-block;margin:0"><a href="{html.escape(src)}">'
                       f'<img src="{html.escape(src)}" alt="{html.escape(cap)}"></a>'
                       f'<figcaption class="note">{html.escape(cap)}</figcaption></figure>'
                       for src, cap in case.pictures)
        pics = pics or f'<span class="note">{html.escape(case.note or "no picture")}</span>'
        pics += "".join(f'<div class="note">{html.escape(region_text(r))}</div>' for r in case.regions)
        if alignment_line(case.alignment):   # a registered PET: how it was placed (issue 24)
            pics += f'<div class="note">{html.escape(alignment_line(case.alignment))}</div>'
    cells.append(f'<td class="pics">{pics}</td>')
    return "<tr>" + "".join(cells) + "</tr>"


HEADER = (["case", "score"] + [f"{lab} {col}" for lab in LABELS for col in ("DSC", "HD95 mm", "mL pred / ref")]
          + ["GTVn TP/FP/FN", "s", "pictures"])
SCORE_COLUMN = 1


def render_html(cases: list[QACase], title: str = "HNTumorSeg QA report", aggregate: dict | None = None,
                notes: str = "") -> str:
    """The report page as a string (rows pre-sorted worst first; JS re-sorts on click)."""
    scored = any(c.metrics for c in cases)

    def order(c: QACase):
        s = -1.0 if c.error else case_score(c.metrics)
        return (s is None, s if s is not None else 0.0, c.case_id)

    rows = sorted(cases, key=order) if scored else sorted(cases, key=lambda c: (c.error is None, c.case_id))
    n_failed = sum(1 for c in cases if c.error)
    summary = [f"<b>{len(cases)}</b> cases, <b>{n_failed}</b> failed."]
    if aggregate:
        parts = []
        for label in LABELS:
            d = (aggregate.get(label) or {}).get("DSCagg")
            parts.append(f"{label} DSCagg <b>{_fmt(d)}</b>")
        f1 = (aggregate.get("GTVn") or {}).get("F1agg")
        parts.append(f"DSCagg mean <b>{_fmt(aggregate.get('DSCagg_mean'))}</b>")
        parts.append(f"GTVn F1agg <b>{_fmt(f1)}</b>")
        summary.append(" &middot; ".join(parts))
    elif not scored:
        summary.append("No references found: no scores; rows sorted by case id.")
    footer = html.escape(f"Written {time.strftime('%Y-%m-%d %H:%M')} by hntumorseg batch. {notes}".strip())
    return Template(TEMPLATE.read_text()).substitute(
        title=html.escape(title), summary=" ".join(summary),
        header="".join(f"<th>{html.escape(h)}</th>" for h in HEADER),
        rows="\n".join(_row(c) for c in rows), footer=footer,
        default_sort_column=SCORE_COLUMN if scored else 0)


def write_qa_report(report_dir: str | os.PathLike, cases: list[QACase], aggregate: dict | None = None,
                    title: str = "HNTumorSeg QA report", notes: str = "",
                    pictures: Callable[[QACase, Path], list[tuple[str, str]]] | None = None) -> Path:
    """Write ``report_dir/index.html`` and the pictures in ``report_dir/img``; returns the page's path.

    ``pictures(case, img_dir)`` makes the overlay PNGs of a case and returns ``(path relative
    to report_dir, caption)`` pairs; default :func:`case_pictures`. A case whose pictures fail
    (an unreadable file) keeps its row with a note instead.
    """
    report_dir = Path(report_dir)
    img_dir = report_dir / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    make = pictures or case_pictures
    for case in cases:
        if case.error or not case.prediction:
            continue
        try:
            case.pictures = make(case, img_dir)
        except Exception as exc:  # a report must not die on one bad case: keep the row, say why
            case.pictures = []
            case.note = f"pictures failed: {type(exc).__name__}: {exc}"
    return write_text_atomic(report_dir / "index.html",
                             render_html(cases, title=title, aggregate=aggregate, notes=notes))


def case_pictures(case: QACase, img_dir: Path) -> list[tuple[str, str]]:
    """The case's overlay PNG, drawn by :func:`HNTumorSegLib.overlay.render_overlay` (one implementation):
    one panel per lesion, on the axial slice where it is largest; reference dashed, prediction solid."""
    from ..dicom.read import read_volume
    from ..image import read_image
    from ..overlay import render_overlay

    image = read_volume(case.image, name=f"image of case {case.case_id}", prefer_modality="CT")  # file or DICOM
    pred = read_image(case.prediction, label=True, name=f"prediction of case {case.case_id}")
    ref = read_image(case.reference, label=True, name=f"reference of case {case.case_id}") if case.reference else None
    score = case_score(case.metrics)
    title = f"case {case.case_id}" + (f" - score {score:.3f}" if score is not None else "")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in case.case_id)
    path = render_overlay(image, pred, ref, img_dir / f"case-{safe}.png", title=title)
    return [(f"img/{path.name}", "reference dashed, prediction solid" if ref is not None else "prediction")]
