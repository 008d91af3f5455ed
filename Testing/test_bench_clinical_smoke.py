"""Issue 27 item 6: ``bench/bench_clinical.py`` runs end to end on tiny cases (the full figures are committed).

Same code as the full benchmark (cold worker, session first / warm / refinement, PET/CT
restricted), sizes overridden; checks the result files and that the refinement changed
nothing outside its box.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow   # four worker / session processes (~40 s idle, two minutes on the loaded machine)
def test_bench_clinical_runs_on_tiny_sizes(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_clinical", ROOT / "bench" / "bench_clinical.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.main(["--midrt-shape", "16", "48", "48", "--midrt-spacing", "1.8", "1.8", "6",
                      "--ct-in-plane", "48", "--ct-spacing", "5", "5", "10", "--pet-spacing", "10", "10", "10",
                      "--refines", "1", "--threads", "1", "--out-dir", str(tmp_path), "--name", "smoke"])
    saved = json.loads((tmp_path / "smoke.json").read_text())
    md = (tmp_path / "smoke.md").read_text()
    m, p = saved["midrt"], saved["petct"]
    assert m["unchanged_outside_box"] is True and m["box_only_equals_the_box"] is True
    assert m["refine"][0]["n_tiles"] < m["cold_segment"]["n_tiles"]
    assert m["refine"][0]["cache"]["hits"] >= 2            # the warm session read nothing again
    for r in (m["cold_segment"], m["session_warm"], m["refine"][0], p["cold_segment_restricted"]):
        assert r["wall_s"] > 0 and r["peak_rss_mb"] > 0 and r["cpu_s"] > 0 and r["forward_s"] > 0
    assert "loadavg" in json.dumps(saved) and "one-lesion refinement" in md and res["name"] == "smoke"
