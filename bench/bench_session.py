"""Benchmark of the warm session (issue 17): cold Apply, warm Apply, one-lesion refinement, batch, memory.

With real child processes (:class:`HNTumorSegLib.runner.WorkerRun` for a cold Apply, one
:class:`HNTumorSegLib.session.SessionClient` for the warm ones), wall time measured by the
client from sending the request to its final event:

1. **demo mid-RT case** (``hntumorseg demo``'s phantom, bundled ``demo-midrt``, boxes from the
   prior): cold Apply (a new worker: Python, torch, model, whole case), warm Apply (the same
   request in a session that already served one), one-lesion refinement (box ``GTVn-1`` moved
   by a few mm, refined from the previous result). Goal on the 2-core machine: refinement
   <= 1 s and <= 25 % of a cold Apply.
2. **STU-Net-S-sized model** (``networks/stunet.py`` ``STUNET_CONFIGS["small"]``, 14.5 M
   parameters, **random weights**: timing only, its contours mean nothing) on a HNTS-MRG-sized
   volume (``--big-shape``, default 80 x 512 x 512 at 0.5 x 0.5 x 2.0 mm), patch ``--big-patch``;
   its Applies are restricted to the boxes (a whole-volume Apply is ~200 tiles of ~8 s on the CPU).
3. **batch throughput** of ``--cases`` small cases, 1 worker, with and without sessions.
4. **memory**: the session's resident memory (psutil RSS) over 50 requests on a small phantom:
   peak, level after request 5, growth.

Writes ``bench/results/session.json`` and ``session.md`` with the machine and the load average
before and after each part (the machine is shared: times under load are upper bounds).

Example:
    $ OMP_NUM_THREADS=1 .venv/bin/python bench/bench_session.py --repeats 3
    $ .venv/bin/python bench/bench_session.py --only demo --name session_rerun   # timing part again
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import machine_info, machine_line  # noqa: E402

from HNTumorSegLib.image import read_image, write_image  # noqa: E402
from HNTumorSegLib.pipeline.request import SegmentRequest  # noqa: E402
from HNTumorSegLib.prompts.boxes import LesionBox, boxes_from_mask, write_boxes  # noqa: E402
from HNTumorSegLib.protocol import ResultEvent  # noqa: E402
from HNTumorSegLib.runner import WorkerRun  # noqa: E402
from HNTumorSegLib.session import SessionClient  # noqa: E402

ENV = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def moved(box: LesionBox, dx: float) -> LesionBox:
    return LesionBox(box.label, box.name, (box.min_ras[0] + dx, *box.min_ras[1:]), (box.max_ras[0] + dx, *box.max_ras[1:]))


def ok(final) -> ResultEvent:
    if not isinstance(final, ResultEvent):
        raise RuntimeError(f"run failed: {final}")
    return final


def cold_apply(req: SegmentRequest, temp: Path) -> tuple[float, ResultEvent]:
    t0 = time.perf_counter()
    with WorkerRun(env=ENV, temp_parent=temp) as run:
        run.start(req)
        final = run.wait()
    return time.perf_counter() - t0, ok(final)


def timed(session: SessionClient, req: SegmentRequest, refine=None) -> tuple[float, ResultEvent]:
    t0 = time.perf_counter()
    final = session.run(req, refine=refine)
    return time.perf_counter() - t0, ok(final)


def case_part(name: str, fields: dict, boxes: list[LesionBox], folder: Path, repeats: int, refines: int,
              restrict: bool = False) -> dict:
    """Cold Apply, warm Apply and one-lesion refinement on one case (module docstring);
    ``restrict``: the Applies are restricted to the boxes (Slicer's "Restrict to boxes")."""
    edited = next(b for b in boxes if b.label == 2)
    write_boxes(boxes, folder / "boxes.json")
    req = lambda out, boxes_path=folder / "boxes.json": SegmentRequest(  # noqa: E731
        **fields, boxes_path=str(boxes_path), output_path=str(folder / out), restrict_to_boxes=restrict)
    out = {"load_before": load(), "apply_restricted_to_boxes": restrict}
    cold = [cold_apply(req(f"cold_{i}.nii.gz"), folder) for i in range(repeats)]
    out["cold_apply_s"] = [round(t, 3) for t, _ in cold]
    out["n_tiles_full"] = cold[0][1].info.get("n_tiles")
    with SessionClient(env=ENV, temp_parent=str(folder)) as session:
        t_first, first = timed(session, req("warm_0.nii.gz"))
        out["first_session_apply_s"] = round(t_first, 3)
        warm = [timed(session, req(f"warm_{i + 1}.nii.gz")) for i in range(repeats)]
        out["warm_apply_s"] = [round(t, 3) for t, _ in warm]
        base = first.files["labels"]
        ref_t, ref_inf, tiles = [], [], []
        for i in range(refines):
            boxes_i = [moved(b, 3.0 if i % 2 == 0 else -3.0) if b is edited else b for b in boxes]
            write_boxes(boxes_i, folder / f"boxes_{i}.json")
            t, final = timed(session, req(f"refined_{i}.nii.gz", folder / f"boxes_{i}.json"),
                             refine={"base_labels": base, "boxes": [edited.name]})
            ref_t.append(round(t, 3))
            ref_inf.append(final.timings.get("inference"))
            tiles.append(final.info.get("n_tiles"))
            out.setdefault("refine_timings_first", final.timings)
        out["refine_s"] = ref_t
        out["refine_inference_s"] = ref_inf
        out["n_tiles_refine"] = tiles[0] if tiles else None
        out["model_loads"] = session.status()["model_loads"]
    med = statistics.median
    out.update(cold_median_s=round(med(out["cold_apply_s"]), 3), warm_median_s=round(med(out["warm_apply_s"]), 3),
               refine_median_s=round(med(out["refine_s"]), 3), load_after=load(), edited_box=edited.name)
    out["refine_share_of_cold"] = round(out["refine_median_s"] / out["cold_median_s"], 3)
    print(name, json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}), flush=True)
    return out


