"""End-to-end benchmark at clinical sizes (issue 27 item 6): mid-RT 80 x 512 x 512 and PET/CT 300 x 512 x 512 + 200 x 200 x 300.

Real child processes, wall time from the client's send to the final event, as a user sees it:

1. **mid-RT** (``make_midrt_case``, 80 x 512 x 512 at 0.5 x 0.5 x 2 mm, the bundled
   ``demo-midrt``, prior-made boxes): a cold ``segment`` (a new worker process:
   :class:`HNTumorSegLib.runner.WorkerRun`, whole image), then one session
   (:class:`HNTumorSegLib.session.SessionClient`): first request, the same request again (warm),
   and one-lesion refinements (box ``GTVn-1`` moved by +-3 mm, refined from the first result).
2. **PET/CT** (``make_petct_case``: CT 300 x 512 x 512 at 0.98 x 0.98 x 1.6 mm, PET 200 x 200 x
   300 at 2.51 x 2.51 x 1.6 mm, ``demo-petct``): a cold ``segment`` restricted to the boxes.

Each with wall seconds, the child's CPU seconds (user + system: the machine is shared with
other engineers, so wall time is an upper bound and CPU time the steadier figure), its peak
resident memory (``VmHWM`` of the child, read until it ends) and the seconds in network forward
passes (``timings.forward``, from :func:`HNTumorSegLib.inference.tiled.forward_seconds`): the
overhead is the rest. The machine and ``/proc/loadavg`` before and after each part are noted.
Phantoms are bit-reproducible (fixed seeds); sizes are overridable, so
``Testing/test_bench_clinical_smoke.py`` runs the whole script on tiny cases.

Writes ``bench/results/clinical.json`` and ``clinical.md`` (``--out-dir``, ``--name``).

Example:
    $ OMP_NUM_THREADS=2 .venv/bin/python bench/bench_clinical.py             # full sizes (about 20 min here)
    $ .venv/bin/python bench/bench_clinical.py --midrt-shape 16 48 48 --ct-in-plane 48 --ct-spacing 4 4 8 \\
          --pet-spacing 8 8 8 --refines 1 --out-dir /tmp/smoke                # smoke test sizes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import machine_info, machine_line  # noqa: E402
from bench_session import moved, ok  # noqa: E402  (one definition of each, shared)

from HNTumorSegLib.image import read_image, write_image  # noqa: E402
from HNTumorSegLib.pipeline.request import SegmentRequest  # noqa: E402
from HNTumorSegLib.prompts.boxes import boxes_from_mask, write_boxes  # noqa: E402
from HNTumorSegLib.protocol import ResultEvent  # noqa: E402
from HNTumorSegLib.runner import WorkerRun  # noqa: E402
from HNTumorSegLib.session import SessionClient  # noqa: E402


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


class ChildWatch:
    """Peak RSS (VmHWM, MB) and CPU seconds of one process, read every 0.1 s until it ends or :meth:`stop`."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_mb, self.cpu_s = pid, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def read(self) -> bool:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
        tick = os.sysconf("SC_CLK_TCK")
        self.cpu_s = (int(stat[11]) + int(stat[12])) / tick   # utime + stime (fields 14, 15)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set() and self.read():
            self._stop.wait(0.1)

    def stop(self) -> "ChildWatch":
        self.read()
        self._stop.set()
        self._thread.join(timeout=2)
        return self


def figures(wall: float, cpu: float, peak: float, final: ResultEvent) -> dict:
    t = final.timings
    fwd = float(t.get("forward", 0.0))
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 2), "peak_rss_mb": round(peak, 1), "forward_s": fwd,
            "overhead_share": round(1 - fwd / wall, 3) if wall > 0 else None, "n_tiles": final.info.get("n_tiles"),
            "timings": t}


def cold(req: SegmentRequest, folder: Path, env: dict) -> dict:
    """A new worker process for one request (what ``hntumorseg segment`` starts)."""
    t0 = time.perf_counter()
    with WorkerRun(env=env, temp_parent=folder) as run:
        run.start(req)
        watch = ChildWatch(run.child.pid)
        final = run.wait()
        wall = time.perf_counter() - t0
        watch.stop()
    out = figures(wall, watch.cpu_s, watch.peak_mb, ok(final))
    print("cold", json.dumps({k: v for k, v in out.items() if k != "timings"}), flush=True)
    return out


