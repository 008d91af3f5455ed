"""Where a volume node's voxels came from in DICOM, and a PET node's values in SUV.

**DICOM source** (:func:`dicom_source_files`): Slicer's DICOM module sets the attribute
``DICOM.instanceUIDs`` (SOP Instance UIDs, space-separated) on what it loads, and the files are
found through its DICOM database (``slicer.dicomDatabase.fileForInstance``, passed in as
``file_for_instance``: the library has no database); our own folder loading
(:func:`.inputs.load_image_node`) sets ``HNTumorSeg.SourceFiles`` (``|``-separated paths).
DICOM export (the source series of SEG / RTSTRUCT) and the PET's SUV both start here.

**PET in SUV** (:func:`pet_suv_image`): biomarkers need SUV (body weight).

* From DICOM: the SUV values are read from the files by the one PET path
  (:func:`HNTumorSegLib.dicom.pet_units.pet_to_suv`, vendor rules in :mod:`HNTumorSegLib.dicom.suv`),
  never from the node's voxels: Slicer's DICOM reader
  gives Bq/mL (and may treat per-slice rescale slopes differently), the SUV needs each slice's
  header. The SUV slices are put on the node's grid (slice order matched by position, so a
  reversed order is fine) and take the node's *world* geometry, so a PET registered with a
  linear transform is read where the user put it. A node whose own grid no longer matches its
  series (resampled, cropped) is refused: its SUV cannot be known.
* Not from DICOM (NIfTI, NRRD): the voxels are taken as SUV, as HECKTOR distributes them, when
  they look like SUV (the command line's rule without ``--pet-units``, README "PET units"); a
  PET in Bq/mL or counts is refused with one line.

Apply (:meth:`HNTumorSegLib.scene.logic.SegmentationSceneLogic.build_request`), the biomarker
and the outcome panels all take the PET through :func:`pet_suv_image`: the worker gets SUV.

Example:
    >>> import pydicom
    >>> from HNTumorSegLib.dicom.read import read_volume
    >>> from HNTumorSegLib.phantoms import make_petct_case
    >>> from HNTumorSegLib.phantoms.dicom_series import PetAcquisition, write_dicom_series
    >>> from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image
    >>> scene, case = make_scene().scene, make_petct_case(seed=1, in_plane=64)
    >>> ct_node = volume_node_from_image(scene, case["CT"], "CT")            # loaded from NIfTI
    >>> pet_files = write_dicom_series(case["PET"], "PET", modality="PT", pet=PetAcquisition())
    >>> database = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: str(f) for f in pet_files}
    >>> pet_node = volume_node_from_image(scene, read_volume("PET", name="the PET"), "PET")   # as Slicer's
    >>> pet_node.SetAttribute("DICOM.instanceUIDs", " ".join(database))     # DICOM module loads it
    >>> # in Slicer: file_for_instance = slicer.dicomDatabase.fileForInstance
    >>> files = dicom_source_files(ct_node, database.get)     # None: not DICOM
    >>> files is None, len(dicom_source_files(pet_node, database.get))
    (True, 66)
    >>> pet = pet_suv_image(pet_node, database.get)          # Image in SUVbw, from the files' headers
    >>> bool(abs(float(pet.array.max()) - float(case["PET"].array.max())) < 1e-3)
    True
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from ..dicom.pet_units import PetSuv
from ..image import Image
from .mrml import image_from_volume_node

SOURCE_FILES_ATTRIBUTE = "HNTumorSeg.SourceFiles"  # set by .inputs.load_image_node
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"     # set by Slicer's DICOM plugins

FileForInstance = Callable[[str], str]


def dicom_source_files(node, file_for_instance: FileForInstance | None = None) -> list[str] | None:
    """The DICOM files a volume node was loaded from, or None when it was not loaded from DICOM.

    ``HNTumorSeg.SourceFiles`` first (our folder loading), else ``DICOM.instanceUIDs`` looked up
    with ``file_for_instance`` (in Slicer ``slicer.dicomDatabase.fileForInstance``). A node from
    DICOM whose files cannot be found is an :class:`InputError`: guessing "not DICOM" would read
    Bq/mL as SUV.
    """
    attr = node.GetAttribute(SOURCE_FILES_ATTRIBUTE)
    if attr:
        return attr.split("|")
    uids = (node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids:
        return None
    fix = "open the DICOM database that holds the series (DICOM module), or load the PET in SUV as NIfTI"
    if file_for_instance is None:
        raise InputError(f"volume {node.GetName()!r} was loaded from DICOM but no DICOM database is open", None, fix)
    files = [file_for_instance(uid) for uid in uids]
    missing = [uid for uid, f in zip(uids, files) if not f or not Path(f).is_file()]
    if missing:
        raise InputError(f"{len(missing)} of the {len(uids)} DICOM files of volume {node.GetName()!r} are not in "
                         f"the DICOM database", None, fix)
    return files


def pet_suv_image(pet_node, file_for_instance: FileForInstance | None = None) -> Image:
    """The PET volume in SUVbw on its world geometry (module docstring: DICOM -> converted, else checked)."""
    return pet_suv(pet_node, file_for_instance).image


def pet_suv(pet_node, file_for_instance: FileForInstance | None = None) -> PetSuv:
    """:func:`pet_suv_image` with where the unit came from: the one PET path
    (:func:`HNTumorSegLib.dicom.pet_units.pet_to_suv`), as the command line's."""
    from ..dicom.geometry import grid_matches, slice_index_on
    from ..dicom.pixels import read_series
    from ..dicom.pet_units import pet_to_suv
    from ..export._dicom_source import source_geometry

    world = image_from_volume_node(pet_node, dtype=np.float32)
    files = dicom_source_files(pet_node, file_for_instance)
    if files is None:   # NIfTI, NRRD: SUV when it looks like SUV, else refused (README "PET units")
        return pet_to_suv(world, f"volume {pet_node.GetName()!r}",
                          state_unit="load the PET from DICOM (its header gives the unit) or as an SUV image")
    geometry = source_geometry(files)  # one checked series
    if geometry.series.modality != "PT":
        raise InputError(f"volume {pet_node.GetName()!r} was loaded from a {geometry.series.modality} series, "
                         "not a PET (PT)", geometry.files[0], "select the PET volume")
    converted = pet_to_suv(read_series(geometry, name="PET"), geometry.files[0], geometry=geometry)
    own_grid = image_from_volume_node(pet_node, world=False)
    if not grid_matches(geometry, own_grid):
        raise InputError(f"volume {pet_node.GetName()!r} no longer lies on the grid of its DICOM series "
                         "(resampled or cropped), so its SUV is unknown", geometry.files[0],
                         "select the PET as loaded from DICOM (a transform on it is fine)")
    out = np.empty(world.array.shape, np.float32)
    for k_series, header in enumerate(geometry.headers):  # slice order matched by position
        out[slice_index_on(own_grid, header)] = converted.image.array[k_series]
    return replace(converted, image=world.with_array(out))
