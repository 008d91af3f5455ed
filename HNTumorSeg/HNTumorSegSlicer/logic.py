"""Slicer-side logic of HNTumorSeg: the parameter node, the module logic, start-up registrations.

* :class:`HNTumorSegParameterNode`: the panel's parameters through ``parameterNodeWrapper``
  (typed: enums, bools, node references); it mirrors
  ``HNTumorSegLib.scene.panel_params.PanelParameters`` field by field and default by default
  (``Testing/test_scene_panel.py`` compares the two, since this file runs only inside Slicer);
* :class:`HNTumorSegLogic`: the dependency set-up and the widget's one door to
  ``HNTumorSegLib.scene.logic.SegmentationSceneLogic``;
* :func:`loadTerminology`, :func:`registerSampleData`: connected to ``startupCompleted()``;
* :func:`add_to_dicom_database`, :func:`dicom_files_of`, :func:`dicom_file_lookup`: DICOM database glue
  (export; the PET's SUV for the biomarkers and the outcome prediction).
"""

from __future__ import annotations

import os
from typing import Optional, Union

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from HNTumorSegLib.vocab import AlignPet, Device, Quality, Task

try:  # Slicer's translation function (5.4+); older Slicer shows the English text
    from slicer.i18n import tr as _
except ImportError:  # pragma: no cover
    def _(text):
        return text

#: The module's folder (HNTumorSeg.py and its Resources/ lie there).
MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TERMINOLOGY_FILE = "SegmentationCategoryTypeModifier-HNTumorSeg.term.json"


def loadTerminology():
    """Our GTVp / GTVn codes in the terminology selector (Segment Editor, segment properties)."""
    terminologies = getattr(slicer.modules, "terminologies", None)
    if terminologies is not None:
        terminologies.logic().LoadTerminologyFromFile(os.path.join(MODULE_DIR, "Resources", TERMINOLOGY_FILE))


def registerSampleData():
    """The two phantom cases shipped in Resources/SampleData, in the Sample Data module's HNTumorSeg category."""
    import SampleData

    from HNTumorSegLib.scene.sample_data import CATEGORY, SAMPLE_CASES, register_kwargs

    logic = SampleData.SampleDataLogic
    if hasattr(logic, "registerCustomSampleDataCategory"):
        logic.registerCustomSampleDataCategory(CATEGORY, _("HNTumorSeg (synthetic phantoms)"))
    folder = os.path.join(MODULE_DIR, "Resources", "SampleData")
    icon = os.path.join(MODULE_DIR, "Resources", "Icons", "HNTumorSeg.png")
    for case in SAMPLE_CASES:
        logic.registerCustomSampleDataSource(**register_kwargs(case, folder, thumbnail=icon))


@parameterNodeWrapper
class HNTumorSegParameterNode:
    """The panel's parameters; mirrors HNTumorSegLib.scene.panel_params.PanelParameters (same fields and defaults)."""

    task: Task = Task.MIDRT
    model: str = ""
    device: Device = Device.AUTO
    quality: Quality = Quality.FAST
    use_boxes: bool = True
    restrict_to_boxes: bool = False
    save_uncertainty: bool = False
    t2: Optional[vtkMRMLScalarVolumeNode] = None
    ct: Optional[vtkMRMLScalarVolumeNode] = None
    pet: Optional[vtkMRMLScalarVolumeNode] = None
    prior: Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode, None] = None
    prior_structures: str = ""
    pre_rt: Optional[vtkMRMLScalarVolumeNode] = None
    align_pet: AlignPet = AlignPet.AUTO


def add_to_dicom_database(paths):
    """Exported DICOM objects into Slicer's DICOM database (when one is open): the DICOM browser and
    Slicer's own Send then see them beside their source series."""
    database = getattr(slicer, "dicomDatabase", None)
    if not paths or database is None or not database.isOpen:
        return
    for path in paths:
        database.insert(str(path))


def dicom_file_lookup():
    """``slicer.dicomDatabase.fileForInstance`` when a DICOM database is open, else None."""
    database = getattr(slicer, "dicomDatabase", None)
    return database.fileForInstance if database is not None and database.isOpen else None


def dicom_files_of(volume):
    """Files of the DICOM series a volume was loaded from (None when not from DICOM; an InputError
    when it was but its files cannot be found): HNTumorSegLib.scene.dicom_source.dicom_source_files."""
    from HNTumorSegLib.scene.dicom_source import dicom_source_files

    return dicom_source_files(volume, dicom_file_lookup())


class HNTumorSegLogic(ScriptedLoadableModuleLogic):
    """Slicer-side logic: the dependency set-up, and the widget's one door to the scene logic.

    The work is :class:`HNTumorSegLib.scene.logic.SegmentationSceneLogic` (no Qt, tested on
    slicer-core); the methods below hand each widget action to it, so the widget never reaches
    through to it. It is made on first use, not at import: Slicer imports this file at start-up,
    before the first-run install (:meth:`ensureDependencies`) may have run.
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._segmentation = None

    def getParameterNode(self):
        return HNTumorSegParameterNode(super().getParameterNode())

    @property
    def segmentation(self):
        """The :class:`~HNTumorSegLib.scene.logic.SegmentationSceneLogic` of the current scene."""
        if self._segmentation is None:
            from HNTumorSegLib.scene.logic import SegmentationSceneLogic

            # check_device: Apply probes the device and asks before a long CPU run, in its thread (issue 26)
            self._segmentation = SegmentationSceneLogic(slicer.mrmlScene, check_device=True)
        return self._segmentation

    @property
    def running(self):
        return self._segmentation is not None and self._segmentation.running

    def start(self, params):
        self.refreshDicomLookup()
        return self.segmentation.start(params)

    def refreshDicomLookup(self):
        """Give the scene logic the DICOM database's file lookup as it is now (a database opened after
        start-up counts): a PET loaded from DICOM then goes to the worker in SUV, converted from its
        files' headers (issue 24). Every Apply calls this, through the warm session too."""
        self.segmentation.file_for_instance = dicom_file_lookup()

    def poll(self):
        return self.segmentation.poll()

    def cancel(self):
        if self._segmentation is not None:
            self._segmentation.cancel()

    def deviceUsedText(self):
        from HNTumorSegLib.scene.run_estimate import device_used_text

        return device_used_text(self._segmentation.run) if self._segmentation is not None else ""

    def import_result(self):
        return self.segmentation.import_result()

    def boxes_from_prior(self, prior_node, reference_node, model="", structures=""):
        return self.segmentation.boxes_from_prior(prior_node, reference_node, model=model, structures=structures)

    def review(self, seg_node, reference_node, reference=None):
        return self.segmentation.review(seg_node, reference_node, reference=reference)

    def export(self, seg_node, reference_node, out_dir, formats, source_files=None):
        return self.segmentation.export(seg_node, reference_node, out_dir, formats, source_files=source_files)

    def ensureDependencies(self, log=print, action="apply"):
        """Ask once, install what ``action`` needs (HNTumorSegLib.install); False (after saying why) when it cannot."""
        from HNTumorSegLib.install import (TORCH_ACTIONS, DependencyError, ensure_dependencies, requirements_for,
                                           slicer_hooks)

        try:
            report = ensure_dependencies(slicer_hooks(log=log), requirements_for(action),
                                         torch=action in TORCH_ACTIONS)
        except DependencyError as exc:
            slicer.util.errorDisplay(_("HNTumorSeg cannot run yet: {reason}").format(reason=exc))
            return False
        for note in report.notes:
            log(note)
        return True
