"""Arithmetic for the phantom generator that gives the same bits on every CPU.

Why: the Sample Data files are phantoms that ``scripts/make_sample_data.py`` regenerates and
``Testing/test_sample_data.py`` compares voxel for voxel. Two things in plain numpy/scipy are
*not* the same on every CPU in the last bit, and a later ``round()`` turns a last-bit change
into a voxel that differs by 1 (seen on an AMD EPYC: 3 T2 voxels):

* matrix products (``@``, ``dot``, ``linalg.norm`` of a vector) go through OpenBLAS, whose
  kernel (and so its summation order and use of fused multiply-add) is chosen per CPU model;
* ``np.exp``, ``np.cos``, ``np.sin`` of float64 take an AVX-512 code path on CPUs that have
  it and the C library elsewhere (likewise SciPy's Gaussian kernel, built with ``np.exp``).

IEEE 754 makes ``+ - * /``, ``sqrt``, ``rint``, ``floor`` and ``ldexp`` exact-to-the-rounding,
so a fixed sequence of numpy element-wise operations gives the same bits everywhere, whatever
SIMD width runs it. Everything here is built from those only: exp / cos / sin by range
reduction and a fixed polynomial (fdlibm's coefficients, about 1 ulp in float64), products of
3-vectors written out term by term, a Gaussian blur and an axis-aligned linear resampling
with an explicit order of summation. Random numbers come from ``numpy.random.Generator``
(PCG64 and integer/float arithmetic; its normal sampler calls the C library's ``exp``/``log1p``
only to accept a rare sample in the tails, the same function on every x86-64 glibc).

``Testing/test_phantoms_exact.py`` checks the phantoms come out bit-identical when another
OpenBLAS kernel and numpy's baseline SIMD run them.

Example:
    >>> float(cos(np.array(0.0))), float(exp(np.array(0.0)))
    (1.0, 1.0)
    >>> bool(abs(float(exp(np.array(1.0))) - np.e) < 1e-15)
    True
"""

from __future__ import annotations

import math

import numpy as np

# pi/2 split so that k * _PIO2_HI is exact for |k| < 2**20 (fdlibm's pio2_1 / pio2_1t)
_TWO_OVER_PI = 6.36619772367581382433e-01
_PIO2_HI = 1.57079632673412561417e+00
_PIO2_LO = 6.07710050650619224932e-11
# fdlibm __kernel_sin / __kernel_cos on |r| <= pi/4
_SIN = (-1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
        2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10)
_COS = (4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
        -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11)
# ln 2 split the same way; exp(r) on |r| <= ln2/2 by its Taylor series to r**13 (error < 1e-17)
_INV_LN2 = 1.44269504088896338700e+00
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_EXP_TERMS = tuple(1.0 / math.factorial(n) for n in range(13, -1, -1))


def _horner(z: np.ndarray, coefficients) -> np.ndarray:
    """c0 + z * (c1 + z * (c2 + ...)), evaluated in place."""
    acc = z * coefficients[-1]
    acc += coefficients[-2]
    for c in coefficients[-3::-1]:
        acc *= z
        acc += c
    return acc


def _quadrant(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x = q * pi/2 + r`` with |r| <= pi/4; returns (r, q mod 4)."""
    k = np.rint(x * _TWO_OVER_PI)
    r = x - k * _PIO2_HI
    r -= k * _PIO2_LO
    return r, k.astype(np.int64) & 3


def _sin_cos_kernels(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = r * r
    s = _horner(z, _SIN)
    s *= z
    s *= r
    s += r
    c = _horner(z, _COS)
    c *= z * z
    c -= 0.5 * z
    c += 1.0
    return s, c


def cos(x) -> np.ndarray:
    """cos(x) in float64, the same bits on every CPU (arguments up to about 1e6)."""
    r, q = _quadrant(np.asarray(x, dtype=np.float64))
    s, c = _sin_cos_kernels(r)
    out = np.where(q & 1, s, c)          # q = 0: cos r, 1: -sin r, 2: -cos r, 3: sin r
    np.negative(out, out=out, where=((q + 1) & 2).astype(bool))
    return out


def sin(x) -> np.ndarray:
    """sin(x) in float64, the same bits on every CPU (arguments up to about 1e6)."""
    r, q = _quadrant(np.asarray(x, dtype=np.float64))
    s, c = _sin_cos_kernels(r)
    out = np.where(q & 1, c, s)          # q = 0: sin r, 1: cos r, 2: -sin r, 3: -cos r
    return np.where(q & 2, -out, out)


def exp(x) -> np.ndarray:
    """exp(x) in float64 for |x| < 700, the same bits on every CPU."""
    x = np.asarray(x, dtype=np.float64)
    k = np.rint(x * _INV_LN2)
    r = x - k * _LN2_HI
    r -= k * _LN2_LO
    return np.ldexp(_horner(r, _EXP_TERMS[::-1]), k.astype(np.int32))


def cube_root(x: float) -> float:
    """x ** (1/3) for x > 0 by Newton's method (``**`` calls the C library's ``pow``)."""
    y = 1.0
    for _ in range(60):
        y -= (y * y * y - x) / (3.0 * y * y)
    return y


def dot3(points: np.ndarray, vector) -> np.ndarray:
    """``points @ vector`` for points (..., 3), in float64, summed x + y + z in that order."""
    p = np.asarray(points, dtype=np.float64)
    v0, v1, v2 = (float(v) for v in vector)
    out = p[..., 0] * v0
    out += p[..., 1] * v1
    out += p[..., 2] * v2
    return out


def matvec3(points: np.ndarray, matrix) -> np.ndarray:
    """``points @ matrix.T`` (each point times the 3x3 ``matrix``) in float64, term by term."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.stack([dot3(points, m[i]) for i in range(3)], axis=-1)


