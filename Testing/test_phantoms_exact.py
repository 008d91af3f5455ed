"""The phantom generator gives the same bits on every CPU (issue 21).

The Sample Data files are regenerated and compared voxel for voxel, so a last-bit difference
between CPU models (OpenBLAS picks its kernel per CPU, numpy picks an AVX-512 or AVX2 path for
exp/cos) must not exist anywhere on the way to a voxel: on an AMD EPYC three T2 voxels once
came out 1 higher. One machine can run the other CPUs' code paths: ``OPENBLAS_CORETYPE`` picks
OpenBLAS's kernel and ``NPY_DISABLE_CPU_FEATURES`` turns off numpy's dispatched SIMD paths. A
child process generates the shipped cases that way and every array, float ones included, must
equal this process's bit for bit.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from HNTumorSegLib.phantoms import exact

ROOT = Path(__file__).resolve().parent.parent
TESTING = Path(__file__).resolve().parent
# the child computes the same arrays as this process, with other code paths
CHILD = ("import sys; sys.path[:0] = sys.argv[2:]; import numpy as np, test_phantoms_exact as t; "
         "np.savez(sys.argv[1], **t.shipped_case_arrays())")


def shipped_case_arrays() -> dict[str, np.ndarray]:
    """Every array of the two shipped cases (scripts/make_sample_data.py, seed 0), and a probe
    that shows which code paths ran (a float32 matrix product through BLAS, a float64 exp)."""
    from HNTumorSegLib.phantoms import make_midrt_case, make_petct_case

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(64, 300)).astype(np.float32), rng.normal(size=(300, 64)).astype(np.float32)
    arrays = {"probe_matmul": a @ b, "probe_exp": np.exp(np.linspace(-20.0, 20.0, 4001))}
    for prefix, case in (("mid_", make_midrt_case(seed=0)), ("petct_", make_petct_case(seed=0))):
        arrays.update({prefix + key: image.array for key, image in case.items()})
    return arrays


def _numpy_dispatch_features() -> list[str]:
    """numpy's SIMD targets above its baseline that this CPU has (what the env var may turn off)."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy 1.x
        from numpy.core import _multiarray_umath as umath
    return [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f) and f not in umath.__cpu_baseline__]


def _generate_in_child(out: Path, env_extra: dict[str, str]) -> dict[str, np.ndarray]:
    env = {**os.environ, **env_extra}
    subprocess.run([sys.executable, "-c", CHILD, str(out), str(TESTING), str(ROOT)], env=env, check=True,
                   timeout=900)
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def test_phantoms_are_bit_identical_on_another_cpus_code_paths(tmp_path):
    here = shipped_case_arrays()
    other_env = {"NPY_DISABLE_CPU_FEATURES": " ".join(_numpy_dispatch_features())}
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    if x86:
        other_env["OPENBLAS_CORETYPE"] = "Prescott"  # OpenBLAS's plain SSE3 kernels: no FMA, 128-bit
    other = _generate_in_child(tmp_path / "other.npz", other_env)
    if x86:  # the child did run other code: a BLAS product comes out different there
        assert not np.array_equal(here["probe_matmul"], other["probe_matmul"])
    names = sorted(k for k in here if not k.startswith("probe_"))
    assert names == sorted(k for k in other if not k.startswith("probe_")) and len(names) == 9
    differ = {k: int(np.count_nonzero(here[k] != other[k])) for k in names}
    assert all(n == 0 for n in differ.values()), f"voxels that differ on the other code paths: {differ}"
    for k in names:
        assert here[k].dtype == other[k].dtype and here[k].tobytes() == other[k].tobytes(), k


def test_exact_functions_agree_with_numpy_to_an_ulp():
    x = np.linspace(-400.0, 400.0, 200001)
    assert np.max(np.abs(exact.cos(x) - np.cos(x))) <= 2.3e-16
    assert np.max(np.abs(exact.sin(x) - np.sin(x))) <= 2.3e-16
    y = np.linspace(-60.0, 60.0, 200001)
    assert np.max(np.abs(exact.exp(y) / np.exp(y) - 1.0)) <= 4.5e-16
    assert abs(exact.cube_root(0.343) - 0.7) < 1e-15 and abs(exact.cube_root(0.5) ** 3 - 0.5) < 1e-15
    rng = np.random.default_rng(0)
    pts, m = rng.normal(size=(100, 3)), rng.normal(size=(3, 3))
    assert np.allclose(exact.matvec3(pts, m), pts @ m.T, rtol=0, atol=1e-14)


def test_exact_blur_and_resampling_agree_with_scipy_and_itk():
    from scipy import ndimage

    from HNTumorSegLib.image import Image, resample_to

    rng = np.random.default_rng(3)
    arr = rng.normal(size=(20, 24, 28)).astype(np.float32)
    sigma = (0.85, 1.27, 0.5)
    assert np.allclose(exact.gaussian_blur(arr, sigma), ndimage.gaussian_filter(arr, sigma), atol=1e-6)
    src = Image(arr, (2.0, 2.0, 3.0), (-10.0, 5.0, 100.0))
    ref = Image(np.zeros((16, 13, 15), np.uint8), (4.0, 4.0, 4.0), (-9.3, 6.1, 98.2))
    ours = exact.resample_linear(src, ref, default_value=0.0)
    itk = resample_to(src, ref, interpolator="linear", default_value=0.0)
    assert ours.array.dtype == np.float32 and np.allclose(ours.array, itk.array, atol=1e-5)
