"""The panel's Review and Export sections.

A helper of ``HNTumorSegWidget`` (see :mod:`.panel`). Review shows the result's volumes and
lesions (and, with a reference segmentation, the comparison) as tables in the four-up table
layout (``HNTumorSegLogic.review``). Export writes the chosen formats to the chosen folder
(``HNTumorSegLogic.export``; DICOM SEG and RTSTRUCT reference the source series found through
the DICOM database, and are added back to it), never over an input.
"""

from __future__ import annotations

import slicer

from .logic import add_to_dicom_database, dicom_files_of
from .panel import Panel, _


class ReviewPanel(Panel):
    def __init__(self, widget):
        super().__init__(widget)
        self.ui.reviewButton.connect("clicked(bool)", self.onReview)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)

    def resultAndReference(self):
        seg = self.ui.segmentationSelector.currentNode()
        ref = seg.GetNodeReference(seg.GetReferenceImageGeometryReferenceRole()) if seg else None
        if seg is None or ref is None:
            raise ValueError(_("Select a segmentation made on a volume (Review section)."))
        return seg, ref

    def onReview(self):
        with slicer.util.tryWithErrorDisplay(_("Could not review the segmentation."), waitCursor=True):
            seg, ref = self.resultAndReference()
            tables = self.widget.logic.review(seg, ref, reference=self.ui.referenceSelector.currentNode())
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(
                (tables.get("comparison") or tables["lesions"]).GetID())
            slicer.app.applicationLogic().PropagateTableSelection()

    def onExport(self):
        """Write the checked formats; returns ``{format: path}`` (the self-test reads it back)."""
        logic = self.widget.logic
        formats = [f for f, box in (("nifti", self.ui.exportNiftiCheckBox), ("dicom_seg", self.ui.exportDicomSegCheckBox),
                                    ("rtstruct", self.ui.exportRtstructCheckBox), ("csv", self.ui.exportCsvCheckBox))
                   if box.checked]
        if {"dicom_seg", "rtstruct"} & set(formats) and not logic.ensureDependencies(log=self.log, action="export"):
            return None  # highdicom / scikit-image come with the first-run install
        files = None
        with slicer.util.tryWithErrorDisplay(_("Could not export."), waitCursor=True):
            from HNTumorSegLib.scene.review import export_folder

            folder = export_folder(self.ui.exportDirectoryPathLineEdit.currentPath, absolute=True)  # empty: one line
            seg, ref = self.resultAndReference()
            files = logic.export(seg, ref, folder, formats,
                                 source_files=dicom_files_of(ref))
            add_to_dicom_database([files[k] for k in ("dicom_seg", "rtstruct") if k in files])
            slicer.util.infoDisplay(_("Written:") + "\n" + "\n".join(str(f) for f in files.values()))
        return files
