"""Run ``hntumorseg outcome --json`` in a child process: outcome prediction without torch in the caller.

Slicer's GUI process must never import torch (it would load a second copy of CUDA / OpenMP
libraries into the application, and a crash in it would take the application down), so the
panel predicts through this helper: :meth:`OutcomeRun.start` writes the three images (CT, PET
in SUV, label map) as NIfTI into a private temp folder and starts
``python -m HNTumorSegLib outcome --model M --input CT=... --input PET=... --labels L
--clinical C [--patient ID] --json out.json``; :meth:`OutcomeRun.poll` never blocks (a GUI
timer calls it) and, once the child has exited, reads the JSON or the child's one-line error.

The child's process handling is every child's (:mod:`HNTumorSegLib.childproc`): the same
Python (``PythonSlicer`` inside Slicer, :func:`~HNTumorSegLib.childproc.default_python`), the
same environment (:func:`~HNTumorSegLib.childproc.child_env`: this package on its path), its
own process group so :meth:`cancel` ends the whole tree. stdout and stderr go to files in the
temp folder, not pipes: the command prints a few lines only, so no reader threads are needed.
The temp folder (which holds patient images) is removed in every ending.

Example (a phantom PET/CT case; no outcome model in this folder, so the child refuses in one line -
with a trained model, as Testing/test_scene_outcome_review.py runs it, ``run.state`` is
``'succeeded'`` and ``run.result["rfs"]["risk"]`` the risk score):
    >>> import json, time
    >>> from HNTumorSegLib.phantoms.outcome_cohort import make_outcome_case
    >>> case = make_outcome_case(0, 5)
    >>> _ = open("ehr.json", "w").write(json.dumps({"Age": 61, "Gender": "M"}))
    >>> run = OutcomeRun().start(case["CT"], case["PET"], case["mask"], "outcome-model", "ehr.json")
    >>> while run.running:                # a GUI timer calls poll(); it never blocks
    ...     _ = run.poll(); time.sleep(0.3)
    >>> run.state, run.result, run.error
    ('failed', None, 'outcome prediction failed: hntumorseg outcome: error: outcome-model: outcome model not found ...')
    >>> run.temp_dir is None or not run.temp_dir.exists()          # the patient images are gone
    True
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..childproc import Child, default_python, start
from ..errors import InputError
from ..fileio import read_json, remove_temp_folder, temp_folder
from ..image import Image, write_image


class OutcomeRun:
    """One ``hntumorseg outcome`` child process and its temp folder.

    ``state``: created, running, succeeded, failed (the command refused the input or crashed:
    :attr:`error` is its last line), cancelled or timeout. :attr:`result` is the JSON the
    command wrote (:meth:`HNTumorSegLib.outcome.predictor.OutcomePredictor.predict`'s dict).
    """

    def __init__(self, python: str | None = None, timeout_s: float | None = 900.0, grace_s: float = 1.0):
        self.python = python or default_python()
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self.temp_dir: Path | None = None
        self.child: Child | None = None
        self.state = "created"
        self.result: dict | None = None
        self.error = ""
        self.returncode: int | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def proc(self):
        """The child's ``subprocess.Popen`` (None before :meth:`start`)."""
        return self.child.proc if self.child is not None else None

    def _folder(self) -> Path:
        assert self.temp_dir is not None, "the run was not started"
        return self.temp_dir

    def _started(self) -> Child:
        assert self.child is not None, "the run was not started"
        return self.child

    def command(self, model: str | os.PathLike, clinical_path: str | os.PathLike, patient: str | None = None,
                device: str = "cpu") -> list[str]:
        """The child's argv (the images in :attr:`temp_dir`)."""
        d = self._folder()
        argv = [self.python, "-m", "HNTumorSegLib", "outcome", "--model", str(model),
                "--input", f"CT={d / 'ct.nii.gz'}", "--input", f"PET={d / 'pet_suv.nii.gz'}",
                "--labels", str(d / "labels.nii.gz"), "--clinical", str(clinical_path),
                "--device", device, "--json", str(d / "outcome.json")]
        return argv + (["--patient", patient] if patient else [])

    def start(self, ct: Image, pet_suv: Image, labels: Image, model: str | os.PathLike,
              clinical_path: str | os.PathLike, patient: str | None = None, device: str = "cpu") -> "OutcomeRun":
        """Write the images and start the child. ``pet_suv`` must already be in SUV (the child reads it as SUV)."""
        if self.state != "created":
            raise RuntimeError(f"this run was already started (state {self.state})")
        self.temp_dir = d = temp_folder("hntumorseg-outcome-")
        try:
            write_image(ct, d / "ct.nii.gz")
            write_image(pet_suv, d / "pet_suv.nii.gz")
            write_image(labels, d / "labels.nii.gz")
            argv = self.command(model, clinical_path, patient, device)
            with open(d / "stdout.txt", "wb") as out, open(d / "stderr.txt", "wb") as err:
                self.child = start(argv, stdout=out, stderr=err, name="outcome")
        except OSError as exc:
            self._end("failed", f"could not start the outcome prediction with {self.python}: {exc.strerror or exc}")
            return self
        except BaseException:
            self._cleanup()
            raise
        self.state = "running"
        return self

    def poll(self) -> str:
        """The state now; never blocks (past the timeout the child's tree is ended)."""
        if self.state != "running":
            return self.state
        child = self._started()
        if child.overdue(self.timeout_s):
            child.kill_tree(self.grace_s)
            self._end("timeout", f"the outcome prediction took longer than {self.timeout_s:g} s and was stopped")
        elif not child.alive:
            self.returncode = child.returncode
            self._collect()
        return self.state

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run ends (or ``timeout`` s pass); for tests and scripts."""
        t_end = None if timeout is None else time.monotonic() + timeout
        while self.poll() == "running" and (t_end is None or time.monotonic() < t_end):
            time.sleep(0.1)
        return self.state

    def _collect(self) -> None:
        out_json = self._folder() / "outcome.json"
        if self.returncode == 0 and out_json.is_file():
            try:   # depth-limited and strict, like every JSON we read
                self.result = read_json(out_json, "outcome result")
            except InputError as exc:
                self._end("failed", f"outcome prediction failed: {exc.one_line()}")
                return
            self._end("succeeded", "")
            return
        lines = [ln.strip() for ln in (self._folder() / "stderr.txt").read_text("utf-8", "replace").splitlines()
                 if ln.strip()]
        last = lines[-1] if lines else f"exited with code {self.returncode}"
        self._end("failed", f"outcome prediction failed: {last}")

    def cancel(self) -> None:
        """End the child's process tree and remove the temp folder."""
        if self.state == "running":
            self._started().kill_tree(self.grace_s)
            self._end("cancelled", "outcome prediction cancelled")
        elif self.state == "created":
            self._end("cancelled", "outcome prediction cancelled")

    def _end(self, state: str, error: str) -> None:
        self.state, self.error = state, error
        self._cleanup()

    def _cleanup(self) -> None:
        if self.temp_dir is not None:
            remove_temp_folder(self.temp_dir)
