"""Slicer-side parts of the HNTumorSeg module (need Slicer's Qt and MRML; the Qt-free core is HNTumorSegLib).

A package rather than files beside HNTumorSeg.py: Slicer tries to load every ``.py`` file of a
scripted-module folder as a module of its own.

* :mod:`.logic` - the parameter node (``parameterNodeWrapper``), the module logic, start-up
  registrations (terminology, Sample Data), DICOM database glue;
* :mod:`.outcome_panel` - the PET biomarker button and the "Outcome (research only)" section;
* :mod:`.selftest` - ``HNTumorSegTest``, the module's self-test.
"""
