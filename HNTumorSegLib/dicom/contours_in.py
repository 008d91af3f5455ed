"""Whatever a user gives where a label map is expected, as a {0, 1, 2} label map: the one reader.

``segment --prior``, ``evaluate --ref/--pred``, ``biomarkers --labels``, ``outcome --labels`` and
``export --labels`` take any of:

* a label map (NIfTI, NRRD, MetaImage): read as before (:func:`HNTumorSegLib.image.read_image`),
  values checked to be in {0, 1, 2};
* a DICOM RTSTRUCT file: its structures become labels (:mod:`.structures`) and are rasterised
  (:mod:`.rtstruct_in`, holes even-odd) onto the grid of the series it references;
* a DICOM SEG file: its segments become labels the same way, frames placed by their positions
  (:mod:`.seg_in`).

The kind is read from the content (the ``DICM`` preamble, then ``SOPClassUID`` / ``Modality``),
never from the file name: ``rtss.dcm``, ``RS.1.2.3`` and ``seg.nii``-named DICOM alike. Another
DICOM object (a CT slice, an RT plan) is refused with one line saying what it is.

The grid a DICOM file is read onto - the series it references - is, in this order:

1. ``--reference DICOM_FOLDER``: its series with the referenced ``SeriesInstanceUID``, else the one
   series of the same ``FrameOfReferenceUID``, else its only image series;
2. beside the file: the same search in the file's folder (and its sub-folders), as a PACS or a
   planning system exports a study;
3. the task image (``grid``: the T2 of ``segment``, the other label map of ``evaluate``, the CT
   or PET of ``biomarkers``), provided every contour or frame lies on one of its slices;

else exit 2 with "give --reference DICOM_FOLDER". ``--structures`` (:func:`add_contour_arguments`,
the one argparse helper every command uses) names the structures of each label when the
automatic matching does not suffice.

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> from HNTumorSegLib.export.rtstruct import write_rtstruct
    >>> from HNTumorSegLib.dicom.select import select_series
    >>> case = make_prert_case(seed=3, shape=(4, 32, 32))
    >>> _ = write_dicom_series(case["T2"], "study/mr", modality="MR")
    >>> _ = write_rtstruct(case["mask"], select_series("study/mr"), "study/rt.dcm")
    >>> found = read_label_input("study/rt.dcm")            # the series found beside it
    >>> found.kind, found.structures
    ('RTSTRUCT', {1: ['GTVp'], 2: ['GTVn']})
    >>> found.image.same_grid(case["mask"])
    True
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import LABEL_NAMES
from ..errors import InputError
from ..image import IMAGE_SUFFIXES, Image, check_labels, read_image
from ..protect import check_regular_input
from .geometry import check_series
from .scan import list_series_text, read_header, scan_folder
from .seg_in import place_segments, seg_reference, seg_structures
from .structures import assign_labels, parse_structures
from .rtstruct_in import rasterise_rtstruct, referenced_series, rtstruct_structures

RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT, SEG, LABEL_MAP = "RTSTRUCT", "SEG", "label map"   # what LabelInput.kind says (messages only)


@dataclass
class ContourOptions:
    """``--structures`` and ``--reference`` as given (``None``: automatic)."""

    structures: str | None = None
    reference: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ContourOptions":
        return cls(getattr(args, "structures", None), getattr(args, "reference", None))


def add_contour_arguments(parser: argparse.ArgumentParser) -> None:
    """``--structures`` and ``--reference``: the options of every command that takes a label map."""
    parser.add_argument("--structures", default=None, metavar="'GTVp=NAME[,NAME..];GTVn=NAME[,NAME..]'",
                        help="for an RTSTRUCT or SEG given as a label map: which structures are GTVp and GTVn "
                             "(case-insensitive; default: recognised by name or code, README 'Contours in')")
    parser.add_argument("--reference", default=None, metavar="DICOM_FOLDER",
                        help="for an RTSTRUCT or SEG: the folder of the image series it was drawn on "
                             "(default: found beside the file by its series / frame of reference UIDs)")


@dataclass
class LabelInput:
    """A label map as read: the image (uint8, {0,1,2}), what it was, and which structures made each label."""

    image: Image
    kind: str
    structures: dict[int, list[str]] = field(default_factory=dict)
    frame_of_reference: str = ""   # of a DICOM file ("" for a label map, or when it names none)

    def summary(self) -> str:
        """``RTSTRUCT: GTVp = GTV_P; GTVn = GTVn_L2 + GTVn_R`` (for a note on stderr)."""
        if not self.structures:
            return self.kind
        parts = [f"{LABEL_NAMES[k]} = {' + '.join(v)}" for k, v in sorted(self.structures.items())]
        return f"{self.kind}: {'; '.join(parts)}"


def sniff(path: Path):
    """(kind, dataset header) of a file: RTSTRUCT, SEG, another DICOM's modality, or LABEL_MAP (not DICOM)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return LABEL_MAP, None   # the image reader reports it
    if head[128:132] != b"DICM":
        return _raw_dicom(path)
    header = read_header(path)
    if header is None:
        raise InputError("is a damaged DICOM file (its header cannot be read)", path, "export it again")
    sop_class = str(header.get("SOPClassUID", "") or getattr(header.get("file_meta", None), "MediaStorageSOPClassUID", ""))
    modality = str(header.get("Modality", "") or "").upper()
    if sop_class == RTSTRUCT_CLASS or modality == RTSTRUCT:
        return RTSTRUCT, header
    if sop_class == SEG_CLASS or modality == SEG:
        return SEG, header
    return modality or "DICOM", header


