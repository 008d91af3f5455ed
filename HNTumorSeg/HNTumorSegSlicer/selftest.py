"""HNTumorSeg's self-test inside Slicer ("Reload and Test", and ctest in a build tree).

Two parts, both of which FAIL when they cannot run (no pytest, no test files, no dependencies):
a self-test that tested nothing must not pass.

1. ``test_suite``: the library's scene tests (``Testing/test_scene*.py``, ``test_export*.py``,
   ``test_sample_data.py``) with pytest, from the source tree or from ``HNTumorSegTesting``
   (copied into the build tree and installed beside the module by HNTumorSeg/CMakeLists.txt);
2. ``test_panel_on_phantom``: the panel itself, kept small: the Sample Data mid-RT phantom,
   boxes from the prior, the bundled demo model through the background worker, review, export.
"""

from __future__ import annotations

import os

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

#: The module's folder (HNTumorSeg.py lies there; HNTumorSegTesting beside it in a build tree).
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class HNTumorSegTest(ScriptedLoadableModuleTest):
    """Inside Slicer: the library's scene tests (pytest), then the panel itself on a Sample Data phantom."""

    def runTest(self):
        self.setUp()
        self.test_suite()
        self.setUp()
        self.test_panel_on_phantom()

    def setUp(self):
        slicer.mrmlScene.Clear()

    def test_suite(self):
        # source tree: <repo>/Testing; build tree and installed extension: HNTumorSegTesting beside the module
        candidates = (os.path.join(os.path.dirname(_HERE), "Testing"), os.path.join(_HERE, "HNTumorSegTesting"),
                      os.path.join(os.path.dirname(_HERE), "HNTumorSegTesting"))
        testing = next((d for d in candidates if os.path.isdir(d)), "")
        try:
            import pytest
        except ImportError:
            self.fail("pytest is not installed in Slicer's Python: run slicer.util.pip_install('pytest') "
                      "in the Python console, then run this self-test again")
        self.assertTrue(testing, f"the HNTumorSeg test files are not in any of {candidates}")
        import glob

        files = sorted(glob.glob(os.path.join(testing, "test_scene*.py")) + glob.glob(os.path.join(testing, "test_export*.py"))
                       + glob.glob(os.path.join(testing, "test_sample_data.py")))
        self.assertTrue(files, f"no test files in {testing}")
        code = pytest.main(["-q", "-m", "not slow", "-p", "no:cacheprovider", *files])
        self.assertEqual(int(code), 0, "the HNTumorSeg test suite failed (see the Python console)")
        self.delayDisplay("HNTumorSeg tests passed")

    def test_panel_on_phantom(self):
        """Sample Data phantom -> boxes from the prior -> demo model in the worker -> review -> export."""
        import tempfile
        import time

        import SampleData
        from HNTumorSegSlicer.logic import registerSampleData
        from HNTumorSegLib.vocab import Device, Task

        registerSampleData()
        loaded = SampleData.SampleDataLogic().downloadSamples("HNTumorSeg mid-RT phantom")
        self.assertEqual(len(loaded), 2, "the mid-RT phantom did not load (T2 + prior)")
        slicer.util.selectModule("HNTumorSeg")
        widget = slicer.util.getModuleWidget("HNTumorSeg")
        p = widget._parameterNode
        p.task = Task.MIDRT
        widget.inputsPanel.onAutoAssign()
        self.assertIsNotNone(p.t2, "Assign inputs by name did not pick the phantom's T2")
        self.assertIsNotNone(p.prior, "Assign inputs by name did not pick the phantom's prior")
        widget.ui.modelComboBox.setEditText("demo-midrt")
        self.assertEqual(p.model, "demo-midrt")
        self.assertIn("Licence: Apache-2.0", widget.ui.modelInfoLabel.text)
        p.device = Device.CPU
        widget.inputsPanel.onBoxesFromPrior()
        self.assertGreaterEqual(widget.ui.boxListWidget.count, 2)
        widget.runPanel.onApplyOrCancel()
        self.assertTrue(widget.logic.running, "the segmentation did not start (dependencies installed?)")
        t_end = time.time() + 600
        while widget.runPanel.timer.isActive() and time.time() < t_end:
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertFalse(widget.logic.running)
        seg = widget.ui.segmentationSelector.currentNode()
        self.assertIsNotNone(seg, "no segmentation was imported: " + widget.ui.logTextEdit.toPlainText()[-500:])
        self.assertEqual(seg.GetSegmentation().GetNumberOfSegments(), 2)
        self.assertIn("CPU", widget.ui.deviceUsedLabel.text)
        widget.ui.referenceSelector.setCurrentNode(p.prior)
        widget.reviewPanel.onReview()
        self.assertIsNotNone(slicer.mrmlScene.GetFirstNodeByName("HNTumorSeg lesions"))
        out = tempfile.mkdtemp(prefix="hntumorseg-selftest-")
        widget.ui.exportDirectoryPathLineEdit.currentPath = out
        for box, on in ((widget.ui.exportNiftiCheckBox, True), (widget.ui.exportCsvCheckBox, True),
                        (widget.ui.exportDicomSegCheckBox, False), (widget.ui.exportRtstructCheckBox, False)):
            box.checked = on
        files = widget.reviewPanel.onExport()
        self.assertEqual(set(files), {"nifti", "csv"})
        self.assertTrue(all(os.path.isfile(f) for f in files.values()))
        self.delayDisplay("HNTumorSeg panel test passed")
