"""HNTumorSeg's self-test inside Slicer ("Reload and Test", and ctest in a build tree).

Two parts, both of which FAIL when they cannot run (no pytest, no test files, no dependencies):
a self-test that tested nothing must not pass.

1. ``test_suite``: the library's scene tests (:data:`SELFTEST_PATTERNS`) with pytest, from the
   source tree or from ``HNTumorSegTesting`` (copied into the build tree and installed beside the
   module by HNTumorSeg/CMakeLists.txt, with every helper module they import:
   ``Testing/test_selftest_files.py`` checks the copy list against the tests' imports);
2. ``test_panel_on_phantom``: the panel itself, kept small: the Sample Data mid-RT phantom,
   boxes from the prior, the bundled demo model through the background worker, review, export.

Slicer's Python has no pytest. The self-test installs it on request through the first-run
installer (``HNTumorSegLib.install``, action ``selftest``: one question, never a downgrade)
rather than running the tests with a runner of our own: the copied tests use pytest's fixtures,
marks, ``raises`` and the suite's conftest, which a small runner would only imitate, and a
self-test that ran the tests differently from CI could pass where CI fails. Headless runs
(ctest, ``--testing``: no one to answer the question) install it when
``HNTUMORSEG_SELFTEST_INSTALL_PYTEST=1`` is set, and otherwise fail saying so.
"""

from __future__ import annotations

import os

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

#: The module's folder (HNTumorSeg.py lies there; HNTumorSegTesting beside it in a build tree).
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The test files the self-test runs: the same globs as HNTumorSeg/CMakeLists.txt's copy list (checked).
SELFTEST_PATTERNS = ("test_scene*.py", "test_export*.py", "test_sample_data.py")
#: Set to 1 to let a headless self-test (ctest, --testing) install pytest without a question.
INSTALL_PYTEST_ENV = "HNTUMORSEG_SELFTEST_INSTALL_PYTEST"


def ensure_pytest(log=print) -> None:
    """pytest in Slicer's Python, installed on request through the first-run installer; raises when it cannot."""
    try:
        import pytest  # noqa: F401
        return
    except ImportError:
        pass
    from HNTumorSegLib.install import DependencyError, ensure_dependencies, requirements_for, slicer_hooks

    hooks = slicer_hooks(log=log)
    if slicer.app.testingEnabled():   # nobody to answer the question
        if os.environ.get(INSTALL_PYTEST_ENV) != "1":
            raise DependencyError(f"pytest is not installed in Slicer's Python: set {INSTALL_PYTEST_ENV}=1 to let the "
                                  "self-test install it, or run slicer.util.pip_install('pytest') once")
        hooks.confirm = lambda message, details: True
    ensure_dependencies(hooks, requirements_for("selftest"), torch=False)
    import importlib

    importlib.invalidate_caches()
    import pytest  # noqa: F401,F811  (raises ImportError here if the install did not give it)


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
            ensure_pytest()
        except ImportError as exc:   # installed, yet not importable
            self.fail(f"pytest is not available in Slicer's Python: {exc}")
        except Exception as exc:   # declined, no internet, headless without the opt-in
            self.fail(f"pytest is not available in Slicer's Python: {exc}")
        import pytest

        self.assertTrue(testing, f"the HNTumorSeg test files are not in any of {candidates}")
        import glob

        files = sorted(f for pattern in SELFTEST_PATTERNS for f in glob.glob(os.path.join(testing, pattern)))
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