def midrt_part(args, folder: Path, env: dict) -> dict:
    from HNTumorSegLib.phantoms import make_midrt_case

    t0 = time.perf_counter()
    case = make_midrt_case(seed=1, shape=tuple(args.midrt_shape), spacing=tuple(args.midrt_spacing), n_nodes=2)
    t2 = write_image(case["midRT_T2"], folder / "midRT_T2.nii.gz")
    prior = write_image(case["preRT_mask_registered"], folder / "prior.nii.gz")
    boxes = boxes_from_mask(case["preRT_mask_registered"], margin_vox=4)
    del case
    write_boxes(boxes, folder / "boxes.json")
    out: dict = {"shape_zyx": args.midrt_shape, "spacing_xyz": args.midrt_spacing, "phantom_s": round(time.perf_counter() - t0, 1),
                 "loadavg_before": loadavg()}

    def req(name: str, boxes_path: Path | None = None) -> SegmentRequest:
        return SegmentRequest(model="demo-midrt", task="midrt", device="cpu", folds="first", tta=False,
                              input_paths={"T2": str(t2)}, prior_path=None if boxes_path else str(prior),
                              boxes_path=str(boxes_path) if boxes_path else None, output_path=str(folder / name))

    if not args.refine_only:
        out["cold_segment"] = cold(req("cold.nii.gz"), folder, env)
    with SessionClient(env=env, temp_parent=str(folder)) as session:
        watch = ChildWatch(session.pid)

        def timed(r, refine=None) -> dict:
            c0, w0 = watch.cpu_s, time.perf_counter()
            final = ok(session.run(r, refine=refine))
            wall = time.perf_counter() - w0
            watch.read()
            res = figures(wall, watch.cpu_s - c0, watch.peak_mb, final)
            res["files"] = final.files
            res["cache"] = final.info.get("session", {}).get("cache")
            return res

        if args.refine_only:   # the refinement's base: one whole-image request given the boxes (restriction is its own choice)
            out["session_first"] = timed(req("first.nii.gz", folder / "boxes.json"))
        else:
            out["session_first"] = timed(req("first.nii.gz"))
            out["session_warm"] = timed(req("warm.nii.gz"))
        base = out["session_first"]["files"]["labels"]
        edited = next(b for b in boxes if b.label == 2)
        refs = []
        for i in range(args.refines):
            path = folder / f"boxes_{i}.json"
            write_boxes([moved(b, 3.0 if i % 2 == 0 else -3.0) if b is edited else b for b in boxes], path)
            r = timed(req(f"refined_{i}.nii.gz", path), refine={"base_labels_path": base, "boxes": [edited.name]})
            refs.append(r)
            print("refine", json.dumps({k: v for k, v in r.items() if k not in ("timings", "files")}), flush=True)
        crops = []   # what Slicer asks: no base handed over, only the box's crop back
        for i in range(args.refines):
            r = timed(req(f"crop_{i}.nii.gz", folder / f"boxes_{i}.json"), refine={"boxes": [edited.name], "box_only": True})
            crops.append(r)
            print("refine box-only", json.dumps({k: v for k, v in r.items() if k not in ("timings", "files")}), flush=True)
        watch.stop()
    out["refine"] = refs
    out["refine_box_only"] = crops
    out["refine_median_s"] = round(statistics.median(r["wall_s"] for r in refs), 3)
    out["refine_cpu_median_s"] = round(statistics.median(r["cpu_s"] for r in refs), 3)
    out["refine_box_only_median_s"] = round(statistics.median(r["wall_s"] for r in crops), 3)
    out["edited_box"] = edited.name
    out["session_peak_rss_mb"] = round(watch.peak_mb, 1)
    # nothing outside the edited box changed (the last refinement against its base)
    from HNTumorSegLib.prompts.boxes import box_to_index_slices, read_boxes

    last = read_image(refs[-1]["files"]["labels"], label=True).array
    base_arr = read_image(base, label=True)
    box = next(b for b in read_boxes(folder / f"boxes_{args.refines - 1}.json") if b.name == edited.name)
    inside = box_to_index_slices(box, base_arr)
    a, b = last.copy(), base_arr.array.copy()
    a[inside], b[inside] = 0, 0
    out["unchanged_outside_box"] = bool((a == b).all())
    crop = read_image(crops[-1]["files"]["labels"], label=True)    # the same boxes: the box of the whole map
    start = np.array([inside[2].start, inside[1].start, inside[0].start], float)
    out["box_only_equals_the_box"] = bool(crop.array.shape == last[inside].shape and np.array_equal(crop.array, last[inside])
                                          and np.allclose(crop.origin, base_arr.index_to_physical(start), atol=1e-4))
    out["loadavg_after"] = loadavg()
    return out


