"""HNTumorSegLib: the pure-Python core of the HNTumorSeg 3D Slicer extension.

Head-and-neck gross tumour volume segmentation for radiotherapy: GTVp (label 1) and
GTVn (label 2) on pre-RT / mid-RT T2w MRI and on PET/CT. Nothing in this package
imports Qt or ``slicer.app``; torch is imported lazily, only where inference runs.
"""

__version__ = "0.1.0"

LABELS = {"background": 0, "GTVp": 1, "GTVn": 2}
LABEL_NAMES = {1: "GTVp", 2: "GTVn"}
