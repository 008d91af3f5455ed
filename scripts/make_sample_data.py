"""Write the Sample Data phantom cases into HNTumorSeg/Resources/SampleData (run: .venv/bin/python scripts/make_sample_data.py).

Why a script and shipped files rather than generating at start-up: Slicer's Sample Data module
verifies a SHA256 per file, and a clinician's first click must not depend on numpy/scipy code
paths of the phantom generator. The files are deterministic (phantom seed 0, fixed crops,
gzip-compressed NRRD), so running this again gives the same bytes, on any CPU: the generator's
arithmetic is built so that no CPU-specific BLAS kernel or SIMD path of exp/cos can change a
last bit before a value is rounded (``HNTumorSegLib/phantoms/exact.py``). It prints each file's
SHA256 and fills them into ``HNTumorSegLib/scene/sample_data.py`` when ``--update`` is given.

Choices (each case must stay well under 2 MB):
* mid-RT T2 stored as int16 (the phantom's T2 spans 0-1400; rounding changes values by < 0.5);
* the registered pre-RT contours written by Slicer's own segmentation storage node
  (slicer-core), so they load as a segmentation with GTVp/GTVn segments and terminology;
* PET/CT cropped in-plane to the central 96x96 CT voxels (192 mm; the body is ~145 mm wide) and
  the matching 48x48 PET voxels; PET rounded to 0.01 SUV (below the phantom's noise) so that it
  compresses to a quarter.

Example:
    .venv/bin/python scripts/make_sample_data.py --update
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from HNTumorSegLib.image import Image, write_image  # noqa: E402
from HNTumorSegLib.phantoms import make_midrt_case, make_petct_case  # noqa: E402
from HNTumorSegLib.scene.sample_data import RESOURCE_SUBDIR, SAMPLE_CASES, sha256_of  # noqa: E402

OUT = ROOT / "HNTumorSeg" / RESOURCE_SUBDIR
CT_CROP = 96  # CT voxels kept in x and y (2 mm each)


def crop_xy(image: Image, lo_xy: tuple[int, int], size_xy: tuple[int, int]) -> Image:
    """The sub-image starting at voxel ``lo_xy`` (x, y) of ``size_xy`` voxels; all z kept."""
    (x0, y0), (nx, ny) = lo_xy, size_xy
    array_zyx = image.array[:, y0:y0 + ny, x0:x0 + nx]
    origin = image.index_to_physical(np.array([x0, y0, 0], float))
    return Image(np.ascontiguousarray(array_zyx), image.spacing, tuple(float(v) for v in origin), image.direction)


def write_segmentation(labels: Image, reference: Image, path: Path) -> None:
    """Write ``labels`` as a Slicer .seg.nrrd with Slicer's own storage node (slicer-core)."""
    import slicer

    from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image
    from HNTumorSegLib.scene.segmentation_io import import_label_map

    # segment IDs come from a shared random sequence: seed it so the file is the same every run
    slicer.vtkSegmentation().GetSegmentIDRandomSequenceInstance().SetSeed(20241)
    app = make_scene()
    ref_node = volume_node_from_image(app.scene, reference, "reference")
    seg = import_label_map(app.scene, labels, ref_node, name="phantom_preRT_mask_registered")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(True)
    if not storage.WriteData(seg):
        raise SystemExit(f"Slicer's segmentation storage node could not write {path}")


def build(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    mid = make_midrt_case(seed=0)
    t2 = mid["midRT_T2"].with_array(np.round(mid["midRT_T2"].array).astype(np.int16))
    files = {"HNTumorSeg-midRT-phantom-T2.nrrd": write_image(t2, folder / "HNTumorSeg-midRT-phantom-T2.nrrd")}
    prior_path = folder / "HNTumorSeg-midRT-phantom-preRT-mask-registered.seg.nrrd"
    write_segmentation(mid["preRT_mask_registered"], mid["midRT_T2"], prior_path)
    files[prior_path.name] = prior_path

    pc = make_petct_case(seed=0)
    ct = pc["CT"]
    nx, ny = ct.shape_xyz[:2]
    lo = ((nx - CT_CROP) // 2, (ny - CT_CROP) // 2)
    ct_c = crop_xy(ct, lo, (CT_CROP, CT_CROP))
    # the PET voxels covering the same physical square (PET voxels are twice as large)
    pet = pc["PET"]
    corner = ct_c.index_to_physical(np.array([-0.5, -0.5, 0.0])) + 0.5 * np.array(pet.spacing)
    pet_lo = np.clip(np.round(pet.physical_to_index(corner)[:2]).astype(int), 0, None)
    pet_n = int(round(CT_CROP * ct.spacing[0] / pet.spacing[0]))
    pet_c = crop_xy(pet, (int(pet_lo[0]), int(pet_lo[1])), (pet_n, pet_n))
    pet_c = pet_c.with_array((np.round(pet_c.array * 100) / 100).astype(np.float32))
    files["HNTumorSeg-PETCT-phantom-CT.nrrd"] = write_image(ct_c, folder / "HNTumorSeg-PETCT-phantom-CT.nrrd")
    files["HNTumorSeg-PETCT-phantom-PET.nrrd"] = write_image(pet_c, folder / "HNTumorSeg-PETCT-phantom-PET.nrrd")
    return files


def update_digests(files: dict[str, Path]) -> None:
    """Put each file's SHA256 into HNTumorSegLib/scene/sample_data.py, next to its file name."""
    lib = ROOT / "HNTumorSegLib" / "scene" / "sample_data.py"
    text = lib.read_text()
    for name, path in files.items():
        pattern = re.compile(r'(SampleFile\("' + re.escape(name) + r'",[^)]*?")([^"]*)("\))', re.S)
        text, n = pattern.subn(lambda m: m.group(1) + sha256_of(path) + m.group(3), text)
        if n != 1:
            raise SystemExit(f"{name} not found in {lib}")
    lib.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder (default {OUT.relative_to(ROOT)})")
    parser.add_argument("--update", action="store_true", help="write the SHA256s into HNTumorSegLib/scene/sample_data.py")
    args = parser.parse_args(argv)
    files = build(args.out)
    for name, path in files.items():
        print(f"{sha256_of(path)}  {path.stat().st_size:>9}  {name}")
    expected = {f.file_name for c in SAMPLE_CASES for f in c.files}
    if set(files) != expected:
        raise SystemExit(f"written {sorted(files)} but scene/sample_data.py lists {sorted(expected)}")
    if args.update:
        update_digests(files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
