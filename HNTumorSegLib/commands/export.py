"""`hntumorseg export`: a label map as DICOM RTSTRUCT and/or SEG on its source series, optionally sent to a node.

The headless DICOM-out step of a clinic's automatic contouring (README "DICOM in, DICOM out"):
``--labels`` is the label map (0, 1 GTVp, 2 GTVn) on the grid of the source series, as
``segment`` writes it for a DICOM input; ``--source`` the study folder (other series, README
files, old RTSTRUCTs and a DICOMDIR may lie there too). The series is ``--series UID``, else
the one whose grid the label map lies on (:func:`HNTumorSegLib.dicom.select.select_series`).
Everything is checked before anything is written: a wrong ``--series``, a label map on no
series' grid, a tilted or unevenly spaced series -> one line, exit 2, no file written.
``--send AET@HOST:PORT`` then C-STOREs the written objects (pynetdicom).

Example:
    $ hntumorseg export --labels out/case1.nii.gz --source study/ --rtstruct out/rtstruct.dcm \\
          --seg out/seg.dcm --holes keyhole --send PACS@10.0.0.5:104
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..dicom.contours_in import ContourOptions, add_contour_arguments
from ..errors import HNTumorSegError, InputError, WorkerFailed
from ..export._dicom_source import check_source_identity
from ..protect import check_outputs
from ..vocab import HoleStyle


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", required=True, metavar="LABELS",
                        help="label map (0 background, 1 GTVp, 2 GTVn) on the source series' grid, or an RTSTRUCT "
                             "or SEG file (read onto the source series; --structures)")
    parser.add_argument("--source", required=True, metavar="DICOM_FOLDER",
                        help="folder holding the source DICOM series (other series and files may be there)")
    parser.add_argument("--series", default=None, metavar="UID",
                        help="SeriesInstanceUID of the source series (default: the one the label map lies on)")
    parser.add_argument("--rtstruct", default=None, metavar="OUT.dcm", help="write a DICOM RT Structure Set here")
    parser.add_argument("--seg", default=None, metavar="OUT.dcm", help="write a DICOM Segmentation here")
    parser.add_argument("--holes", default=HoleStyle.NESTED.value, metavar="|".join(HoleStyle.values()),
                        help="RTSTRUCT holes: nested contours (even-odd, default) or keyhole (one contour per island)")
    parser.add_argument("--operator", default="", metavar="NAME",
                        help="OperatorsName written into the RTSTRUCT (e.g. Doe^Jane; default empty)")
    parser.add_argument("--send", default=None, metavar="AET@HOST:PORT",
                        help="C-STORE the written objects to this DICOM node")
    parser.add_argument("--calling-aet", default="HNTUMORSEG", metavar="AET", help="our AE title for --send")
    add_contour_arguments(parser)


def _check_outputs(args, inputs: list[Path]) -> list[Path]:
    outs = [Path(p) for p in (args.rtstruct, args.seg) if p]
    if not outs:
        raise InputError("nothing to write", None, "give --rtstruct OUT.dcm and/or --seg OUT.dcm")
    if len(outs) == 2 and outs[0].resolve() == outs[1].resolve():
        raise InputError("--rtstruct and --seg name the same file", outs[0], "give two file names")
    labels_path, source = (p.resolve() for p in inputs)
    for out in outs:
        if out.is_dir():
            raise InputError("output is a folder", out, "give a file name such as rtstruct.dcm")
        r = out.resolve()
        if r == labels_path or (r.exists() and (r == source or source in r.parents)):
            raise InputError("output would overwrite one of the inputs", out,
                             "write the DICOM objects to a new file outside the source folder")
    # hard links and symlinks to the label map, FIFO inputs, names over 255 bytes (issue 11, protect.py)
    check_outputs({f"output {o.name}": o for o in outs}, {"the label map (--labels)": inputs[0]})
    return outs


def export_dicom(labels_path, source, series=None, rtstruct=None, seg=None, holes="nested", operator="",
                 contours: ContourOptions | None = None) -> dict:
    """Check everything, then write the requested objects; returns ``{"rtstruct": path, "seg": path}``.

    The library form of the command (``segment --rtstruct/--seg`` and batch call it). ``labels_path``
    may be an RTSTRUCT or SEG (``contours``: ``--structures``; its series is looked for in ``source``
    unless ``--reference`` names another folder).
    """
    from ..dicom.select import select_series
    from ..dicom.contours_in import read_labels

    style = HoleStyle.parse(holes, "--holes")
    contours = contours or ContourOptions()
    options = ContourOptions(contours.structures, contours.reference or str(source))
    labels = read_labels(labels_path, "label map", options)   # a label map (checked {0,1,2}), an RTSTRUCT or a SEG
    geometry = select_series(source, series_uid=series, labels=labels)
    check_source_identity(geometry)   # its character set, before anything is written (issue 25)
    return write_dicom_objects(labels, geometry, {"rtstruct": rtstruct, "seg": seg}, style.value, operator)


class ExportIncomplete(WorkerFailed):
    """A DICOM format that failed on this source (a library's error, not the user's input) while
    the others were written: one line naming both, exit code 1 (issue 25). ``files``: what was written."""

    def __init__(self, message: str, files: dict[str, Path]) -> None:
        super().__init__(message)
        self.files = files


def write_dicom_objects(labels, geometry, outputs: dict, holes: str = "nested", operator: str = "") -> dict:
    """Write ``outputs`` (``{"rtstruct": path or None, "seg": path or None}``) of ``labels`` on ``geometry``.

    All or nothing against the user's input and the machine (issue 11): an :class:`InputError` or
    a full disk stages nothing, and an earlier RTSTRUCT or SEG at those paths stays byte-identical.
    A format that a library fails to write from this source does not take the others with it
    (issue 25): they are committed and :class:`ExportIncomplete` names the failure in one line.
    """
    from ..export.dicom_seg import write_dicom_seg
    from ..export.rtstruct import write_rtstruct
    from ..pipeline.outputs import OutputSet

    writers = {"rtstruct": lambda tmp: write_rtstruct(labels, geometry, tmp, holes=holes, operator=operator),
               "seg": lambda tmp: write_dicom_seg(labels, geometry, tmp)}
    failed: list[str] = []
    with OutputSet() as out:
        for role, path in outputs.items():
            if not path:
                continue
            try:
                out.add_written(role, path, writers[role])
            except (HNTumorSegError, OSError):
                raise
            except Exception as exc:  # noqa: BLE001 - reported below in one line, the others kept
                text = " ".join(str(exc).split())[:300]
                failed.append(f"the {role.upper()} could not be written to {path} ({type(exc).__name__}: {text})")
    files = {role: Path(path) for role, path in out.files.items()}
    if failed:
        kept = "; ".join(f"the {role.upper()} was written to {path}" for role, path in files.items())
        raise ExportIncomplete("; ".join(failed + ([kept] if kept else [])) +
                               " - please report this (hntumorseg version, the source's Manufacturer and "
                               "transfer syntax)", files)
    return files


class DicomOutputs:
    """``segment --rtstruct/--seg``: checked before the worker starts, written once the label map exists.

    The source series is the DICOM folder given for the input whose grid the output lies on
    (CT, else T2, else the first input), chosen as the worker reads it (``--series``, else the
    only image series, else the only one of the input's modality).

    Example:
        >>> from HNTumorSegLib.image import write_image
        >>> from HNTumorSegLib.phantoms import make_prert_case
        >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
        >>> from HNTumorSegLib.pipeline.request import SegmentRequest
        >>> case = make_prert_case(seed=3, shape=(4, 32, 32))
        >>> _ = write_dicom_series(case["T2"], "study/T2", modality="MR")          # the T2 given as DICOM
        >>> request = SegmentRequest(model="demo-midrt", input_paths={"T2": "study/T2"}, output_path="out/labels.nii.gz")
        >>> plan = DicomOutputs.plan(request, "out/rt.dcm", "out/seg.dcm", "nested")   # before the run
        >>> _ = write_image(case["mask"], request.output_path)                      # (the run's label map)
        >>> plan.write(request.output_path)                                            # after it
        {'rtstruct': PosixPath('out/rt.dcm'), 'seg': PosixPath('out/seg.dcm')}
    """

    def __init__(self, geometry, rtstruct: str | None, seg: str | None, holes: str) -> None:
        self.geometry, self.rtstruct, self.seg, self.holes = geometry, rtstruct, seg, holes

    @classmethod
    def plan(cls, request, rtstruct: str | None, seg: str | None, holes: str = "nested") -> "DicomOutputs | None":
        from ..dicom.select import select_series

        style = HoleStyle.parse(holes, "--holes")
        if not rtstruct and not seg:
            return None
        names = list(request.input_paths)
        name = next((n for n in ("CT", "T2") if n in names), names[0])
        source = Path(request.input_paths[name])
        if not source.is_dir():
            raise InputError(f"--rtstruct/--seg need the {name} input as a DICOM folder", source,
                             f"give --input {name}=DICOM_FOLDER (the series the contours will reference)")
        modality = {"CT": "CT", "T2": "MR"}.get(name)
        geometry = select_series(source, series_uid=request.series.get(name), prefer_modality=modality)
        check_source_identity(geometry)   # a character set we cannot declare: refused before inference (issue 25)
        taken = {Path(p).resolve() for p in [request.output_path, *request.input_paths.values()]}
        outs = [Path(p) for p in (rtstruct, seg) if p]
        for out in outs:
            r = out.resolve()
            if r in taken or (r.exists() and source.resolve() in r.parents) or out.is_dir():
                raise InputError("--rtstruct/--seg would overwrite an input or output, or is a folder", out,
                                 "give new .dcm file names outside the source folder")
            taken.add(r)
        return cls(geometry, rtstruct, seg, style.value)

    def write(self, labels_path) -> dict:
        from ..image import read_image

        labels = read_image(labels_path, label=True, name="label map")
        if not labels.array.any():
            print(f"hntumorseg: no GTV found in {labels_path}: no RTSTRUCT/SEG written", file=sys.stderr)
            return {}
        return write_dicom_objects(labels, self.geometry, {"rtstruct": self.rtstruct, "seg": self.seg}, self.holes)


def run(args: argparse.Namespace) -> int:
    HoleStyle.parse(args.holes, "--holes")
    destination = None
    if args.send:
        from ..dicom.send import parse_destination

        destination = parse_destination(args.send)
    _check_outputs(args, [Path(args.labels), Path(args.source)])
    written = export_dicom(args.labels, args.source, args.series, args.rtstruct, args.seg, args.holes, args.operator,
                           ContourOptions.from_args(args))
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")
    if destination is not None:
        from ..dicom.send import send_files

        n = send_files(list(written.values()), destination, calling_aet=args.calling_aet)
        print(f"sent {n} object{'s' if n != 1 else ''} to {destination}")
    sys.stdout.flush()
    return 0
