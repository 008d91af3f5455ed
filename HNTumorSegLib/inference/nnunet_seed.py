"""The seeds' steps around an nnU-Net results folder we did not train (:mod:`HNTumorSegLib.models.declaration`).

nnU-Net's own preprocessing (:func:`.nnunet_inference.predict_nnunet_case`) only normalises and
resamples the files it is given. What the seed authors did *before* nnU-Net saw a case is done
here, from the folder's declaration, so that the released weights get what they were trained on:

* **seed 003, midrt** (GradientSegHNTS): the channel declared ``derived: gradient`` is made from
  the T2 and the registered pre-RT mask (or the user's boxes) following the authors' released
  ``data_conversion.py`` / ``create_margins.py``: one box per face-connected component of each
  label of the prior (:func:`~HNTumorSegLib.prompts.boxes.boxes_from_mask`, 6-connectivity as
  ``sitk.ConnectedComponent``'s default), ``box_margin_vox`` voxels on every side (default 4,
  inclusive, clamped to the image), on each box's crop of the T2 *on the T2's own grid* (the
  raw training data's grid): min-max, Gaussian gradient magnitude sigma 1 voxel, min-max, x2,
  clip at 1, 0 outside the boxes (:func:`~HNTumorSegLib.prompts.gradient_map.gradient_map`).
  The map is written as a NIfTI on the T2's grid and given to nnU-Net as the second file;
* **seed 004, petct** (HECKTOR2025-MEDAI): CT and PET are cropped first with the project's
  seed-004 head crop (:func:`~HNTumorSegLib.prompts.head_localisation.locate_head`, the size and
  spacing the declaration names, 200 x 200 x 310 mm at 1 mm by default), nnU-Net predicts on the
  crop, and the labels are pasted back onto the CT grid (0 outside the crop).

Whole image by default, as the seeds ran: nothing is set to background outside the boxes.
``restrict_to_boxes`` (``segment --restrict-to-boxes``, Slicer's fast quality) keeps only labels
within the boxes (+ :data:`HNTumorSegLib.pipeline.tasks.REGION_CONTEXT_MM`): lesions outside the
boxes are lost. It is a real fast path: :meth:`SeedSteps.region_zyx` gives the boxes on the first
file's grid, and :func:`.nnunet_inference.predict_nnunet_case` runs only the tiles touching them.

Choice: where boxes overlap, the released code lets the later box overwrite; we keep the
larger value (independent of box order; identical where boxes do not overlap).

Example (seed 003's channels on a phantom; the prior's labels stand in for nnU-Net's output, which
``predict_nnunet_case(model, steps.nnunet_inputs).segmentation`` gives with a trained folder - see
Testing/test_models_published_gradientseg.py):
    >>> from pathlib import Path
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.models.declaration import infer_declaration
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> phantom = make_midrt_case(seed=0, shape=(8, 32, 32))
    >>> t2, prior = phantom["midRT_T2"], phantom["preRT_mask_registered"]
    >>> _ = write_image(t2, "t2.nii.gz")
    >>> decl = infer_declaration({"0": "T2", "1": "gradient"})      # GradientSegHNTS's channel names
    >>> with SeedSteps(decl, {"T2": t2}, {"T2": "t2.nii.gz"}, prior=prior) as steps:
    ...     print([Path(f).name for f in steps.files], steps.notes)   # the files nnU-Net is given
    ...     labels = steps.to_target(prior.array)                     # on the first input's grid
    ['t2.nii.gz', 'derived_1_gradient.nii'] ['3 box(es), margin 4 voxels']
    >>> labels.shape, Path(steps.files[1]).exists()                   # the gradient map is gone after `with`
    ((8, 32, 32), False)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..errors import InputError
from ..image import Image, resample_to, write_image
from ..prompts.boxes import LesionBox, box_to_index_slices, boxes_from_mask

if TYPE_CHECKING:
    from ..models.declaration import Declaration
    from ..prompts.head_localisation import HeadCrop

#: suffixes nnU-Net's SimpleITKIO reads as they are (anything else is written to a temporary NIfTI).
_NNUNET_READABLE = (".nii.gz", ".nii", ".nrrd", ".mha")


class SeedSteps:
    """Files in channel order for nnU-Net, and the way back to the first input's grid.

    A context manager: its temporary folder (gradient map, crops) is removed on exit.
    """

    def __init__(self, declaration: Declaration, images: dict[str, Image], input_paths: dict[str, str],
                 prior: Image | None = None, boxes: Sequence[LesionBox] = (),
                 progress: Callable[[str], None] | None = None) -> None:
        self.decl = declaration
        self.images = images
        self.input_paths = input_paths
        self.prior = prior
        self.user_boxes = list(boxes)
        self.boxes: list[LesionBox] = list(boxes)
        self.crop: HeadCrop | None = None
        self.notes: list[str] = []
        #: the channels in nnU-Net's order, in memory; ``_paths[i]``: a file for channel i (the user's, or
        #: written on demand by :attr:`files`), None until asked
        self.channel_images: list[Image] = []
        self._paths: list[str | None] = []
        self._names: list[str] = []
        self._in_memory: list[bool] = []
        self._progress = progress or (lambda message: None)
        self._tmp: Path | None = None

    # ---- context -------------------------------------------------------------------------
    def __enter__(self) -> "SeedSteps":
        self._tmp = Path(tempfile.mkdtemp(prefix="hntumorseg-seed-"))
        try:
            self._prepare()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @property
    def target(self) -> Image:
        """The output grid: the first user input (T2, or CT)."""
        return self.images[self.decl.user_inputs[0]]

    # ---- what nnU-Net is given ----------------------------------------------------------------
    @property
    def files(self) -> list[str]:
        """The channels as files, in nnU-Net's order: the user's own file where nnU-Net reads it as
        it is, else written (float32 NIfTI) into the temporary folder, once, when first asked."""
        for i, path in enumerate(self._paths):
            if path is None:
                self._paths[i] = self._write(self.channel_images[i], self._names[i])
        return [str(p) for p in self._paths]

    @property
    def nnunet_inputs(self) -> list:
        """What :func:`.nnunet_inference.predict_nnunet_case` is given: the images in memory when
        every channel's voxels are what nnU-Net would read from its file (read once, issue 27), else
        :attr:`files` (e.g. a PET converted to SUV while nnU-Net reads the file as given)."""
        if all(self._in_memory):
            return list(self.channel_images)
        return self.files

    def _add(self, image: Image, name: str, path: str | None = None, in_memory: bool = True) -> None:
        self.channel_images.append(image)
        self._names.append(name)
        self._paths.append(path)
        self._in_memory.append(in_memory)

    # ---- steps ---------------------------------------------------------------------------
    def _write(self, image: Image, name: str) -> str:
        if self._tmp is None:
            raise RuntimeError("SeedSteps writes its files only inside `with`")
        path = self._tmp / f"{name}.nii"      # a hand-off for nnU-Net: uncompressed, not read back (issue 27)
        write_image(image.with_array(np.asarray(image.array, np.float32)), path, compress=False, verify=False)
        return str(path)

    def _add_user_input(self, name: str) -> None:
        """A user input: nnU-Net reads the user's file where it can (or, read once, its voxels as
        read here when they are that file's); otherwise the image read here (a DICOM series)."""
        given = self.input_paths.get(name)
        image = self.images[name]
        if given and Path(given).is_file() and given.lower().endswith(_NNUNET_READABLE):
            same = image.source is not None and Path(image.source) == Path(given)
            self._add(image, f"input_{name}", str(given), in_memory=same)
            return
        self._add(image, f"input_{name}")

    def lesion_boxes(self) -> list[LesionBox]:
        """The user's boxes, else one per 6-connected lesion of the prior (margin from the declaration)."""
        if self.user_boxes:
            return list(self.user_boxes)
        if self.prior is None:
            return []
        t2 = self.target
        prior = self.prior if self.prior.same_grid(t2) else resample_to(self.prior, t2, label=True)
        return boxes_from_mask(prior, margin_vox=self.decl.box_margin_vox)

    def _prepare(self) -> None:
        from ..prompts.gradient_map import gradient_map

        decl = self.decl
        if decl.derived:
            self.boxes = self.lesion_boxes()
            self.notes.append(f"{len(self.boxes)} box(es), margin {decl.box_margin_vox} voxels")
        if decl.crop:
            self._prepare_crop()
            return
        for ch in decl.channels:
            if ch.input:
                self._add_user_input(ch.input)
                continue
            if ch.source not in self.images:
                raise InputError(f"no {ch.source} image to make the {ch.name!r} channel from", None,
                                 f"give --input {ch.source}=PATH")
            self._progress(f"gradient map from {ch.source} ({len(self.boxes)} box(es))")
            grad = gradient_map(self.images[ch.source], self.boxes)
            self._add(grad, f"derived_{ch.index}_{ch.derived}")

    def _prepare_crop(self) -> None:
        from ..prompts.head_localisation import locate_head

        decl = self.decl
        spec = decl.crop or {}    # called only for a declaration with a crop
        if "CT" not in self.images or "PET" not in self.images or decl.derived:
            raise InputError("the seed-004 head crop needs CT and PET inputs (and no derived channel)", None,
                             "give --input CT=PATH --input PET=PATH")
        self._progress("seed 004 head crop")
        crop = locate_head(self.images["CT"], self.images["PET"], crop_mm=spec["size_mm"],
                           spacing=spec["spacing_mm"])
        self.crop = crop
        self.notes.append("head crop around the PET hot spot" if crop.found_hot_region
                          else "no PET hot spot found: crop at the top of the scan")
        cropped = {"CT": crop.ct, "PET": crop.pet}
        for ch in decl.channels:
            if ch.input not in cropped:
                raise InputError(f"channel {ch.name!r}: a cropped model takes only CT and PET", None,
                                 "declare the channels as CT and PET")
            self._add(cropped[ch.input], f"crop_{ch.input}")

    # ---- the way back ---------------------------------------------------------------------
    def to_target(self, labels: np.ndarray) -> np.ndarray:
        """nnU-Net's labels (on the grid of the first file) -> uint8 labels on the first input's grid."""
        labels = np.asarray(labels).astype(np.uint8)
        if self.crop is not None:
            return self.crop.paste_back(labels).array
        return labels

    @property
    def first_file_grid(self) -> Image:
        """The grid of ``files[0]`` as nnU-Net reads it: the crop (seed 004) or channel 0's image."""
        if self.crop is not None:
            return self.crop.ct
        return self.images[self.decl.channels[0].image]

    def region_zyx(self, context_mm: float) -> list | None:
        """The boxes (+ ``context_mm``) as index slices (z, y, x) on :attr:`first_file_grid`, for
        ``predict_nnunet_case(restrict_zyx=...)``; ``None`` without boxes (the whole image runs).
        Boxes wholly outside that grid (outside a seed-004 crop) are left out."""
        boxes = self.boxes or self.lesion_boxes()
        if not boxes:
            return None
        out = []
        for box in boxes:
            try:
                out.append(box_to_index_slices(box.expanded(context_mm) if context_mm else box,
                                               self.first_file_grid))
            except InputError:      # wholly outside the crop: nothing of it is predicted
                continue
        return out

    def restrict(self, labels: np.ndarray, context_mm: float) -> np.ndarray:
        """Labels outside the boxes (+ ``context_mm``) set to 0 (``--restrict-to-boxes``)."""
        from ..prompts.boxes import boxes_to_mask

        boxes = self.boxes or self.lesion_boxes()
        if not boxes:
            return labels
        out = labels.copy()
        out[~boxes_to_mask(boxes, self.target, margin_mm=context_mm)] = 0
        return out
