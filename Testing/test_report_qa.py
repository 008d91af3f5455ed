"""The QA report: real metrics and overlay pictures of phantom cases, worst first, and the page
rendered by headless Chromium (screenshot kept in test-artifacts/qa_report.png)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import unavailable
from scipy import ndimage

from HNTumorSegLib.image import write_image
from HNTumorSegLib.metrics import evaluate_pairs
from HNTumorSegLib.phantoms import make_midrt_case
from HNTumorSegLib.report.qa_report import QACase, case_score, render_html, write_qa_report

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def _chromium() -> str:
    """A headless-capable Chromium; skips locally, fails in CI (which installs it) when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    unavailable("chromium is not installed (Debian: apt-get install -y chromium)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Cases 'good' (prediction = reference), 'fair' (dilated by 2 voxels in-plane), 'poor' (GTVn missed,
    GTVp shifted) and 'lost' (failed): written, scored with evaluate_pairs, reported."""
    root = tmp_path_factory.mktemp("qa")
    cases, pairs = [], []
    for i, kind in enumerate(("good", "fair", "poor")):
        c = make_midrt_case(seed=i, shape=(16, 64, 64), n_nodes=1)
        ref = c["midRT_mask"]
        arr = ref.array.copy()
        if kind == "fair":
            grown = ndimage.grey_dilation(arr, footprint=np.ones((1, 5, 5), bool))
            arr = np.where(arr > 0, arr, grown).astype(np.uint8)
        elif kind == "poor":
            arr = np.where(arr == 2, 0, arr)
            arr = np.roll(arr, 4, axis=2)
        pred = ref.with_array(arr.astype(np.uint8))
        paths = {k: root / f"{kind}_{k}.nii.gz" for k in ("t2", "ref", "pred")}
        write_image(c["midRT_T2"], paths["t2"])
        write_image(ref, paths["ref"])
        write_image(pred, paths["pred"])
        pairs.append((kind, pred, ref))
        cases.append(QACase(kind, image=str(paths["t2"]), prediction=str(paths["pred"]),
                            reference=str(paths["ref"]), seconds=3.0 + i))
    result = evaluate_pairs(pairs)
    for c in cases:
        c.metrics = result["cases"][c.case_id]
    cases.append(QACase("lost", error="crashed: the segmentation worker stopped unexpectedly (killed by SIGKILL)"))
    page = write_qa_report(root / "report", cases, aggregate=result["aggregate"], title="QA test cohort")
    return page, cases


def _row_ids(text: str) -> list[str]:
    body = text.split("<tbody>", 1)[1]
    return re.findall(r"<tr><td>([^<]+)</td>", body)


def test_rows_worst_first_with_pictures_and_metrics(report):
    page, cases = report
    text = page.read_text()
    assert _row_ids(text) == ["lost", "poor", "fair", "good"]
    scores = {c.case_id: case_score(c.metrics) for c in cases if c.metrics}
    assert scores["good"] == pytest.approx(1.0) and scores["poor"] < scores["fair"] < 1.0
    for kind in ("good", "fair", "poor"):
        png = page.parent / "img" / f"case-{kind}.png"
        assert png.is_file() and png.stat().st_size > 5000
        assert f'src="img/case-{kind}.png"' in text
    assert "killed by SIGKILL" in text and "DSCagg" in text
    assert str(page.parent.parent) not in text  # no file paths on the page


def test_without_references_sorted_by_id_and_says_so():
    html = render_html([QACase("b", prediction="x"), QACase("a", prediction="y")])
    assert _row_ids(html) == ["a", "b"] and "No references found" in html


def test_case_score_counts_empty_label_as_agreement():
    assert case_score({"GTVp": {"DSC": 0.8}, "GTVn": {"DSC": None, "volume_pred_ml": 0, "volume_ref_ml": 0}}) == 0.9
    assert case_score({"GTVp": {"DSC": 0.8}, "GTVn": {"DSC": None, "volume_pred_ml": 0.3, "volume_ref_ml": 0}}) == 0.4
    assert case_score(None) is None


def test_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image as PILImage

    page, _ = report
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "qa_report.png"
    shot.unlink(missing_ok=True)
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1280,900", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    img = PILImage.open(shot)
    assert img.size == (1280, 900)
    pixels = np.asarray(img.convert("L"), dtype=float)
    assert pixels.std() > 20  # text, table and dark overlay pictures: not a blank page
    assert (pixels < 40).mean() > 0.02  # the overlay pictures (black background) were drawn

    # The sorting script ran: ask for "case, descending" through the URL and read the DOM back.
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri() + "#sort=0,desc"], capture_output=True, encoding="utf-8", errors="replace",
                         timeout=120, check=True).stdout
    assert _row_ids(dom) == ["poor", "lost", "good", "fair"]
    assert 'class="sorted-desc"' in dom
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, encoding="utf-8", errors="replace", timeout=120,
                         check=True).stdout
    assert _row_ids(dom) == ["lost", "poor", "fair", "good"] and 'class="sorted-asc"' in dom
