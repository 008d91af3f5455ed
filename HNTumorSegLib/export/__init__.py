"""Exports of a result: NIfTI label map, DICOM SEG, DICOM RTSTRUCT, segment statistics CSV.

No MRML here: every exporter takes a label map :class:`~HNTumorSegLib.image.Image` (labels
0 / 1 GTVp / 2 GTVn on the input's grid) and, for DICOM, the source series' files. The Slicer
module gets the label map from the segmentation node (:mod:`HNTumorSegLib.scene`) and calls these.

* :mod:`.nifti` - the challenges' label map convention;
* :mod:`.dicom_seg` - DICOM Segmentation (highdicom), binary, one segment per label present;
* :mod:`.rtstruct` - DICOM RT Structure Set written with pydicom (planar contours per slice);
* :mod:`.stats_csv` - per segment and per lesion statistics.
"""
