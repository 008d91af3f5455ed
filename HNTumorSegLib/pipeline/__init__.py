"""The segmentation pipeline: one task = prompts -> channels -> inference -> clean-up -> outputs.

* :mod:`.request` - :class:`SegmentRequest` (command line, ``request.json`` and Python in one
  dataclass) and :class:`SegmentResult`;
* :mod:`.validate` - every check of a request before any work (one-line ``InputError``);
* :mod:`.tasks` - what each task (``prert``, ``midrt``, ``petct``) does before inference;
* :mod:`.channels` - the network's input channels from a model card (shared with training);
* :mod:`.outputs` - all-or-nothing writing and the way back to the output grid;
* :mod:`.run` - :func:`run_segmentation`.

torch is imported only when a run starts (never at ``import HNTumorSegLib.pipeline``).

Example:
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.pipeline import SegmentRequest, run_segmentation
    >>> case = make_midrt_case(seed=1)            # a phantom patient; the bundled demo model
    >>> _ = write_image(case["midRT_T2"], "mid_T2.nii.gz"), write_image(case["preRT_mask_registered"], "pre_mask_reg.nii.gz")
    >>> res = run_segmentation(SegmentRequest(model="demo-midrt", input_paths={"T2": "mid_T2.nii.gz"},
    ...                                       prior_path="pre_mask_reg.nii.gz", output_path="labels.nii.gz"))
    >>> res.files
    {'labels': 'labels.nii.gz'}
"""

from .request import SegmentRequest, SegmentResult


def run_segmentation(request, progress=None, low_memory: bool = False):
    """See :func:`HNTumorSegLib.pipeline.run.run_segmentation` (imported lazily: it pulls in scipy and torch)."""
    from .run import run_segmentation as _run

    return _run(request, progress=progress, low_memory=low_memory)


__all__ = ["SegmentRequest", "SegmentResult", "run_segmentation"]