def _raw_dicom(path: Path):
    """A DICOM data set written without the preamble (older planning systems do): RTSTRUCT or SEG by
    its SOPClassUID, else LABEL_MAP (a NIfTI, NRRD or MetaImage file is never tried)."""
    if path.name.lower().endswith(IMAGE_SUFFIXES):
        return LABEL_MAP, None
    import pydicom

    try:
        header = pydicom.dcmread(str(path), force=True, stop_before_pixels=True)
        sop_class = str(header.get("SOPClassUID", "") or "")
    except Exception:   # not DICOM at all: pydicom raises many kinds on arbitrary bytes
        return LABEL_MAP, None
    kinds = {RTSTRUCT_CLASS: RTSTRUCT, SEG_CLASS: SEG}
    return (kinds[sop_class], header) if sop_class in kinds else (LABEL_MAP, None)


def is_contour_file(path: str | os.PathLike) -> bool:
    """True for a regular file holding a DICOM RTSTRUCT or SEG (read by content)."""
    p = Path(path)
    return p.is_file() and sniff(p)[0] in (RTSTRUCT, SEG)


def _grid_in(folder: Path, series_uid: str, frame_uid: str, explicit: bool, path: Path, what: str) -> Image | None:
    """The grid of the series ``folder`` holds for these UIDs (module docstring), else None (or an
    InputError naming the series found, when ``folder`` was given with ``--reference``)."""
    try:
        found = [s for s in scan_folder(folder) if s.is_image and not s.is_multiframe]   # a SEG is no source
    except InputError:
        if explicit:
            raise
        return None
    chosen = [s for s in found if series_uid and s.uid == series_uid]
    if not chosen and frame_uid:
        chosen = [s for s in found if str(s.first.get("FrameOfReferenceUID", "") or "") == frame_uid]
    if not chosen and explicit and len(found) == 1 and not frame_uid:
        chosen = found
    if len(chosen) == 1:
        return check_series(chosen[0], need_frame_of_reference=False).grid
    if explicit:
        many = f"{len(chosen)} series of its frame of reference" if chosen else \
            f"no series {series_uid or '?'} nor of frame of reference {frame_uid or '?'}"
        raise InputError(f"--reference holds {many} for the {what}; {list_series_text(found)}" if found
                         else f"--reference holds no image series for the {what}", folder,
                         "give the folder of the one series the contours were drawn on")
    return None


