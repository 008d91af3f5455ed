"""The phantom cases HNTumorSeg registers in Slicer's Sample Data module (category "HNTumorSeg").

A new user needs something to try before they have their own images: two synthetic cases
(``HNTumorSegLib.phantoms``, no patient data) ship inside the extension, under
``HNTumorSeg/Resources/SampleData/``, each well under 2 MB:

* ``HNTumorSeg mid-RT phantom``: mid-RT T2w MRI (int16, 96x96x32, 0.9x0.9x3 mm) and the registered
  pre-RT contours as a Slicer segmentation (GTVp, GTVn), the inputs of the mid-RT task;
* ``HNTumorSeg PET/CT phantom``: CT (int16 HU, 2x2x3 mm) and PET (SUV on its own 4 mm grid),
  cropped in-plane to 192 mm around the neck (the body is about 145 mm wide).

Slicer's Sample Data module downloads through ``urllib``, which reads ``file:`` URIs too, and
checks every file's SHA256 before loading it; so the registration below points at the shipped
files (no network) and lists their digests. The files are made by ``scripts/make_sample_data.py``
(deterministic: same bytes every run); this module only lists them, so it is testable without
Slicer. The module (``HNTumorSeg.py``) calls :func:`register_kwargs` at ``startupCompleted``.

Node names are chosen so that **Assign inputs by name** picks them (``scene.inputs.auto_assign``).

Example:
    >>> from HNTumorSegLib.scene.sample_data import SAMPLE_CASES, register_kwargs
    >>> [c.name for c in SAMPLE_CASES]
    ['HNTumorSeg mid-RT phantom', 'HNTumorSeg PET/CT phantom']
    >>> kw = register_kwargs(SAMPLE_CASES[0], "/opt/ext/HNTumorSeg/Resources/SampleData")
    >>> kw["checksums"][0][:7], kw["uris"][0][:8]
    ('SHA256:', 'file:///')
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

#: The Sample Data category (its section title in the Sample Data module).
CATEGORY = "HNTumorSeg"
#: Where the files lie in a source tree / installed extension, relative to the module folder.
RESOURCE_SUBDIR = Path("Resources") / "SampleData"
#: The size every shipped case stays under (all its files together).
MAX_CASE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class SampleFile:
    """One shipped file: its name, the node it becomes, Slicer's reader, and its SHA256."""

    file_name: str
    node_name: str
    file_type: str  # Slicer's reader: "VolumeFile" or "SegmentationFile"
    sha256: str


@dataclass(frozen=True)
class SampleCase:
    """One Sample Data entry (a button in the HNTumorSeg category) and the task it is for."""

    name: str
    task: str
    files: tuple[SampleFile, ...]


SAMPLE_CASES: tuple[SampleCase, ...] = (
    SampleCase("HNTumorSeg mid-RT phantom", "midrt", (
        SampleFile("HNTumorSeg-midRT-phantom-T2.nrrd", "phantom_midRT_T2", "VolumeFile",
                   "6c97dd694a2bfd20bf616a06d7f5fb396bb7c73e59fa2fa58a5e6e8a823497b7"),
        SampleFile("HNTumorSeg-midRT-phantom-preRT-mask-registered.seg.nrrd", "phantom_preRT_mask_registered",
                   "SegmentationFile", "9b3b45b761d2a6e33a8af6741a46aa3f154466249de165e60ce1f61d2748585e"),
    )),
    SampleCase("HNTumorSeg PET/CT phantom", "petct", (
        SampleFile("HNTumorSeg-PETCT-phantom-CT.nrrd", "phantom_CT", "VolumeFile",
                   "e4d86d6fa6724102c9537bac18a39e1c7827e9e606ee969d4b92d20cf9611df3"),
        SampleFile("HNTumorSeg-PETCT-phantom-PET.nrrd", "phantom_PET", "VolumeFile",
                   "fa49ca2c66b305009e9205a089fb16989bf60d97d6813911533cac969a948b3a"),
    )),
)


def shipped_folder() -> Path:
    """Where the files lie: ``<repo>/HNTumorSeg/Resources/SampleData`` in a source tree, or
    ``<scripted modules>/Resources/SampleData`` in a build tree / installed extension (HNTumorSegLib
    is installed beside the module there)."""
    root = Path(__file__).resolve().parents[2]
    source = root / "HNTumorSeg" / RESOURCE_SUBDIR
    return source if source.is_dir() else root / RESOURCE_SUBDIR


def sample_case(name_or_task: str) -> SampleCase:
    """The case named ``name_or_task``, or the one for that task (``midrt`` / ``petct``)."""
    for case in SAMPLE_CASES:
        if name_or_task in (case.name, case.task):
            return case
    raise KeyError(f"no HNTumorSeg sample case {name_or_task!r}; known: {[c.name for c in SAMPLE_CASES]}")


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def register_kwargs(case: SampleCase, folder: str | os.PathLike, thumbnail: str | None = None) -> dict:
    """Keyword arguments for ``SampleData.SampleDataLogic.registerCustomSampleDataSource``.

    ``folder`` holds the shipped files (the module's ``Resources/SampleData``).
    """
    folder = Path(folder).resolve()
    return {
        "category": CATEGORY,
        "sampleName": case.name,
        "uris": [(folder / f.file_name).as_uri() for f in case.files],
        "fileNames": [f.file_name for f in case.files],
        "nodeNames": [f.node_name for f in case.files],
        "checksums": [f"SHA256:{f.sha256}" for f in case.files],
        "loadFileTypes": [f.file_type for f in case.files],
        "thumbnailFileName": thumbnail,
    }


def check_files(folder: str | os.PathLike) -> list[str]:
    """Problems with the shipped files in ``folder`` (missing, wrong SHA256, case too big); [] when all is well."""
    folder = Path(folder)
    problems = []
    for case in SAMPLE_CASES:
        total = 0
        for f in case.files:
            path = folder / f.file_name
            if not path.is_file():
                problems.append(f"{path}: missing")
                continue
            total += path.stat().st_size
            if sha256_of(path) != f.sha256:
                problems.append(f"{path}: SHA256 differs from the one registered (run scripts/make_sample_data.py)")
        if total > MAX_CASE_BYTES:
            problems.append(f"{case.name}: {total} bytes, over the {MAX_CASE_BYTES} byte budget")
    return problems


def load_into_scene(scene, case: SampleCase, folder: str | os.PathLike) -> dict:
    """Load ``case``'s files into ``scene`` as Slicer's Sample Data module would (``{node name: node}``).

    For slicer-core scenes (tests, pictures); inside Slicer the Sample Data module does this.
    """
    import slicer

    from .inputs import load_image_node

    nodes = {}
    for f in case.files:
        path = Path(folder) / f.file_name
        if f.file_type == "SegmentationFile":
            node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f.node_name)
            storage = slicer.vtkMRMLSegmentationStorageNode()
            storage.SetFileName(str(path))
            if not storage.ReadData(node):
                raise RuntimeError(f"Slicer could not read the segmentation {path}")
            node.CreateDefaultDisplayNodes()
        else:
            node = load_image_node(scene, path, name=f.node_name)
        nodes[f.node_name] = node
    return nodes
