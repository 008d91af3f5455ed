#!/usr/bin/env python
"""Draw README section 4's QA-report picture from a real ``hntumorseg batch`` run (no patient data).

1. writes a phantom HNTS-MRG cohort (``write_hntsmrg_cohort``, 4 cases by default);
2. runs ``hntumorseg batch --layout hntsmrg --model demo-midrt --task midrt`` on it (the real
   command, its workers and its report), so the numbers and seconds shown are today's;
3. screenshots ``report/index.html`` with headless Chromium (1280 x 900, as
   ``Testing/test_report_qa.py`` does) into ``qa_report.png``, and prints the cohort's DSCagg mean
   and the seconds per case, so a README sentence quoting them can be checked.

Usage:
    python scripts/make_qa_picture.py                    # -> build/pictures/qa_report.png
    python scripts/make_qa_picture.py --out docs/images  # overwrite the tracked README picture

Needs chromium (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    raise SystemExit("chromium not found: apt-get install -y chromium")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "pictures",
                        help="folder for qa_report.png (default build/pictures; docs/images overwrites README's)")
    parser.add_argument("--cases", type=int, default=4, help="phantom cases in the cohort (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="batch workers (default 1)")
    args = parser.parse_args(argv)

    from HNTumorSegLib.phantoms import write_hntsmrg_cohort

    browser = chromium()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data, preds = Path(tmp) / "cohort", Path(tmp) / "preds"
        write_hntsmrg_cohort(data, args.cases, seed=args.seed)
        subprocess.run([sys.executable, "-m", "HNTumorSegLib", "batch", "--layout", "hntsmrg", "--data", str(data),
                        "--model", "demo-midrt", "--task", "midrt", "--out", str(preds), "--workers",
                        str(args.workers), "--device", "cpu"], check=True)
        page = preds / "report" / "index.html"
        shot = args.out / "qa_report.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={Path(tmp) / 'profile'}", f"--screenshot={shot}", "--window-size=1280,900",
                        page.as_uri()], capture_output=True, timeout=180, check=True)
        metrics = json.loads((preds / "metrics.json").read_text())
        batch = json.loads((preds / "batch.json").read_text())
    seconds = _case_seconds(batch)
    print(f"{shot}: DSCagg mean {metrics['aggregate'].get('DSCagg_mean')}, "
          f"seconds per case {min(seconds):.1f}-{max(seconds):.1f}" if seconds else f"{shot}")
    return 0


def _case_seconds(batch: dict) -> list[float]:
    """Seconds per case from batch.json (its ``cases`` entries carry ``seconds``)."""
    cases = batch.get("cases", batch)
    items = cases.values() if isinstance(cases, dict) else cases
    return [float(c["seconds"]) for c in items if isinstance(c, dict) and c.get("seconds") is not None]


if __name__ == "__main__":
    raise SystemExit(main())
