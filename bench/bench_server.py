"""Benchmark of the segmentation server's round trip over loopback (issue 29).

The question: what does sending a job to ``hntumorseg serve`` cost on top of running the same
request in a local warm session? Both sides run the same request with the same warm session code
(one thread each), so the difference is the round trip: upload (multipart), the server's queue,
the event stream, the download of the label map and its all-or-nothing publication here.

1. **demo mid-RT case** (``hntumorseg demo``'s phantom, bundled ``demo-midrt``, the prior as
   prompt, first fold): goal overhead <= 0.5 s.
2. **clinical-size mid-RT case**: a mid-RT phantom of 80 x 512 x 512 voxels at 0.5 x 0.5 x 2.0 mm
   (``make_midrt_case(seed=1)``, bit-reproducible), written as uncompressed ``.nii`` as Slicer's
   hand-off writes it (the most bytes on the wire), ``demo-midrt`` restricted to the prior's boxes
   (the compute is not the question here): goal overhead <= 2 s.

For each: one warm-up request on each side (model load), then ``--repeats`` timed requests; the
overhead is median(server round trip) - median(local session), and the client's upload and
download times are reported. The server is a real child process on 127.0.0.1
(``Testing/server_testlib.py``) started with ``--device cpu`` (``--device cuda`` with ``--gpu``).

Writes ``bench/results/server.json`` and ``server.md`` with the machine and ``/proc/loadavg``
before and after (the machine is shared: times under load are upper bounds).

Example:
    $ .venv/bin/python bench/bench_server.py --repeats 3
    $ .venv/bin/python bench/bench_server.py --only demo --name server_demo
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
sys.path.insert(0, str(ROOT / "Testing"))

from _machine import machine_info, machine_line  # noqa: E402
from server_testlib import THREADS, ServerProcess  # noqa: E402

from HNTumorSegLib.image import write_image  # noqa: E402
from HNTumorSegLib.pipeline.request import SegmentRequest  # noqa: E402
from HNTumorSegLib.protocol import ResultEvent  # noqa: E402
from HNTumorSegLib.session import SessionClient  # noqa: E402


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


def ok(final) -> ResultEvent:
    if not isinstance(final, ResultEvent):
        raise RuntimeError(f"run failed: {final}")
    return final


def demo_case(folder: Path) -> dict:
    from HNTumorSegLib.commands.demo import write_phantom

    inputs, prior, _truth = write_phantom("midrt", 0, folder)
    return {"model": "demo-midrt", "task": "midrt", "input_paths": {"T2": str(inputs["T2"])}, "prior_path": str(prior),
            "device": "cpu", "folds": "first"}


def clinical_case(folder: Path, shape: list[int], spacing: list[float]) -> dict:
    from HNTumorSegLib.phantoms import make_midrt_case

    case = make_midrt_case(seed=1, shape=tuple(shape), spacing=tuple(spacing), n_nodes=2)
    t2 = write_image(case["midRT_T2"], folder / "mid_T2.nii")
    prior = write_image(case["preRT_mask_registered"], folder / "prior.nii")
    return {"model": "demo-midrt", "task": "midrt", "input_paths": {"T2": str(t2)}, "prior_path": str(prior),
            "device": "cpu", "folds": "first", "restrict_to_boxes": True}


def part(name: str, fields: dict, server: ServerProcess, session: SessionClient, folder: Path, repeats: int) -> dict:
    def req(tag: str, i: int) -> SegmentRequest:
        return SegmentRequest.from_dict(dict(fields, output_path=str(folder / f"{tag}{i}.nii.gz")))

    sizes = {k: os.path.getsize(v) for k, v in fields["input_paths"].items()}
    sizes["prior"] = os.path.getsize(fields["prior_path"])
    out: dict = {"upload_bytes": sum(sizes.values()), "loadavg_before": loadavg()}
    with server.client() as client:
        ok(session.run(req("warm_local", 0)))
        ok(client.run(req("warm_remote", 0)))
        local, remote, upload, download, server_total = [], [], [], [], []
        for i in range(repeats):   # interleaved: a load change hits both sides alike
            t0 = time.perf_counter()
            ok(session.run(req("local", i)))
            local.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            final = ok(client.run(req("remote", i)))
            remote.append(time.perf_counter() - t0)
            upload.append(final.timings.get("remote_upload", float("nan")))
            download.append(final.timings.get("remote_download", float("nan")))
            server_total.append(final.timings.get("total", float("nan")))
    med = lambda xs: round(statistics.median(xs), 3)  # noqa: E731
    out.update(repeats=repeats, local_session_s=[round(x, 3) for x in local], server_round_trip_s=[round(x, 3) for x in remote],
               local_median_s=med(local), server_median_s=med(remote), overhead_median_s=round(med(remote) - med(local), 3),
               upload_median_s=med(upload), download_median_s=med(download), server_side_total_median_s=med(server_total),
               loadavg_after=loadavg())
    print(name, json.dumps({k: v for k, v in out.items() if not isinstance(v, list)}), flush=True)
    return out


def write_markdown(res: dict, path: Path) -> None:
    goals = {"demo": 0.5, "clinical": 2.0}
    lines = ["# Segmentation server: loopback overhead over a local warm session (issue 29)", "",
             f"Machine: {machine_line(res['machine'])}; server device {res['device']}. "
             f"`/proc/loadavg` at start: `{res['loadavg_start']}`, at end: `{res['loadavg_end']}`.", "",
             "Overhead = median(server round trip, upload to published label map) - median(the same request in a "
             "local warm session); both warm, one thread each, requests interleaved. Written by "
             "`bench/bench_server.py`.", "",
             "| case | inputs on the wire | local session (median) | via server (median) | overhead | goal | "
             "upload | download | server-side total |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["parts"].items():
        lines.append(f"| {r['what']} | {r['upload_bytes'] / 2**20:.1f} MiB | {r['local_median_s']:.2f} s | "
                     f"{r['server_median_s']:.2f} s | **{r['overhead_median_s']:.2f} s** | <= {goals[name]:g} s "
                     f"({'met' if r['overhead_median_s'] <= goals[name] else 'NOT met'}) | {r['upload_median_s']:.2f} s | "
                     f"{r['download_median_s']:.2f} s | {r['server_side_total_median_s']:.2f} s |")
    lines += ["", "Each run's times (s) are in server.json. The machine is shared with other jobs: with a "
              "1-minute load above the core count the times are upper bounds.", ""]
    path.write_text("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["demo", "clinical"], default=None)
    ap.add_argument("--shape", type=int, nargs=3, default=[80, 512, 512], help="clinical case z y x")
    ap.add_argument("--spacing", type=float, nargs=3, default=[0.5, 0.5, 2.0], help="x y z mm")
    ap.add_argument("--gpu", action="store_true", help="both sides on cuda")
    ap.add_argument("--name", default="server")
    args = ap.parse_args()
    device = "cuda" if args.gpu else "cpu"
    res: dict = {"machine": machine_info(), "device": device, "loadavg_start": loadavg(), "parts": {}}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp_name:
        tmp = Path(tmp_name)
        cases = {"demo": ("demo mid-RT phantom", lambda: demo_case(tmp / "demo")),
                 "clinical": (f"mid-RT {'x'.join(map(str, args.shape))} at {'x'.join(map(str, args.spacing))} mm, "
                              ".nii, restricted to the boxes", lambda: clinical_case(tmp / "clinical", args.shape,
                                                                                    args.spacing))}
        with ServerProcess(tmp / "server", device=device) as server, \
                SessionClient(device=device, env=THREADS, temp_parent=str(tmp)) as session:
            for name, (what, make) in cases.items():
                if args.only and name != args.only:
                    continue
                (tmp / name).mkdir()
                fields = dict(make(), device=device)
                res["parts"][name] = dict(what=what, **part(name, fields, server, session, tmp / name, args.repeats))
                save(res, args.name)   # after each part: a later part cut short keeps the earlier ones
    print((ROOT / "bench" / "results" / f"{args.name}.md").read_text())
    return 0


def save(res: dict, name: str) -> None:
    res["loadavg_end"] = loadavg()
    res["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    out = ROOT / "bench" / "results"
    (out / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(res, out / f"{name}.md")


if __name__ == "__main__":
    sys.exit(main())
