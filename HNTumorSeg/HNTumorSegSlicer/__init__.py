"""Slicer-side parts of the HNTumorSeg module (need Slicer's Qt and MRML; the Qt-free core is HNTumorSegLib).

A package rather than files beside HNTumorSeg.py: Slicer tries to load every ``.py`` file of a
scripted-module folder as a module of its own.

* :mod:`.logic` - the parameter node (``parameterNodeWrapper``), the module logic, start-up
  registrations (terminology, Sample Data), DICOM database glue;
* the panel's sections, helpers of the widget sharing its ``ui`` (base class in :mod:`.panel`):
  :mod:`.inputs_panel` (task, images, prior, lesion boxes), :mod:`.model_panel` (model box,
  Download / Import), :mod:`.run_panel` (device, quality, Apply, progress), :mod:`.refine_panel`
  (warm session: update while editing, undo), :mod:`.review_panel` (review, export),
  :mod:`.outcome_panel` (the PET biomarker button and the "Outcome (research only)" section);
* :mod:`.selftest` - ``HNTumorSegTest``, the module's self-test.
"""