def petct_part(args, folder: Path, env: dict) -> dict:
    from HNTumorSegLib.phantoms import make_petct_case

    t0 = time.perf_counter()
    case = make_petct_case(seed=0, tall=True, in_plane=args.ct_in_plane, ct_spacing=tuple(args.ct_spacing),
                           pet_spacing=tuple(args.pet_spacing))
    ct = write_image(case["CT"], folder / "CT.nii.gz")
    pet = write_image(case["PET"], folder / "PET.nii.gz")
    shapes = {"ct_shape_zyx": list(case["CT"].array.shape), "pet_shape_zyx": list(case["PET"].array.shape)}
    boxes = boxes_from_mask(case["mask"], margin_vox=4)
    del case
    write_boxes(boxes, folder / "boxes.json")
    out: dict = dict(shapes, ct_spacing_xyz=args.ct_spacing, pet_spacing_xyz=args.pet_spacing,
                     phantom_s=round(time.perf_counter() - t0, 1), loadavg_before=loadavg())
    req = SegmentRequest(model="demo-petct", task="petct", device="cpu", folds="first", tta=False,
                         input_paths={"CT": str(ct), "PET": str(pet)}, boxes_path=str(folder / "boxes.json"),
                         restrict_to_boxes=True, output_path=str(folder / "petct.nii.gz"))
    out["cold_segment_restricted"] = cold(req, folder, env)
    out["loadavg_after"] = loadavg()
    return out