def norm3(vector) -> float:
    """Euclidean length of a 3-vector (``linalg.norm`` of a vector uses BLAS)."""
    a, b, c = (float(v) for v in vector)
    return math.sqrt(a * a + b * b + c * c)


def gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """SciPy's ``gaussian_filter`` kernel (radius ``int(truncate * sigma + 0.5)``), normalised."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = exp(-0.5 / (sigma * sigma) * (x * x))
    return phi / math.fsum(phi.tolist())


def gaussian_blur(array: np.ndarray, sigma_zyx) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(array, sigma)`` ('reflect' edges), summed in float64 in a
    fixed order; returns the input's dtype."""
    out = np.asarray(array, dtype=np.float64)
    for axis, sigma in enumerate(sigma_zyx):
        if sigma <= 0:
            continue
        w = gaussian_weights(float(sigma))
        radius = (len(w) - 1) // 2
        pad = [(radius, radius) if a == axis else (0, 0) for a in range(out.ndim)]
        padded = np.pad(out, pad, mode="symmetric")  # numpy 'symmetric' is scipy 'reflect'
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for j, wj in enumerate(w):
            acc += wj * np.take(padded, np.arange(j, j + n), axis=axis)
        out = acc
    return out.astype(np.asarray(array).dtype)


def _axis_weights(n_out: int, out_origin: float, out_step: float, src_origin: float, src_step: float,
                  n_src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neighbours, weights and inside-mask of linear interpolation along one axis (ITK's rule:
    inside when the continuous index is in [-0.5, n - 0.5], neighbours clamped to the image)."""
    c = (out_origin + np.arange(n_out, dtype=np.float64) * out_step - src_origin) / src_step
    inside = (c >= -0.5) & (c <= n_src - 0.5)
    base = np.floor(c)
    w = c - base
    i0 = np.clip(base.astype(np.int64), 0, n_src - 1)
    i1 = np.clip(base.astype(np.int64) + 1, 0, n_src - 1)
    return i0, i1, w, inside


def resample_linear(image, reference, default_value: float = 0.0):
    """``image`` linearly interpolated onto ``reference``'s grid; both axis-aligned (identity
    direction). A separable, fixed-order version of ITK's linear resampling."""
    for g in (image, reference):
        if not np.array_equal(np.asarray(g.direction, float), np.eye(3)):
            raise ValueError("resample_linear needs axis-aligned grids (identity direction)")
    out = np.asarray(image.array, dtype=np.float64)
    inside = np.ones(reference.array.shape, bool)
    for axis_xyz in range(3):
        axis = 2 - axis_xyz  # array axis (z, y, x)
        i0, i1, w, ok = _axis_weights(reference.array.shape[axis], reference.origin[axis_xyz],
                                      reference.spacing[axis_xyz], image.origin[axis_xyz],
                                      image.spacing[axis_xyz], out.shape[axis])
        shape = [1, 1, 1]
        shape[axis] = -1
        w = w.reshape(shape)
        a = np.take(out, i0, axis=axis)
        out = a + w * (np.take(out, i1, axis=axis) - a)
        inside &= ok.reshape(shape)
    out[~inside] = default_value
    return reference.with_array(out.astype(np.asarray(image.array).dtype))