def demo_case(folder: Path) -> tuple[dict, list[LesionBox]]:
    from HNTumorSegLib.commands.demo import write_phantom

    inputs, prior, _truth = write_phantom("midrt", 0, folder)
    boxes = boxes_from_mask(read_image(prior, label=True), margin_vox=4)
    return {"model": "demo-midrt", "task": "midrt", "input_paths": {"T2": str(inputs["T2"])}, "device": "cpu",
            "folds": "first"}, boxes


def stunet_s_model(folder: Path, patch: list[int], spacing: list[float]) -> Path:
    """A model folder: the demo-midrt card with an STU-Net-S (random weights, timing only)."""
    import hashlib

    import torch

    from HNTumorSegLib.models.card import ModelCard, write_card
    from HNTumorSegLib.networks import build_network

    card = json.loads((ROOT / "HNTumorSegLib/resources/models/demo-midrt/model.json").read_text())
    card.update(id="bench-stunet-s-random", title="STU-Net-S, random weights (timing only)", patch_size=patch,
                spacing=spacing, architecture={"name": "STUNet", "kwargs": {
                    "size": "small", "pool_op_kernel_sizes": [[1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]}})
    for key in ("training", "sha256", "metrics"):
        card.pop(key, None)
    parsed = ModelCard.from_dict(card)
    torch.manual_seed(0)
    net = build_network(parsed.architecture, parsed.num_input_channels, parsed.num_output_channels)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "fold_0.pt")
    card["weights"] = {"0": "fold_0.pt"}
    card["folds"] = [0]
    card["sha256"] = {"fold_0.pt": hashlib.sha256((folder / "fold_0.pt").read_bytes()).hexdigest()}
    write_card(card, folder)
    return folder


def big_case(folder: Path, shape: list[int], spacing: list[float], patch: list[int]) -> tuple[dict, list[LesionBox]]:
    from HNTumorSegLib.phantoms import make_midrt_case

    case = make_midrt_case(seed=1, shape=tuple(shape), spacing=tuple(spacing), n_nodes=2)
    t2 = write_image(case["midRT_T2"], folder / "big_T2.nii.gz")
    boxes = boxes_from_mask(case["preRT_mask_registered"], margin_vox=4)
    model = stunet_s_model(folder / "stunet_s", patch, spacing)
    return {"model": str(model), "task": "midrt", "input_paths": {"T2": str(t2)}, "device": "cpu",
            "folds": "first"}, boxes