def write_md(res: dict, path: Path) -> None:
    lines = [f"# End-to-end at clinical sizes ({res['name']})", "",
             f"Machine: {machine_line(res['machine'])}. Date: {res['date']}. Device: cpu; torch threads per "
             f"process: {res['threads']}; folds: first, no TTA (the demo models' default).", "",
             "| case | run | wall | CPU (child) | forward passes | outside forward | peak RSS | tiles |",
             "|---|---|---|---|---|---|---|---|"]

    def row(case: str, run: str, r: dict) -> str:
        def num(key: str, fmt: str, unit: str) -> str:   # a figure rebuilt from a log has only some keys
            return format(r[key], fmt) + unit if r.get(key) is not None else "-"

        share = f"{100 * r['overhead_share']:.0f} %" if r.get("overhead_share") is not None else "-"
        wall = num("wall_s", ".2f", " s") if "wall_s" in r else "~" + num("wall_s_approx", ".0f", " s")
        return (f"| {case} | {run} | **{wall}** | {num('cpu_s', '.1f', ' s')} | {num('forward_s', '.2f', ' s')} | "
                f"{share} | {num('peak_rss_mb', '.0f', ' MB')} | {r.get('n_tiles', '-')} |")

    m = res.get("midrt")
    if m:
        name = "mid-RT " + "x".join(map(str, m["shape_zyx"]))
        for key, run in (("cold_segment", "cold `segment` (new worker)"), ("session_first", "session, first request"),
                         ("session_warm", "session, same request again")):
            if key in m:
                lines.append(row(name, run, m[key]))
        for i, r in enumerate(m["refine"]):
            lines.append(row(name, f"one-lesion refinement {i + 1} ({m['edited_box']} +-3 mm)", r))
        for i, r in enumerate(m.get("refine_box_only", [])):
            lines.append(row(name, f"box-only refinement {i + 1} (no base handed over, the crop back)", r))
    p = res.get("petct")
    if p:
        name = ("PET/CT CT " + "x".join(map(str, p["ct_shape_zyx"])) + " + PET " + "x".join(map(str, p["pet_shape_zyx"])))
        lines.append(row(name, "cold `segment` restricted to the boxes", p["cold_segment_restricted"]))
    lines.append("")
    if m:
        lines += [f"mid-RT: refinement median {m['refine_median_s']} s wall, {m['refine_cpu_median_s']} s CPU "
                  f"(box-only, as Slicer asks: {m.get('refine_box_only_median_s', '-')} s; its crop equals the whole "
                  f"map's box, placed by its origin: {m.get('box_only_equals_the_box', '-')}); nothing "
                  f"outside the edited box changed: {m['unchanged_outside_box']}; session peak RSS "
                  f"{m['session_peak_rss_mb']} MB; warm cache after the refinements: {m['refine'][-1].get('cache')}; "
                  f"load {m['loadavg_before']} -> {m['loadavg_after']}.",
                  *([f"Stages of the cold run (s): {m['cold_segment']['timings']}."] if "cold_segment" in m else []),
                  f"Stages of the last refinement (s): {m['refine'][-1]['timings']}.", ""]
    if p:
        lines += [f"PET/CT: stages (s): {p['cold_segment_restricted']['timings']}; load {p['loadavg_before']} -> "
                  f"{p['loadavg_after']}.", ""]
    lines += [res.get("note", ""), "",
              "Wall: the client's send to the final event (process start-up included for cold runs). CPU: the "
              "child's user + system seconds (a shared machine inflates wall time, less so CPU time). Peak RSS: "
              "the child's VmHWM. Forward passes: seconds inside the network's forward calls of our tiled "
              "predictor; 'outside forward' = 1 - forward / wall. Reproduce: "
              "`OMP_NUM_THREADS=2 .venv/bin/python bench/bench_clinical.py`."]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--midrt-shape", type=int, nargs=3, default=[80, 512, 512], help="z y x")
    ap.add_argument("--midrt-spacing", type=float, nargs=3, default=[0.5, 0.5, 2.0], help="x y z mm")
    ap.add_argument("--ct-in-plane", type=int, default=512, help="CT matrix (x and y); 480 mm tall")
    ap.add_argument("--ct-spacing", type=float, nargs=3, default=[0.98, 0.98, 1.6], help="x y z mm (1.6 mm: 300 slices)")
    ap.add_argument("--pet-spacing", type=float, nargs=3, default=[2.51, 2.51, 1.6], help="x y z mm (200 x 200 x 300)")
    ap.add_argument("--refines", type=int, default=3, help="one-lesion refinements (median)")
    ap.add_argument("--only", nargs="*", default=["midrt", "petct"])
    ap.add_argument("--threads", default=os.environ.get("OMP_NUM_THREADS", "2"), help="OMP_NUM_THREADS of the children")
    ap.add_argument("--name", default="clinical", help="result file stem")
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--note", default="")
    ap.add_argument("--merge", action="store_true", help="keep the parts of an existing result file not run now")
    ap.add_argument("--refine-only", action="store_true",
                    help="mid-RT: no cold run and no warm repeat; one session request with the boxes, then the refinements")
    args = ap.parse_args(argv)
    env = {"OMP_NUM_THREADS": str(args.threads)}
    res: dict = {"name": args.name, "machine": machine_info(), "threads": args.threads, "note": args.note,
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "args": vars(args)}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge and (out / f"{args.name}.json").exists():   # parts run separately, one result file
        kept = json.loads((out / f"{args.name}.json").read_text())
        res.update({k: v for k, v in kept.items() if k in ("midrt", "petct") and k not in args.only})
    with tempfile.TemporaryDirectory(prefix="bench-clinical-") as tmp:
        for part, fn in (("midrt", midrt_part), ("petct", petct_part)):
            if part in args.only:
                (Path(tmp) / part).mkdir()
                res[part] = fn(args, Path(tmp) / part, env)
                save(res, out, args.name)   # after each part: a long run keeps what it measured
    print((out / f"{args.name}.md").read_text())
    return res


def save(res: dict, out: Path, name: str) -> None:
    for r in res.get("midrt", {}).get("refine", []) + [res.get("midrt", {}).get(k, {}) for k in ("session_first", "session_warm")]:
        r.pop("files", None)
    (out / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    write_md(res, out / f"{name}.md")


if __name__ == "__main__":
    main()
