"""What to segment and where to write it: :class:`SegmentRequest`, and what came out: :class:`SegmentResult`.

One request, three spellings, all made here so they never drift apart (like SlicerNNUnet's
parameter dataclass):

* the ``hntumorseg segment`` command line (:meth:`SegmentRequest.to_argv`,
  :meth:`SegmentRequest.from_args`),
* the worker's ``request.json`` (:meth:`SegmentRequest.to_dict` / :meth:`SegmentRequest.from_dict`,
  DESIGN.md "Worker protocol"),
* the Python object the pipeline runs (:func:`HNTumorSegLib.pipeline.run_segmentation`).

Example:
    >>> req = SegmentRequest(model="demo-midrt", inputs={"T2": "mid.nii.gz"}, prior="pre_mask.nii.gz",
    ...                      output="out/labels.nii.gz", task="midrt")
    >>> req.to_argv()[:4]
    ['segment', '--task', 'midrt', '--model']
    >>> SegmentRequest.from_dict(req.to_dict()) == req
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import write_json_atomic

TASKS = ("prert", "midrt", "petct")
DEVICES = ("auto", "cpu", "cuda", "mps")
PROGRESS_MODES = ("json", "bar", "none")


def parse_input_pair(text: str) -> tuple[str, str]:
    """``"T2=case/mid.nii.gz"`` -> ``("T2", "case/mid.nii.gz")``; anything else is an InputError."""
    name, sep, path = str(text).partition("=")
    name, path = name.strip(), path.strip()
    if not sep or not name or not path:
        raise InputError(f"--input {text!r} is not NAME=PATH", None, "write e.g. --input T2=mid_T2.nii.gz")
    return name, path


def parse_folds_text(text: str | None) -> str | list[int] | None:
    """``None``/``"all"`` -> ``"all"``; ``"0,1"`` -> ``[0, 1]``. Bad text is an InputError."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if t in ("", "all"):
        return "all"
    try:
        folds = [int(x) for x in t.split(",") if x.strip() != ""]
    except ValueError:
        raise InputError(f"--folds {text!r} is not 'all' or a list of fold numbers", None,
                         "write e.g. --folds all or --folds 0,1") from None
    if not folds or any(f < 0 for f in folds):
        raise InputError(f"--folds {text!r} is not 'all' or a list of fold numbers", None,
                         "write e.g. --folds all or --folds 0,1")
    return folds


@dataclass
class SegmentRequest:
    """One segmentation job (DESIGN.md ``hntumorseg segment`` contract).

    ``inputs`` maps input names (``T2``; ``CT`` and ``PET``; or an nnU-Net folder's
    ``channel_names``) to image paths, in the order given: the first input's grid is the
    output grid. ``folds`` is ``None``/``"all"`` or a list of fold numbers. ``tta`` defaults
    to off: on a CPU mirroring costs 8x the time (choice; turn it on with ``--tta``).
    """

    model: str
    inputs: dict[str, str]
    output: str
    task: str | None = None
    prior: str | None = None
    boxes: str | None = None
    device: str = "auto"
    folds: Any = None
    tta: bool = False
    probabilities: str | None = None
    uncertainty: str | None = None
    boxes_output: str | None = None  # where to write the boxes used (mid-RT: those made from the prior)

    # ---- request.json -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready dict (the worker's ``request.json``)."""
        d = asdict(self)
        d["inputs"] = {str(k): str(v) for k, v in self.inputs.items()}
        for key in ("output", "prior", "boxes", "probabilities", "uncertainty", "boxes_output", "model"):
            if d[key] is not None:
                d[key] = str(d[key])
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "SegmentRequest":
        """Read a ``request.json`` object; unknown or missing fields are an InputError."""
        if not isinstance(data, dict):
            raise InputError("the request is not a JSON object", None, "write an object with model, inputs, output")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown request field(s) {', '.join(unknown)}", None,
                             f"use only {', '.join(sorted(known))}")
        missing = [k for k in ("model", "inputs", "output") if not data.get(k)]
        if missing:
            raise InputError(f"the request lacks {', '.join(missing)}", None, "give model, inputs and output")
        if not isinstance(data["inputs"], dict):
            raise InputError("request field 'inputs' must map names to paths", None,
                             'write e.g. "inputs": {"T2": "mid_T2.nii.gz"}')
        return cls(**data)

    def write_json(self, path: str | Path) -> Path:
        """Write ``request.json`` for the worker."""
        return write_json_atomic(path, self.to_dict())

    # ---- command line --------------------------------------------------------------------------
    def to_argv(self, progress: str | None = None) -> list[str]:
        """The ``hntumorseg segment ...`` arguments that make this request (without the program name)."""
        argv = ["segment"]
        if self.task:
            argv += ["--task", self.task]
        argv += ["--model", str(self.model)]
        for name, path in self.inputs.items():
            argv += ["--input", f"{name}={path}"]
        if self.prior:
            argv += ["--prior", str(self.prior)]
        if self.boxes:
            argv += ["--boxes", str(self.boxes)]
        argv += ["--output", str(self.output), "--device", self.device]
        if self.folds is not None and self.folds != "all":
            argv += ["--folds", ",".join(str(f) for f in self.folds)]
        argv.append("--tta" if self.tta else "--no-tta")
        if self.probabilities:
            argv += ["--probabilities", str(self.probabilities)]
        if self.uncertainty:
            argv += ["--uncertainty", str(self.uncertainty)]
        if self.boxes_output:
            argv += ["--save-boxes", str(self.boxes_output)]
        if progress:
            argv += ["--progress", progress]
        return argv

    @classmethod
    def from_args(cls, args: Any) -> "SegmentRequest":
        """Build from ``hntumorseg segment``'s parsed arguments (argparse Namespace)."""
        inputs: dict[str, str] = {}
        for text in args.input or []:
            name, path = parse_input_pair(text)
            if name in inputs:
                raise InputError(f"input {name!r} is given twice", None, "give each --input NAME once")
            inputs[name] = path
        if not inputs:
            raise InputError("no input image given", None, "add --input NAME=PATH (T2, or CT and PET)")
        return cls(model=args.model, inputs=inputs, output=args.output, task=args.task, prior=args.prior,
                   boxes=args.boxes, device=args.device, folds=parse_folds_text(args.folds), tta=bool(args.tta),
                   probabilities=args.probabilities, uncertainty=args.uncertainty,
                   boxes_output=getattr(args, "save_boxes", None))


@dataclass
class SegmentResult:
    """What a run produced: ``files`` (role -> path: ``labels``, ``probabilities``, ``uncertainty``,
    ``boxes``), seconds per stage, and facts about the run (``volumes_ml`` per label name ...)."""

    files: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)
    device: str | None = None
    model_id: str | None = None
    n_tiles: int | None = None
    task: str | None = None
    volumes_ml: dict[str, float] = field(default_factory=dict)
    boxes: list = field(default_factory=list)

    @property
    def labels(self) -> str:
        return self.files["labels"]
