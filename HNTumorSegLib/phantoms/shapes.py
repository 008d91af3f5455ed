"""Building blocks of the synthetic phantoms: smooth random fields, irregular blobs, noise.

Everything here is *analytic*: a field is a function of continuous coordinates, not an
array, so the same lesion or texture can be evaluated on the pre-RT grid, on the mid-RT
grid through a deformation, or on a CT and a PET grid of different spacing, and always
describe the same object. All randomness comes from a ``numpy.random.Generator`` handed
in by the caller, so a phantom is fully determined by its seed; the arithmetic (``exact``)
gives the same bits on every CPU, so it is determined to the last bit.

Example:
    >>> rng = np.random.default_rng(0)
    >>> blob = Blob(centre=(0, 0, 0), radii=(10, 8, 12), field=FourierField(rng))
    >>> pts = np.stack(np.meshgrid(*[np.linspace(-20, 20, 41)] * 3, indexing="ij"), -1)
    >>> inside = blob.level(pts) < 1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import exact

_BLOCK = 32768  # points per block of FourierField evaluation


@dataclass
class FourierField:
    """A smooth random scalar field: a sum of a few random cosine waves, unit variance.

    ``freq`` is the range of wave numbers (radians per coordinate unit); with normalised
    lesion coordinates (the lesion surface at radius 1), 1.5..3.5 gives lumps a few per
    surface, like the lobulated outline of a real tumour.
    """

    rng: np.random.Generator | None = None
    n_modes: int = 8
    freq: tuple[float, float] = (1.5, 3.5)
    waves: np.ndarray = field(init=False)
    phases: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        rng = self.rng if self.rng is not None else np.random.default_rng(0)
        dirs = rng.normal(size=(self.n_modes, 3))
        dirs /= np.array([[exact.norm3(d)] for d in dirs])
        mags = rng.uniform(*self.freq, size=(self.n_modes, 1))
        self.waves = dirs * mags
        self.phases = rng.uniform(0, 2 * np.pi, size=self.n_modes)
        self.rng = None  # the generator is consumed; do not keep a reference

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Evaluate at ``points`` (..., 3); returns (...)."""
        points = np.asarray(points)
        flat = points.reshape(-1, 3)
        out = np.empty(len(flat), np.float32)
        scale = np.sqrt(self.n_modes / 2.0)  # a sum of n cosines with random phases has variance n/2
        # in blocks that stay in the CPU cache: the many passes of exact.cos are then ~10x faster
        for start in range(0, len(flat), _BLOCK):
            pts = flat[start:start + _BLOCK].astype(np.float64)
            acc = np.zeros(len(pts), np.float64)
            for k, phi in zip(self.waves, self.phases):
                arg = exact.dot3(pts, k)
                arg += phi
                acc += exact.cos(arg)
            out[start:start + _BLOCK] = acc / scale
        return out.reshape(points.shape[:-1])


@dataclass
class VectorField:
    """A smooth random displacement field in millimetres: three :class:`FourierField`.

    ``amplitude`` (x, y, z) is the standard deviation of each component; ``wavelength`` the
    typical length over which it changes (mm).
    """

    rng: np.random.Generator
    amplitude: tuple[float, float, float]
    wavelength: float = 60.0
    parts: list = field(init=False)

    def __post_init__(self) -> None:
        k = 2 * np.pi / self.wavelength
        self.parts = [FourierField(self.rng, n_modes=6, freq=(0.6 * k, 1.4 * k)) for _ in range(3)]
        self.rng = None

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return np.stack([a * f(points) for a, f in zip(self.amplitude, self.parts)], axis=-1)


@dataclass
class Blob:
    """An irregular lesion: a perturbed ellipsoid ``|(p - c) / r| + roughness * field < 1``.

    ``level(p)`` is below 1 inside, 1 on the surface, and grows outside, so a soft edge is
    ``sigmoid((1 - level) / softness)``. ``scaled(f)`` gives the same shape shrunk by the
    per-axis factors ``f`` (the noise is evaluated in normalised coordinates, so the outline
    keeps its lobes while shrinking).
    """

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    field: FourierField
    roughness: float = 0.18
    label: int = 1
    uptake: float = 1.0  # modality-specific brightness factor, set by the caller

    def level(self, points: np.ndarray) -> np.ndarray:
        q = (np.asarray(points, dtype=np.float32) - np.asarray(self.centre, np.float32)) / np.asarray(
            self.radii, np.float32)
        # the squares summed x + y + z in this order (``.sum(-1)`` leaves the order to numpy)
        r2 = q[..., 0] * q[..., 0]
        r2 += q[..., 1] * q[..., 1]
        r2 += q[..., 2] * q[..., 2]
        return np.sqrt(r2) + np.float32(self.roughness) * self.field(q)

    def bounds(self, margin: float = 1.6) -> tuple[np.ndarray, np.ndarray]:
        """An axis-aligned box (lo, hi) that surely holds the blob (in the blob's coordinates)."""
        r = np.asarray(self.radii) * (margin + self.roughness * 3)
        return np.asarray(self.centre) - r, np.asarray(self.centre) + r

    def scaled(self, factors, shift=(0.0, 0.0, 0.0)) -> "Blob":
        radii = tuple(float(r * f) for r, f in zip(self.radii, np.broadcast_to(factors, 3)))
        centre = tuple(float(c + s) for c, s in zip(self.centre, shift))
        return Blob(centre, radii, self.field, self.roughness, self.label, self.uptake)


def soft_membership(level: np.ndarray, softness: float = 0.08) -> np.ndarray:
    """0..1 weight that is 0.5 on the surface (``level == 1``): a partial-volume-like edge."""
    t = np.clip((1.0 - level) / np.float32(softness), -60.0, 60.0)  # no exp overflow far away
    # most points lie far outside (t clipped to -60): one exp for all of them
    far = t <= -60.0
    e = np.full(t.shape, exact.exp(60.0), np.float64)
    e[~far] = exact.exp(-t[~far])
    return (1.0 / (1.0 + e)).astype(np.float32)


def bias_field(rng: np.random.Generator, strength: float = 0.15) -> "BiasField":
    """A smooth multiplicative MRI bias field (coil sensitivity), see :class:`BiasField`."""
    return BiasField(rng.normal(scale=strength, size=3), rng.normal(scale=strength / 2, size=3))


@dataclass
class BiasField:
    """``exp(a . u + b . u**2)`` on coordinates ``u`` normalised to about -1..1."""

    linear: np.ndarray
    quadratic: np.ndarray

    def __call__(self, unit_points: np.ndarray) -> np.ndarray:
        u = np.asarray(unit_points, np.float32)
        power = exact.dot3(u, self.linear)
        power += exact.dot3(u * u, self.quadratic)
        return exact.exp(power).astype(np.float32)


def rician(rng: np.random.Generator, clean: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude-MRI noise: ``|clean + n1 + i n2|``, n1, n2 ~ N(0, sigma)."""
    n1 = rng.normal(scale=sigma, size=clean.shape).astype(np.float32)
    n2 = rng.normal(scale=sigma, size=clean.shape).astype(np.float32)
    return np.sqrt((clean + n1) ** 2 + n2 ** 2).astype(np.float32)
