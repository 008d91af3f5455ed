"""DICOM Segmentation (SEG) of a result, written with highdicom, referencing its source series.

One binary segment per label present, numbered 1, 2 ... without gaps as the standard requires
(1 = GTVp and 2 = GTVn when both are present; a map with only GTVn has segment 1 = GTVn, told
apart by its label and type code),
coded like the Slicer segments (:mod:`.codes`: category SCT 49755003 "Morphologically Abnormal
Structure", type SCT 372087000 "Neoplasm, Primary" / SCT 14799000 "Neoplasm, Secondary",
anatomic region SCT 774007 "Head and Neck"), with the segment's
display colour in CIELab and HNTumorSeg as the algorithm (family "Artificial Intelligence").
``algorithm_type`` is ``SEMIAUTOMATIC`` by default: what leaves Slicer may have been edited.
Empty frames are omitted (highdicom's default); the label map must lie on the series' grid
(:func:`._dicom_source.match_series`). ``SpecificCharacterSet`` and the patient/study modules
are copied exactly from the source (:func:`._dicom_source.copy_identity`), as in RTSTRUCT; an
empty or ISO 2022 ``SpecificCharacterSet`` in the source is declared validly (issue 25).

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> case = make_prert_case(seed=3, shape=(4, 32, 32))
    >>> labels = case["mask"]                                     # labels 0/1/2 on the T2 grid
    >>> _ = write_dicom_series(case["T2"], "mr", modality="MR")  # the T2 as the source DICOM series
    >>> write_dicom_seg(labels, sorted(Path("mr").glob("*.dcm")), "out/seg.dcm")
    PosixPath('out/seg.dcm')
    >>> import pydicom
    >>> [s.SegmentLabel for s in pydicom.dcmread("out/seg.dcm").SegmentSequence]
    ['GTVp', 'GTVn']
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import LABEL_NAMES, __version__
from ..errors import InputError
from ..fileio import atomic_path
from ..image import Image, check_labels
from ..dicom.geometry import SeriesGeometry
from ._dicom_source import copy_identity, match_series
from .codes import CATEGORY, REGION, RGB, TYPES, type_code_to_label


def _code(c: tuple[str, str, str]):
    from pydicom.sr.coding import Code

    scheme, value, meaning = c
    return Code(value, scheme, meaning)


def _segment_descriptions(labels_present: list[int], algorithm_type: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(name="HNTumorSeg", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    out = []
    for number, label in enumerate(labels_present, start=1):
        kwargs = {"display_color": hd.color.CIELabColor.from_rgb(*RGB[label])}
        out.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=LABEL_NAMES[label],
            segmented_property_category=_code(CATEGORY), segmented_property_type=_code(TYPES[label]),
            algorithm_type=algorithm_type,
            algorithm_identification=algorithm if algorithm_type != "MANUAL" else None,
            anatomic_regions=[_code(REGION)], **kwargs))
    return out


def write_dicom_seg(labels: Image, source_files: SeriesGeometry | Iterable[str | os.PathLike], path: str | os.PathLike,
                    series_description: str = "HNTumorSeg GTV", algorithm_type: str = "SEMIAUTOMATIC",
                    series_number: int = 900) -> Path:
    """Write a DICOM SEG of ``labels`` (0/1/2 on the source series' grid) to ``path``."""
    import highdicom as hd

    check_labels(labels)
    slices = match_series(labels, source_files)
    present = [v for v in LABEL_NAMES if np.any(labels.array == v)]
    if not present:
        raise InputError("the segmentation is empty", None, "segment at least one lesion before exporting DICOM SEG")
    # the standard numbers segments 1, 2 ... without gaps: a map holding only GTVn has segment 1 = GTVn
    numbers = {label: i + 1 for i, label in enumerate(present)}
    frames = np.zeros((len(slices), *labels.array.shape[1:]), dtype=np.uint8)
    for i, s in enumerate(slices):
        for label, number in numbers.items():
            frames[i][labels.array[s.k] == label] = number
    with warnings.catch_warnings():
        # highdicom's advice on the source's names ("JANCT000 ... single component") is about
        # the images we copy, not ours to act on; on success stderr stays clean (issue 25)
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=[s.dataset for s in slices], pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=_segment_descriptions(present, algorithm_type),
            series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(),
            instance_number=1, manufacturer="HNTumorSeg", manufacturer_model_name="HNTumorSeg",
            software_versions=__version__, device_serial_number="0", series_description=series_description,
            # highdicom's own list refuses valid ISO 2022 forms (an empty value 1; Korean IR 149 is
            # missing from it); the value it checks is replaced by the source's just below
            specific_character_set="ISO_IR 192")
    copy_identity(slices[0].dataset, seg)
    if "ContentCreatorName" not in seg:
        seg.ContentCreatorName = ""  # type 2 of the Content Identification macro (dcmqi warns when absent)
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return Path(path)


def read_dicom_seg_labels(path: str | os.PathLike, labels_grid: Image,
                          source_files: SeriesGeometry | Iterable[str | os.PathLike]) -> Image:
    """Read a SEG back as a label map on ``labels_grid`` (for checks: the inverse of :func:`write_dicom_seg`)."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    slices = match_series(labels_grid, source_files)
    uids = [str(s.dataset.SOPInstanceUID) for s in slices]
    numbers = [int(d.SegmentNumber) for d in seg.SegmentSequence]
    label_of = {int(d.SegmentNumber): type_code_to_label(str(d.SegmentedPropertyTypeCodeSequence[0].CodeValue))
                for d in seg.SegmentSequence}  # segment numbers run 1, 2 ...; the type code says GTVp / GTVn
    arr = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=numbers,
                                            combine_segments=True, relabel=False)
    out = np.zeros(labels_grid.array.shape, dtype=np.uint8)
    for s, frame in zip(slices, arr):
        for number, label in label_of.items():
            if label is not None:
                out[s.k][frame == number] = label
    return labels_grid.with_array(out)
