"""Benchmark of the background worker and of `hntumorseg batch`.

Measures, with real worker processes and the bundled demo model:

1. the worker's **fixed cost per case**: process start-up to the first event (Python, imports),
   and model load (the ``load`` stage), on a tiny case, median of ``--repeats`` runs;
2. **batch throughput** with 1 and 2 local workers on a synthetic HNTS-MRG cohort of
   ``--cases`` mid-RT cases, and the scaling efficiency ``T1 / (2 * T2)``.

Writes ``bench/results/worker.json`` and ``bench/results/worker.md`` (machine noted).

Example:
    $ .venv/bin/python bench/bench_worker.py --cases 4 --repeats 3 --note "shared with other work"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from HNTumorSegLib.image import write_image  # noqa: E402
from HNTumorSegLib.phantoms import make_midrt_case, write_hntsmrg_cohort  # noqa: E402
from HNTumorSegLib.pipeline.request import SegmentRequest  # noqa: E402
from HNTumorSegLib.protocol import ResultEvent  # noqa: E402
from HNTumorSegLib.runner import WorkerRun  # noqa: E402

DEMO_MODEL = "demo-midrt"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {"cpu": cpu, "usable_cores": cores, "python": platform.python_version(), "platform": platform.platform()}


def fixed_cost(tmp: Path, repeats: int, device: str) -> dict:
    case = make_midrt_case(seed=5, shape=(12, 48, 48))
    t2, prior = tmp / "t2.nii.gz", tmp / "prior.nii.gz"
    write_image(case["midRT_T2"], t2)
    write_image(case["preRT_mask_registered"], prior)
    rows = []
    for i in range(repeats):
        req = SegmentRequest(task="midrt", model=DEMO_MODEL, input_paths={"T2": str(t2)}, prior_path=str(prior),
                             output_path=str(tmp / f"pred{i}.nii.gz"), device=device)
        run = WorkerRun()
        t0 = time.monotonic()
        run.start(req)
        first = None
        while not run.done:
            for ev in run.poll():
                if first is None:
                    first = time.monotonic() - t0
            time.sleep(0.005)
        total = time.monotonic() - t0
        if not isinstance(run.final, ResultEvent):
            raise SystemExit(f"worker failed: {run.final}")
        tm = run.final.timings
        rows.append({"startup_to_first_event_s": first, "load_s": tm.get("load"), "worker_total_s": total,
                     "timings": tm})
    med = {k: statistics.median(r[k] for r in rows if r[k] is not None)
           for k in ("startup_to_first_event_s", "load_s", "worker_total_s")}
    med["fixed_cost_s"] = med["startup_to_first_event_s"] + med["load_s"]
    return {"median": med, "runs": rows}


def batch_wall(data: Path, out: Path, workers: int, device: str, threads: int | None = None) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "HNTumorSegLib", "batch", "--layout", "hntsmrg", "--data",
                           str(data), "--model", DEMO_MODEL, "--task", "midrt", "--out", str(out), "--workers",
                           str(workers), "--device", device, "--no-report"], cwd=ROOT, capture_output=True, text=True,
                          env=env)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"batch failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-repeats", type=int, default=2, help="batch runs per worker count (interleaved)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--note", default="", help="e.g. 'machine shared with other work'")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--name", default="worker", help="result file stem (worker -> worker.json, worker.md)")
    args = ap.parse_args()
    res_dir = Path(args.out)
    res_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmpname:
        tmp = Path(tmpname)
        fc = fixed_cost(tmp, args.repeats, args.device)
        data = tmp / "cohort"
        write_hntsmrg_cohort(data, n=args.cases, seed=11)
        # Interleaved 1, 2, 2, 1, ... so a change in the machine's load hits both settings alike;
        # the median of each is reported.
        # Settings: (workers, threads per worker); None = the default, cores // workers.
        settings = {"1": (1, None), "2": (2, None), "1x1thread": (1, 1)}
        runs: dict[str, list[float]] = {k: [] for k in settings}
        keys = list(settings)
        order = [k for r in range(args.batch_repeats) for k in (keys if r % 2 == 0 else keys[::-1])]
        for i, k in enumerate(order):
            runs[k].append(batch_wall(data, tmp / f"out{i}", settings[k][0], args.device, settings[k][1]))
        walls = {k: statistics.median(v) for k, v in runs.items()}
    eff = walls["1"] / (2 * walls["2"])
    eff_1t = walls["1x1thread"] / (2 * walls["2"])
    result = {
        "machine": machine(), "note": args.note, "device": args.device, "model": DEMO_MODEL,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "fixed_cost": fc,
        "batch": {"cases": args.cases, "case_shape_zyx": [32, 96, 96],
                  "wall_s": {str(k): round(v, 2) for k, v in walls.items()},
                  "wall_s_runs": {str(k): [round(x, 2) for x in v] for k, v in runs.items()},
                  "cases_per_min": {str(k): round(60 * args.cases / v, 2) for k, v in walls.items()},
                  "scaling_efficiency_2_workers": round(eff, 3),
                  "scaling_efficiency_vs_1_worker_1_thread": round(eff_1t, 3)},
    }
    (res_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    m = fc["median"]
    cores = result["machine"]["usable_cores"]
    md = [f"# Worker benchmark ({args.name})", "",
          f"Machine: {result['machine']['cpu']}, {result['machine']['usable_cores']} usable cores, "
          f"device {args.device}. {args.note}".strip(), f"Date: {result['date']}. Model: bundled `{DEMO_MODEL}`.", "",
          "| measure | value |", "|---|---|",
          f"| start-up to first event (Python + imports) | {m['startup_to_first_event_s']:.2f} s |",
          f"| model load (`load` stage) | {m['load_s']:.2f} s |",
          f"| **fixed cost per case** (start-up + load) | **{m['fixed_cost_s']:.2f} s** |",
          f"| whole tiny case in a worker | {m['worker_total_s']:.2f} s |",
          f"| batch, {args.cases} cases, 1 worker ({cores} threads) | {walls['1']:.1f} s "
          f"({60 * args.cases / walls['1']:.2f} cases/min) |",
          f"| batch, {args.cases} cases, 1 worker (1 thread) | {walls['1x1thread']:.1f} s "
          f"({60 * args.cases / walls['1x1thread']:.2f} cases/min) |",
          f"| batch, {args.cases} cases, 2 workers (1 thread each) | {walls['2']:.1f} s "
          f"({60 * args.cases / walls['2']:.2f} cases/min) |",
          f"| scaling efficiency, 2 workers (T1 / 2 T2) | {eff:.2f} |",
          f"| scaling efficiency against 1 worker with 1 thread | {eff_1t:.2f} |", "",
          f"Median of {args.repeats} runs for the fixed cost; batch: median of {args.batch_repeats} interleaved runs "
          f"per setting (all runs: {result['batch']['wall_s_runs']}). Load average (1 min) before / after: "
          f"{result['load_average_before_after']}. Batch wall times include the command's own start-up, "
          "evaluation and resume bookkeeping. Fixed cost = start-up (Python, HNTumorSegLib) + the `load` stage "
          "(torch import, request checks, reading the inputs, building the network and loading its weights)."]
    (res_dir / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
