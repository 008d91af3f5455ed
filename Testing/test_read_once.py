"""Issue 27, read once: one decode per input per request, and the same labels as the old path.

* :func:`read_image` decompresses a NIfTI file once (its checks on the decoded voxels) and takes only
  the geometry from ITK: no ``sitk.ReadImage`` of the voxels, and the array equals SimpleITK's for
  every plain type, both byte orders, .nii and .nii.gz;
* nnU-Net folders take the images in memory (``DefaultPreprocessor.run_case_npy``), not the files
  read again: same labels and probabilities as from the files, on the nnU-Net fixture folder;
* the demo models (demo-midrt, demo-petct) give the same labels through the new reader as through
  the old one (SimpleITK reading the voxels), voxel for voxel.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from HNTumorSegLib import image as image_mod
from HNTumorSegLib import image_checks
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import read_image, write_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sitk_file(path, dtype, seed=0):
    rng = np.random.default_rng(seed)
    arr = (rng.normal(0, 60, (6, 7, 9))).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.7, 2.0))
    img.SetOrigin((1.5, -2.0, 3.25))
    img.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture
def count_decodes(monkeypatch):
    """Counts decompressions of files and refuses ITK reading the voxels of a NIfTI file."""
    calls = []
    real_open = image_checks.open_decompressed

    def counting_open(path):
        calls.append(str(path))
        return real_open(path)

    def no_voxel_read(*args, **kwargs):
        raise AssertionError(f"sitk.ReadImage{args} decodes the file a second time")

    monkeypatch.setattr(image_checks, "open_decompressed", counting_open)
    monkeypatch.setattr(image_mod.sitk, "ReadImage", no_voxel_read)
    return calls


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "uint16", "int32", "float32", "float64"])
def test_read_image_decodes_once_and_equals_simpleitk(tmp_path, dtype, suffix):
    path = _sitk_file(tmp_path / f"x{suffix}", dtype)
    ref = sitk.ReadImage(str(path))
    calls = []
    real_open, real_read = image_checks.open_decompressed, image_mod.sitk.ReadImage
    try:
        image_checks.open_decompressed = lambda p: (calls.append(p), real_open(p))[1]
        image_mod.sitk.ReadImage = lambda *a, **k: (_ for _ in ()).throw(AssertionError("second decode"))
        ours = read_image(path)
    finally:
        image_checks.open_decompressed, image_mod.sitk.ReadImage = real_open, real_read
    assert len(calls) == 1
    want = sitk.GetArrayFromImage(ref)
    assert ours.array.dtype == want.dtype and np.array_equal(ours.array, want)
    assert ours.array.flags.writeable
    assert ours.spacing == ref.GetSpacing() and ours.origin == ref.GetOrigin()
    assert tuple(ours.direction.flatten()) == ref.GetDirection()
    assert ours.source == str(path)


def test_big_endian_and_scaled_files_read_as_simpleitk(tmp_path):
    nib = pytest.importorskip("nibabel")
    arr = np.random.default_rng(3).normal(0, 50, (6, 7, 9))
    be = tmp_path / "be.nii.gz"
    nib.save(nib.Nifti1Image(arr.astype(">f4"), np.diag([0.5, 0.7, 2.0, 1.0])), str(be))
    scaled = tmp_path / "scaled.nii.gz"
    img = nib.Nifti1Image(arr.astype("<i2"), np.diag([0.5, 0.7, 2.0, 1.0]))
    img.header.set_slope_inter(2.0, 1.0)       # ITK applies the scaling: ITK reads this one itself
    nib.save(img, str(scaled))
    for path in (be, scaled):
        ref = sitk.ReadImage(str(path))
        ours = read_image(path)
        np.testing.assert_array_equal(ours.array, sitk.GetArrayFromImage(ref))
        assert ours.array.dtype == sitk.GetArrayFromImage(ref).dtype
    assert read_image(be).source is not None and read_image(scaled).source is None


def test_checks_still_run_on_the_one_decode(tmp_path, count_decodes):
    nan = sitk.GetImageFromArray(np.where(np.arange(6 * 7 * 9).reshape(6, 7, 9) == 5, np.nan, 1.0).astype(np.float32))
    sitk.WriteImage(nan, str(tmp_path / "nan.nii.gz"))
    with pytest.raises(InputError, match="NaN or infinite"):
        read_image(tmp_path / "nan.nii.gz")
    path = _sitk_file(tmp_path / "t.nii.gz", "int16")
    data = path.read_bytes()
    (tmp_path / "short.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_image(tmp_path / "short.nii.gz")
    raw = _sitk_file(tmp_path / "raw.nii", "int16")
    (tmp_path / "short.nii").write_bytes(raw.read_bytes()[:-10])
    with pytest.raises(InputError, match="truncated"):
        read_image(tmp_path / "short.nii")
    assert len(count_decodes) == 3


def _old_reader(monkeypatch):
    """The path before issue 27: SimpleITK decodes the voxels (after the checks' own decode)."""
    monkeypatch.setattr(image_mod, "_image_from_nifti", lambda nifti, p: None)


@pytest.mark.parametrize("task", ["midrt", pytest.param("petct", marks=pytest.mark.slow)])   # petct: ~140 s loaded
def test_demo_models_same_labels_as_the_old_reader(tmp_path, monkeypatch, task):
    from HNTumorSegLib.phantoms import make_midrt_case, make_petct_case
    from HNTumorSegLib.pipeline import SegmentRequest, run_segmentation
    from pipeline_testlib import DEMO_MIDRT, DEMO_PETCT

    if task == "midrt":
        case = make_midrt_case(seed=2)
        t2 = write_image(case["midRT_T2"], tmp_path / "T2.nii.gz")
        prior = write_image(case["preRT_mask_registered"], tmp_path / "prior.nii.gz")
        fields = dict(model=str(DEMO_MIDRT), task="midrt", input_paths={"T2": str(t2)}, prior_path=str(prior))
    else:
        case = make_petct_case(seed=2)
        ct = write_image(case["CT"], tmp_path / "CT.nii.gz")
        pet = write_image(case["PET"], tmp_path / "PET.nii.gz")
        fields = dict(model=str(DEMO_PETCT), input_paths={"CT": str(ct), "PET": str(pet)})
    new = run_segmentation(SegmentRequest(output_path=str(tmp_path / "new.nii.gz"), **fields))
    with monkeypatch.context() as m:
        _old_reader(m)
        old = run_segmentation(SegmentRequest(output_path=str(tmp_path / "old.nii.gz"), **fields))
    a = read_image(new.files["labels"], label=True).array
    b = read_image(old.files["labels"], label=True).array
    assert a.any() and np.array_equal(a, b)


def test_nnunet_folder_takes_arrays_same_labels(tiny_nnunet_results, monkeypatch):
    pytest.importorskip("nnunetv2")
    from nnunet_fixture import tiny_nnunet_test_cases
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from HNTumorSegLib.inference.nnunet_inference import load_nnunet_model, predict_nnunet_case

    files = tiny_nnunet_test_cases(tiny_nnunet_results)[0]
    model = load_nnunet_model(tiny_nnunet_results, folds=(0, 1))
    from_files = predict_nnunet_case(model, files, device="cpu", tta=False, return_probabilities=True)
    images = [read_image(f) for f in files]

    def no_file_read(self, *args, **kwargs):
        raise AssertionError("nnU-Net read the files again")

    monkeypatch.setattr(SimpleITKIO, "read_images", no_file_read)
    from_arrays = predict_nnunet_case(model, images, device="cpu", tta=False, return_probabilities=True)
    np.testing.assert_array_equal(from_arrays.segmentation, from_files.segmentation)
    np.testing.assert_array_equal(from_arrays.probabilities, from_files.probabilities)
    assert from_files.segmentation.any()
    for key in ("spacing", "bbox_used_for_cropping", "shape_before_cropping",
                "shape_after_cropping_and_before_resampling"):
        assert np.array_equal(np.asarray(from_arrays.properties[key]), np.asarray(from_files.properties[key])), key


# ---- a new worker reads its inputs ahead, while it imports torch and loads the model ---------------
def test_handover_gives_a_value_once_waits_for_it_and_leaves_errors_to_the_reader():
    import threading

    from HNTumorSegLib.warm_cache import Handover, cached

    release, made = threading.Event(), []

    def slow():
        release.wait(60)
        made.append(threading.current_thread().name)
        return "decoded"

    handover = Handover()
    with handover.active():
        handover.start("t2", slow)
        handover.start("t2", slow)                                # once per key
        threading.Timer(0.2, release.set).start()
        assert cached("t2", lambda: "made by the reader") == "decoded"   # waited for the thread
        assert cached("t2", lambda: "made by the reader") == "made by the reader"   # given once
        handover.start("bad", lambda: 1 / 0)
        with pytest.raises(InputError, match="the reader's own error"):
            cached("bad", lambda: (_ for _ in ()).throw(InputError("the reader's own error", None, "fix")))
    assert made == ["hntumorseg-read-ahead"]
    assert cached("t2", lambda: "no handover active") == "no handover active"


def test_worker_reads_its_inputs_ahead_once_and_errors_stay_the_same(tmp_path, count_decodes, monkeypatch):
    import threading

    from HNTumorSegLib import worker
    from HNTumorSegLib.phantoms import make_midrt_case
    from HNTumorSegLib.pipeline import SegmentRequest
    from HNTumorSegLib.pipeline.validate import validate_request
    from pipeline_testlib import DEMO_MIDRT

    case = make_midrt_case(seed=2)
    t2 = write_image(case["midRT_T2"], tmp_path / "T2.nii.gz")
    prior = write_image(case["preRT_mask_registered"], tmp_path / "prior.nii.gz")
    threads = []
    real = image_checks.open_decompressed
    monkeypatch.setattr(image_checks, "open_decompressed",
                        lambda p: threads.append(threading.current_thread().name) or real(p))
    req = SegmentRequest(model=str(DEMO_MIDRT), task="midrt", input_paths={"T2": str(t2)}, prior_path=str(prior),
                         output_path=str(tmp_path / "labels.nii.gz"))
    with worker.read_inputs_ahead(req):
        validated = validate_request(req)
    t2_reads = [p for p in count_decodes if p.endswith("T2.nii.gz")]
    assert len(t2_reads) == 1 and "hntumorseg-read-ahead" in threads        # decoded once, in the thread
    assert np.array_equal(validated.images["T2"].array, read_image(t2).array)
    assert validated.images["T2"].array.flags.writeable                       # nothing frozen
    data = t2.read_bytes()
    (tmp_path / "short.nii.gz").write_bytes(data[: len(data) // 2])
    bad = SegmentRequest(model=str(DEMO_MIDRT), task="midrt", input_paths={"T2": str(tmp_path / "short.nii.gz")},
                         prior_path=str(prior), output_path=str(tmp_path / "labels2.nii.gz"))
    with pytest.raises(InputError, match="truncated or corrupt") as ahead:
        with worker.read_inputs_ahead(bad):
            validate_request(bad)
    with pytest.raises(InputError, match="truncated or corrupt") as plain:
        validate_request(bad)
    assert ahead.value.one_line() == plain.value.one_line()
