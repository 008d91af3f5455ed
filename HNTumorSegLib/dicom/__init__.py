"""DICOM in and out without Slicer: find the series in a folder, check and choose one, read it
(PET in SUV), and send objects to a DICOM node.

* :mod:`.scan` - every DICOM object under a folder, grouped by series (README, DICOMDIR,
  RTSTRUCT/SEG/RTPLAN and broken files are told apart from image series);
* :mod:`.geometry` - the checks a series must pass before we read it or export on it (one
  series, study and frame of reference; one orientation; even slice spacing; no gantry tilt;
  no Enhanced multi-frame) and its voxel grid;
* :mod:`.select` - which series: the one named, else the only image series, else the one whose
  grid a label map lies on; otherwise one line listing the series found;
* :mod:`.pixels` - the voxels of a checked series; :mod:`.read` - `read_volume`: a file or a DICOM folder;
* :mod:`.suv` - PET Bq/mL (or Philips counts) to SUVbw per vendor (:func:`.suv.suv_conversion`);
  :mod:`.pet_units` - the one PET path every PET takes (:func:`.pet_units.pet_to_suv`: SUVbw and
  where the unit came from; an image file that does not look like SUV refused);
* :mod:`.send` - C-STORE to a DICOM node (pynetdicom);
* :mod:`.contours_in` - an RTSTRUCT or SEG (or a label map) wherever a label map is taken:
  structures to labels (:mod:`.structures`), contours rasterised (:mod:`.rtstruct_in`), SEG frames
  placed (:mod:`.seg_in`) on the referenced series' grid.

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> case = make_prert_case(seed=3, shape=(4, 32, 32))                # a phantom T2 as a DICOM study
    >>> _ = write_dicom_series(case["T2"], "study/T2", modality="MR", series_description="T2 TSE")
    >>> from HNTumorSegLib.dicom.select import select_series
    >>> labels = case["mask"]
    >>> series = select_series("study/", labels=labels)       # the series the label map lies on
    >>> series.uid, len(series.files)
    ('1.2.826.0.1.3680043.8.498...', 4)
"""