def batch_part(folder: Path, n: int) -> dict:
    from HNTumorSegLib.batch.local import Job, run_local
    from HNTumorSegLib.phantoms import write_hntsmrg_cohort

    ids = write_hntsmrg_cohort(folder / "cohort", n=n, seed=3, shape=(24, 64, 64))
    out = {"cases": n, "load_before": load()}
    for use in (False, True, False, True):
        jobs = []
        for cid in ids:
            case = folder / "cohort" / cid / "midRT"
            pred = folder / f"pred_{use}" / f"{cid}.nii.gz"
            req = SegmentRequest(model="demo-midrt", task="midrt", device="cpu", folds="first",
                                 input_paths={"T2": str(case / f"{cid}_midRT_T2.nii.gz")},
                                 prior_path=str(case / f"{cid}_preRT_mask_registered.nii.gz"),
                                 output_path=str(pred))
            jobs.append(Job(cid, req, str(pred), f"bench-{use}"))
        t0 = time.perf_counter()
        res = run_local(jobs, folder / f"pred_{use}", workers=1, on_event=lambda *a: None, use_sessions=use)
        wall = time.perf_counter() - t0
        if not all(o.ok for o in res.values()):
            raise RuntimeError({k: o.final for k, o in res.items() if not o.ok})
        out.setdefault("sessions" if use else "workers", []).append(round(wall, 2))
    for key in ("sessions", "workers"):
        out[f"{key}_cases_per_min"] = round(60 * n / statistics.median(out[key]), 2)
    out["load_after"] = load()
    print("batch", json.dumps(out), flush=True)
    return out


def memory_part(folder: Path, n: int = 50) -> dict:
    """RSS of one session over ``n`` requests on a small mid-RT phantom (16 x 48 x 48)."""
    import psutil

    from HNTumorSegLib.phantoms import make_midrt_case

    folder.mkdir(parents=True, exist_ok=True)
    case = make_midrt_case(seed=2, shape=(16, 48, 48), n_nodes=2)
    fields = {"model": "demo-midrt", "task": "midrt", "device": "cpu", "folds": "first",
              "input_paths": {"T2": str(write_image(case["midRT_T2"], folder / "t2.nii.gz"))}}
    write_boxes(boxes_from_mask(case["preRT_mask_registered"], margin_vox=4), folder / "mem_boxes.json")
    rss = []
    with SessionClient(env=ENV, temp_parent=str(folder)) as session:
        proc = psutil.Process(session.pid)
        for i in range(n):
            ok(session.run(SegmentRequest(**fields, boxes_path=str(folder / "mem_boxes.json"),
                                          output_path=str(folder / f"mem_{i % 2}.nii.gz"))))
            rss.append(round(proc.memory_info().rss / 2**20, 1))
    out = {"requests": n, "rss_mb": rss, "peak_mb": max(rss), "after_5_mb": rss[4], "last_mb": rss[-1],
           "growth_after_5_pct": round(100 * (max(rss[5:]) - rss[4]) / rss[4], 2)}
    print("memory", json.dumps({k: v for k, v in out.items() if k != "rss_mb"}), flush=True)
    return out


