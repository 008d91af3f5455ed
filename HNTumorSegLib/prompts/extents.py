"""The fixed millimetre extents of the crops the prompts make, defined once (no imports: light).

Two different "how much around the lesions" numbers exist, with two names on purpose:

* :data:`BOX_CROP_SURROUND_MM` (20 mm, here) is *input*: how much image around the union of the
  user's boxes a box-made crop or region holds (:func:`.head_localisation.crop_around_boxes`,
  :func:`.boxes.union_region`), so the network sees the tissue around each lesion - a PET/CT
  head-crop model was trained on 200 x 200 x 310 mm of anatomy, and a crop cut at the box would
  show it none.
* ``REGION_CONTEXT_MM`` (5 mm, :mod:`HNTumorSegLib.pipeline.tasks`) is *output*: how far beyond
  the boxes a box-restricted run keeps (and computes) labels, so a lesion that grew a little past
  its box is not cut (seed 003 Fig. 3).

They answer different questions (what the network sees vs. what is kept), so changing one must
not change the other.

Example:
    >>> HEAD_CROP_MM, HEAD_CROP_SPACING_MM
    ((200.0, 200.0, 310.0), 1.0)
"""

from __future__ import annotations

#: Seed 004's (HECKTOR2025-MEDAI) head crop, x, y, z in mm, at :data:`HEAD_CROP_SPACING_MM`: what its
#: networks were trained on (:func:`.head_localisation.locate_head`, the ``seed004-head`` crop of
#: :mod:`HNTumorSegLib.models.declaration`).
HEAD_CROP_MM: tuple[float, float, float] = (200.0, 200.0, 310.0)
#: The isotropic voxel size (mm) of that crop.
HEAD_CROP_SPACING_MM = 1.0
#: Image kept around the union of user boxes in a box-made crop (see the module docstring).
BOX_CROP_SURROUND_MM = 20.0
