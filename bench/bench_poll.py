"""How long the Slicer module's poll of a running worker takes (the GUI thread's cost per QTimer tick).

Loads a phantom mid-RT case into a real MRML scene (slicer-core), makes boxes from the prior,
starts the real worker with the bundled demo model through ``SegmentationSceneLogic.start`` and calls
``SegmentationSceneLogic.poll()`` every 50 ms (the GUI uses 200 ms) until the run ends, timing each call.
Writes ``bench/results/poll.json`` and ``poll.md``.

Run: ``.venv/bin/python bench/bench_poll.py [--model demo-midrt] [--device cpu]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo-midrt")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()

    from HNTumorSegLib.phantoms import write_hntsmrg_cohort
    from HNTumorSegLib.scene.inputs import load_case_folder
    from HNTumorSegLib.scene.logic import SegmentationSceneLogic, Parameters
    from HNTumorSegLib.scene.mrml import make_scene

    with tempfile.TemporaryDirectory() as tmp:
        case = Path(tmp) / write_hntsmrg_cohort(tmp, n=1, seed=5, shape=(16, 48, 48), spacing=(1.8, 1.8, 3.0))[0]
        app = make_scene()
        nodes = load_case_folder(app.scene, case)
        logic = SegmentationSceneLogic(app.scene, timeout_s=900)
        logic.boxes_from_prior(nodes["preRT_mask_registered"], nodes["midRT_T2"])
        params = Parameters(task="midrt", inputs={"T2": nodes["midRT_T2"].GetID()},
                            prior=nodes["preRT_mask_registered"].GetID(), model=args.model, device=args.device)
        t0 = time.perf_counter()
        logic.start(params)
        t_start = time.perf_counter() - t0
        times_ms, n_events = [], 0
        while logic.running:
            t = time.perf_counter()
            state = logic.poll()
            times_ms.append((time.perf_counter() - t) * 1000)
            n_events += len(state.log)
            time.sleep(args.interval)
        wall = time.perf_counter() - t0
        final = logic.run.state
        error = logic.run.final.message if final != "succeeded" and logic.run.final else ""
        if final == "succeeded":
            logic.import_result()
    times_ms.sort()
    result = {
        "what": "SegmentationSceneLogic.poll() of a running worker (real worker, demo model, phantom mid-RT case 16x48x48)",
        "model": args.model, "device": args.device, "run_state": final, "error": error,
        "polls": len(times_ms), "events": n_events, "run_wall_s": round(wall, 2), "start_call_s": round(t_start, 3),
        "poll_ms": {"median": round(statistics.median(times_ms), 3),
                    "p95": round(times_ms[int(0.95 * (len(times_ms) - 1))], 3),
                    "max": round(times_ms[-1], 3), "mean": round(statistics.fmean(times_ms), 3)},
        "machine": machine(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "poll.json").write_text(json.dumps(result, indent=2) + "\n")
    p = result["poll_ms"]
    (out / "poll.md").write_text(
        "# Poll of a running worker (GUI thread cost per timer tick)\n\n"
        f"{result['what']}; {result['polls']} polls every {args.interval * 1000:.0f} ms, {result['events']} events, "
        f"run {result['run_state']} in {result['run_wall_s']} s.\n\n"
        "| median | p95 | max | mean |\n|---|---|---|---|\n"
        f"| {p['median']} ms | {p['p95']} ms | {p['max']} ms | {p['mean']} ms |\n\n"
        f"`start()` (writing the inputs and spawning the worker) took {result['start_call_s']} s.\n\n"
        f"Machine: {result['machine']['cpu']}, {result['machine']['cpu_count']} CPUs, "
        f"{result['machine']['platform']}, Python {result['machine']['python']}; {result['date_utc']}.\n"
        "The machine was shared with other jobs while this ran, so the maxima are pessimistic.\n")
    print(json.dumps(result, indent=2))
    return 0 if final == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
