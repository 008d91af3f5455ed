"""`hntumorseg batch --layout dicom --dicom-out`: a cohort of DICOM study folders in, RTSTRUCT + SEG out.

Two patients, each a study folder holding a conformant T2 series, a README and (one of them)
an old RTSTRUCT; a real (randomly initialised) pre-RT model segments them in worker processes;
each case then gets ``<ID>_rtstruct.dcm`` and ``<ID>_seg.dcm`` on its own series when its label
map holds a lesion (an empty one gets none, said on stderr). DICOM mistakes of any case end the
run before any work.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")

from dicom_testlib import dciodvfy  # noqa: E402
from pipeline_testlib import make_random_model  # noqa: E402

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.dicom.read import read_volume  # noqa: E402
from HNTumorSegLib.export.rtstruct import read_rtstruct_labels  # noqa: E402
from HNTumorSegLib.image import read_image  # noqa: E402
from HNTumorSegLib.phantoms import make_prert_case  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import DicomPatient, write_dicom_series  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_cohort")
    uids = {}
    for i, case_id in enumerate(("PAT001", "PAT002")):
        case = make_prert_case(seed=20 + i, shape=(12, 48, 48), spacing=(1.2, 1.2, 3.0), n_nodes=1)
        files = write_dicom_series(case["T2"], root / "data" / case_id / "T2", "MR",
                                   patient=DicomPatient(name=f"Patient^{case_id}", patient_id=case_id))
        (root / "data" / case_id / "README.txt").write_text("exported\n")
        uids[case_id] = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    model = make_random_model(root / "model", "prert", [{"name": "T2", "normalisation": {"type": "zscore"}}])
    return root, uids, model


@pytest.mark.slow  # ~20-30 s on 2 shared cores: CI runs it, the default run skips it
def test_batch_writes_dicom_per_case(cohort, capsys):
    root, uids, model = cohort
    out = root / "out"
    rc = main(["batch", "--layout", "dicom", "--data", str(root / "data"), "--model", str(model), "--task", "prert",
               "--out", str(out), "--device", "cpu", "--dicom-out", "--holes", "keyhole", "--no-report"])
    err = capsys.readouterr().err
    assert rc == 0, err
    written = 0
    for case_id, uid in uids.items():
        labels = read_image(out / f"{case_id}.nii.gz", label=True)
        assert labels.same_grid(read_volume(root / "data" / case_id))
        rt, seg = out / f"{case_id}_rtstruct.dcm", out / f"{case_id}_seg.dcm"
        if not labels.array.any():
            assert not rt.exists() and not seg.exists() and "no GTV found" in err
            continue
        written += 1
        for path in (rt, seg):
            assert dciodvfy(path)[0] == []
            ds = pydicom.dcmread(path)
            assert ds.PatientID == case_id
        ref = pydicom.dcmread(rt).ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
        assert ref.RTReferencedSeriesSequence[0].SeriesInstanceUID == uid
        np.testing.assert_array_equal(read_rtstruct_labels(rt, labels).array, labels.array)
    assert written >= 1  # the random model marks something in at least one case


def test_dicom_mistakes_stop_the_cohort_before_any_work(cohort, tmp_path, capsys):
    root, _, model = cohort
    argv = ["batch", "--data", str(root / "data"), "--model", str(model), "--task", "prert", "--device", "cpu",
            "--dicom-out", "--no-report"]
    assert main(argv + ["--layout", "folder", "--out", str(tmp_path / "a")]) == 2
    assert "--dicom-out needs --layout dicom" in capsys.readouterr().err
    # a second series in one case folder: which one is the source? exit 2 listing them, nothing run
    case = make_prert_case(seed=30, shape=(12, 48, 48), spacing=(1.2, 1.2, 3.0), n_nodes=1)
    import shutil

    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    write_dicom_series(case["T2"], data / "PAT002" / "T1", "MR", series_description="second")
    argv[2] = str(data)
    assert main(argv + ["--layout", "dicom", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "PAT002" in err[0] and "holds 2 image series" in err[0], err
    assert not (tmp_path / "b" / "PAT001.nii.gz").exists()