def _reference_grid(path: Path, series_uid: str, frame_uid: str, options: ContourOptions, grid: Image | None,
                    what: str) -> Image:
    if options.reference:
        ref = Path(options.reference)
        check_regular_input(ref, "--reference")
        if not ref.exists():
            raise InputError("--reference does not exist", ref, "give the DICOM folder of the image series")
        found = _grid_in(ref, series_uid, frame_uid, True, path, what)
        assert found is not None
        return found
    beside = _grid_in(path.parent, series_uid, frame_uid, False, path, what)
    if beside is not None:
        return beside
    if grid is not None:
        return grid
    raise InputError(f"the {what} references series {series_uid or '?'} (frame of reference {frame_uid or '?'}), "
                     "which is not beside it", path, "give the folder of that image series with --reference DICOM_FOLDER")


def read_label_input(path: str | os.PathLike, name: str = "label map", options: ContourOptions | None = None,
                     grid: Image | None = None) -> LabelInput:
    """Read ``path`` (a label map, an RTSTRUCT or a SEG) as a {0,1,2} label map (module docstring).

    ``grid``: the task image, the grid a DICOM file is read onto when its series is neither given
    (``options.reference``) nor beside it. Every mistake is an :class:`InputError` naming the file.
    """
    import pydicom

    options = options or ContourOptions()
    p = Path(path)
    if not p.exists():
        raise InputError(f"{name} file does not exist", p, "check the path")
    check_regular_input(p, name)
    kind, header = sniff(p) if p.is_file() else (LABEL_MAP, None)
    if kind == LABEL_MAP:
        image = read_image(p, label=True, name=name)
        check_labels(image, path=p, name=name)
        return LabelInput(image, LABEL_MAP)
    if kind not in (RTSTRUCT, SEG):
        raise InputError(f"{name} is a DICOM {kind} object, not a label map, RTSTRUCT or SEG", p,
                         "give the label map (NIfTI/NRRD), the RTSTRUCT file or the DICOM SEG file")
    what = f"{name} ({kind})"
    if kind == RTSTRUCT:
        structures = rtstruct_structures(header)
        series_uid, frame_uid = referenced_series(header)
    else:
        header = pydicom.dcmread(str(p))   # the frames too
        structures = seg_structures(header)
        series_uid, frame_uid = seg_reference(header)
    labels_of = assign_labels(structures, parse_structures(options.structures), p, kind)
    target = _reference_grid(p, series_uid, frame_uid, options, grid, what)
    if kind == RTSTRUCT:
        array = rasterise_rtstruct(header, target, labels_of, structures, p)
    else:
        array = place_segments(header, target, labels_of, p)
    used: dict[int, list[str]] = {}
    for s in structures:
        if s.key in labels_of:
            used.setdefault(labels_of[s.key], []).append(s.name)
    return LabelInput(target.with_array(array.astype(np.uint8)), kind, used, frame_uid)


def check_same_frame(found: LabelInput, path, folder, series_uid: str | None, prefer_modality: str | None,
                     image_name: str) -> None:
    """InputError when DICOM contours lie in another frame of reference than the image series they are
    used on (``segment --prior`` on a mid-RT T2 folder): contours drawn on the pre-RT scan and not
    registered would otherwise be taken as if they were, whenever the two grids overlap."""
    if not found.frame_of_reference:
        return
    from .select import select_series

    geometry = select_series(folder, series_uid=series_uid, need_frame_of_reference=False,
                             prefer_modality=prefer_modality)
    frame = str(geometry.series.first.get("FrameOfReferenceUID", "") or "")
    if frame and frame != found.frame_of_reference:
        raise InputError(f"the {found.kind}'s contours lie in frame of reference {found.frame_of_reference}, the "
                         f"{image_name} series in {frame}: they are not registered to it", path,
                         f"give contours registered to the {image_name} series (drawn on it, or registered first)")


def read_labels(path: str | os.PathLike, name: str = "label map", options: ContourOptions | None = None,
                grid: Image | None = None) -> Image:
    """:func:`read_label_input`'s image: what every command that takes a label map reads."""
    return read_label_input(path, name, options, grid).image