def write_md(res: dict, path: Path) -> None:
    m = res["machine"]
    rows = ["| case | cold Apply | warm Apply | one-lesion refinement | refinement / cold | tiles full -> refine |",
            "|---|---|---|---|---|---|"]
    for key, title in (("demo", "demo mid-RT (demo-midrt)"), ("stunet_s", "STU-Net-S (random weights), HNTS-MRG size")):
        r = res.get(key)
        if not r:
            continue
        if r.get("apply_restricted_to_boxes"):
            title += " (Apply restricted to the boxes)"
        rows.append(f"| {title} | {r['cold_median_s']:.2f} s | {r['warm_median_s']:.2f} s | "
                    f"**{r['refine_median_s']:.2f} s** | {100 * r['refine_share_of_cold']:.0f} % | "
                    f"{r['n_tiles_full']} -> {r['n_tiles_refine']} |")
    lines = [f"# Warm session benchmark ({res['name']})", "",
             f"Machine: {machine_line(m)}; load average (1 min) at end {res['load_end']}.",
             f"Date: {res['date']}. Device: cpu, torch threads per process: {ENV['OMP_NUM_THREADS']}.", ""] + rows
    b = res.get("batch")
    if b:
        lines += ["", f"Batch, {b['cases']} small mid-RT cases, 1 worker: one worker process per case "
                      f"{b['workers_cases_per_min']} cases/min (runs {b['workers']} s), one session for all "
                      f"{b['sessions_cases_per_min']} cases/min (runs {b['sessions']} s); load {b['load_before']} -> "
                      f"{b['load_after']}."]
    mem = res.get("memory")
    if mem:
        lines += ["", f"Memory, {mem['requests']} requests in one session: RSS after request 5 {mem['after_5_mb']} MB, "
                      f"peak {mem['peak_mb']} MB, last {mem['last_mb']} MB (growth after request 5: "
                      f"{mem['growth_after_5_pct']} %)."]
    for key in ("demo", "stunet_s"):
        r = res.get(key)
        if r:
            lines += ["", f"{key}: cold {r['cold_apply_s']} s, first session Apply {r['first_session_apply_s']} s, "
                          f"warm {r['warm_apply_s']} s, refinements {r['refine_s']} s (inference "
                          f"{r['refine_inference_s']} s), model loads in the session {r['model_loads']}, load "
                          f"{r['load_before']} -> {r['load_after']}. Stages of the first refinement (s): "
                          f"{r.get('refine_timings_first')}."]
    lines += ["", res.get("note", ""), "",
              "Wall times are measured by the client from sending the request to its final event (process "
              "start-up included for the cold Apply). The STU-Net-S model has random weights: its timing is "
              "real, its contours are not. Reproduce: `OMP_NUM_THREADS=1 .venv/bin/python bench/bench_session.py`."]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="cold and warm Apply runs per case (median)")
    ap.add_argument("--refines", type=int, default=5, help="refinements per case (median)")
    ap.add_argument("--big-shape", type=int, nargs=3, default=[80, 512, 512], help="z y x of the HNTS-MRG-sized volume")
    ap.add_argument("--big-spacing", type=float, nargs=3, default=[0.5, 0.5, 2.0], help="x y z mm")
    ap.add_argument("--big-patch", type=int, nargs=3, default=[32, 128, 128], help="z y x patch of the STU-Net-S")
    ap.add_argument("--cases", type=int, default=4, help="batch cases")
    ap.add_argument("--only", nargs="*", default=["demo", "stunet_s", "batch", "memory"])
    ap.add_argument("--name", default="session", help="result file stem")
    ap.add_argument("--note", default="")
    ap.add_argument("--merge", action="store_true", help="keep the other parts of an existing result file")
    args = ap.parse_args()
    res: dict = {"name": args.name, "machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "note": args.note, "args": vars(args)}
    out = ROOT / "bench" / "results"
    if args.merge and (out / f"{args.name}.json").exists():   # parts run separately, one result file
        kept = json.loads((out / f"{args.name}.json").read_text())
        res.update({k: v for k, v in kept.items() if k in ("demo", "stunet_s", "batch", "memory")})
    with tempfile.TemporaryDirectory(prefix="bench-session-") as tmp:
        tmp = Path(tmp)
        demo_fields, demo_boxes = demo_case(tmp / "demo")
        if "demo" in args.only:
            res["demo"] = case_part("demo", demo_fields, demo_boxes, tmp / "demo", args.repeats, args.refines)
        if "stunet_s" in args.only:
            (tmp / "big").mkdir()
            fields, boxes = big_case(tmp / "big", args.big_shape, args.big_spacing, args.big_patch)
            res["stunet_s"] = case_part("stunet_s", fields, boxes, tmp / "big", max(1, args.repeats - 2),
                                        max(2, args.refines - 3), restrict=True)
            res["stunet_s"].update(shape_zyx=args.big_shape, spacing_xyz=args.big_spacing, patch_zyx=args.big_patch)
        if "batch" in args.only:
            (tmp / "batch").mkdir()
            res["batch"] = batch_part(tmp / "batch", args.cases)
        if "memory" in args.only:
            res["memory"] = memory_part(tmp / "memory")
    res["load_end"] = load()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(res, indent=1) + "\n")
    write_md(res, out / f"{args.name}.md")
    print((out / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
