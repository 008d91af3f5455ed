"""Make the pictures of README section 1 (the clinician's guide) and the extension screenshots.

Usage:
    .venv/bin/python scripts/make_slicer_pictures.py                 # -> build/pictures/ (a look first)
    .venv/bin/python scripts/make_slicer_pictures.py --out DIR       # -> DIR/ and DIR/Screenshots/
    .venv/bin/python scripts/make_slicer_pictures.py --update        # the tracked files README shows:
                                                                     #    docs/images/, Resources/Screenshots/

Slice pictures are rendered offscreen from a real MRML scene (slicer-core): a phantom mid-RT
case is loaded, boxes are made from the registered prior, the bundled demo model segments it
through the module's logic (the real worker); Slicer's ``vtkMRMLSliceLogic`` reslices and blends
the layers and Slicer's displayable managers draw the segmentation and the ROI boxes into an
offscreen (EGL) render window, as a Slicer slice view does. Only the captions are added (PIL).
The module panel is a *drawing* (PIL) of the .ui's sections, labelled "drawing, not a
screenshot": Slicer's Qt GUI cannot run here. Captions say what is drawn: the result's caption
names only the labels present on the slice shown (the slice is chosen to hold GTVp and GTVn when
the phantom has both on one slice).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TRACKED_IMAGES = ROOT / "docs" / "images"
TRACKED_SCREENSHOTS = ROOT / "Resources" / "Screenshots"
DEFAULT_OUT = ROOT / "build" / "pictures"
SIZE = 360
LABEL_WORDS = {1: "GTVp red", 2: "GTVn blue-green"}
#: a phantom whose GTVp and a GTVn share an axial slice, so the pictures show both
PHANTOM_SEED = 3


def font(size: int):
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


class SliceView:
    """An offscreen 'Red' axial slice view: Slicer's slice logic plus its displayable managers.

    The slice image comes from ``vtkMRMLSliceLogic`` (reslice + layer blending), shown by a 2D
    image actor as Slicer's slice widget does; segmentations and markups (the ROI boxes with their
    handles and names) are drawn by Slicer's own displayable managers
    (``vtkMRMLSegmentationsDisplayableManager2D``, ``vtkMRMLMarkupsDisplayableManager``).
    """

    MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLMarkupsDisplayableManager")

    def __init__(self, app, background, z_ras: float, fov_mm: float):
        import slicer
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL render window)
        from vtkmodules.vtkInteractionStyle import vtkInteractorStyleUser
        from vtkmodules.vtkRenderingCore import (vtkActor2D, vtkImageMapper, vtkRenderer, vtkRenderWindow,
                                                 vtkRenderWindowInteractor)

        self.renderer = vtkRenderer()
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.window = vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetMultiSamples(0)
        self.window.SetSize(SIZE, SIZE)
        self.window.AddRenderer(self.renderer)
        self.interactor = vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.window)
        self.interactor.SetInteractorStyle(vtkInteractorStyleUser())
        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(app.app_logic)
        for name in self.MANAGERS:
            if not factory.IsDisplayableManagerRegistered(name):
                factory.RegisterDisplayableManager(name)
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.SetRenderer(self.renderer)
        self.managers.Initialize(factory, self.renderer)
        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLApplicationLogic(app.app_logic)
        app.app_logic.GetSliceLogics().AddItem(self.logic)
        self.logic.SetMRMLScene(app.scene)
        self.node = self.logic.AddSliceNode("Red")
        self.managers.SetMRMLDisplayableNode(self.node)
        self.node.SetOrientationToAxial()
        self.logic.ResizeSliceNode(SIZE, SIZE)
        self.composite = self.logic.GetSliceCompositeNode()
        self.composite.SetBackgroundVolumeID(background.GetID())
        self.logic.FitSliceToAll()
        self.node.SetFieldOfView(fov_mm, fov_mm, self.node.GetFieldOfView()[2])
        self.logic.SetSliceOffset(z_ras)
        mapper = vtkImageMapper()
        mapper.SetColorWindow(255)  # the slice logic's output is RGBA 0..255 already
        mapper.SetColorLevel(127.5)
        mapper.SetInputConnection(self.logic.GetImageDataConnection())
        actor = vtkActor2D()
        actor.SetMapper(mapper)
        actor.GetProperty().SetDisplayLocationToBackground()
        self.renderer.AddViewProp(actor)
        self.interactor.Initialize()

    def layers(self, foreground=None, fg_opacity=0.0):
        self.composite.SetForegroundVolumeID(foreground.GetID() if foreground else None)
        self.composite.SetForegroundOpacity(fg_opacity)

    def render(self) -> Image.Image:
        from vtkmodules.util import numpy_support
        from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

        self.window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(self.window)
        grab.ReadFrontBufferOff()
        grab.Update()
        data = grab.GetOutput()
        nx, ny, _ = data.GetDimensions()
        rgb = numpy_support.vtk_to_numpy(data.GetPointData().GetScalars()).reshape(ny, nx, -1)[::-1, :, :3]
        return Image.fromarray(np.ascontiguousarray(rgb).astype(np.uint8))


def caption(img: Image.Image, title: str, note: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 56), (20, 20, 20))
    out.paste(img, (0, 0))
    d = ImageDraw.Draw(out)
    d.text((8, img.height + 4), title, fill=(240, 240, 240), font=font(14))
    d.multiline_text((8, img.height + 24), note, fill=(170, 170, 170), font=font(11), spacing=2)
    return out


def _slice_z(prior) -> np.ndarray:
    """Voxel index (x, y, z) of the picture's centre: on the axial slice holding the most of the
    smaller of GTVp and GTVn, midway between them (both shown when any slice has both), else
    GTVp's centre."""
    arr = prior.array
    both = np.minimum((arr == 1).sum(axis=(1, 2)), (arr == 2).sum(axis=(1, 2)))
    if both.max() > 0:
        k = int(np.argmax(both))
        mid_yx = (np.argwhere(arr[k] == 1).mean(axis=0) + np.argwhere(arr[k] == 2).mean(axis=0)) / 2
        return np.array([mid_yx[1], mid_yx[0], k], dtype=float)
    return np.argwhere(arr == 1).mean(axis=0)[::-1]


def result_caption(labels_on_slice: set[int]) -> str:
    """"3. Result: GTVp red, GTVn blue-green" - only the labels the slice shows (issue 18)."""
    shown = [LABEL_WORDS[k] for k in (1, 2) if k in labels_on_slice]
    missing = [LABEL_WORDS[k].split()[0] for k in (1, 2) if k not in labels_on_slice]
    text = "3. Result: " + (", ".join(shown) if shown else "no lesion on this slice")
    return text + (f" (no {', '.join(missing)} here)" if shown and missing else "")


def slice_pictures(out: Path, screenshots: Path) -> list[Path]:
    from HNTumorSegLib.image import lps_to_ras
    from HNTumorSegLib.phantoms import write_hntsmrg_cohort
    from HNTumorSegLib.scene.inputs import auto_assign, load_case_folder
    from HNTumorSegLib.scene.logic import SegmentationSceneLogic, Parameters
    from HNTumorSegLib.scene.mrml import image_from_volume_node, make_scene
    from HNTumorSegLib.scene.roi_boxes import update_gradient_preview

    note = "rendered offscreen from the MRML scene by Slicer's slice\nlogic and displayable managers (slicer-core)"
    with tempfile.TemporaryDirectory() as tmp:
        case = Path(tmp) / write_hntsmrg_cohort(tmp, n=1, seed=PHANTOM_SEED, shape=(24, 96, 96), spacing=(0.9, 0.9, 3.0))[0]
        app = make_scene()
        load_case_folder(app.scene, case)
        inputs = auto_assign(app.scene, "midrt")
        logic = SegmentationSceneLogic(app.scene, timeout_s=900)
        rois = logic.boxes_from_prior(inputs["prior"], inputs["T2"])
        for roi in rois:  # outlines only: a filled box hides the tumour in a still picture
            roi.GetDisplayNode().SetFillVisibility(False)
        # the axial slice through the prior's GTVp centre
        prior = image_from_volume_node(inputs["prior"])
        centre_ijk = _slice_z(prior)
        centre = lps_to_ras(prior.index_to_physical(centre_ijk))
        view = SliceView(app, inputs["T2"], float(centre[2]), fov_mm=86.0)  # the whole neck: every box

        paths = [("slicer_boxes.png", caption(view.render(), "1. Lesion boxes from the pre-RT prior", note))]
        preview = update_gradient_preview(app.scene, inputs["T2"], rois)
        view.layers(foreground=preview, fg_opacity=0.6)
        paths.append(("slicer_gradient.png", caption(view.render(), "2. Gradient-map preview (mid-RT)", note)))

        params = Parameters(task="midrt", inputs={"T2": inputs["T2"].GetID()}, prior=inputs["prior"].GetID(),
                            model="demo-midrt", device="cpu")
        logic.start(params)
        while logic.running:
            logic.poll()
            time.sleep(0.2)
        if logic.run.state != "succeeded":
            raise SystemExit(f"the demo run failed: {logic.poll().error}")
        segmentation = logic.import_result()
        view.layers()
        for roi in rois:
            roi.GetDisplayNode().SetVisibility(False)
        shown = _labels_on_slice(segmentation, inputs["T2"], int(round(centre_ijk[2])))
        paths.append(("slicer_result.png", caption(view.render(), result_caption(shown),
                                                   "Slicer slice logic + displayable managers; bundled demo\n"
                                                   "model (tiny, not clinical) on a synthetic phantom")))
        written = []
        for name, picture in paths:
            picture.save(out / name)
            written.append(out / name)
        strip = Image.new("RGB", (sum(p.width for _, p in paths), paths[0][1].height))
        x = 0
        for _, p in paths:
            strip.paste(p, (x, 0))
            x += p.width
        strip.save(screenshots / "slices.png")
        written.append(screenshots / "slices.png")
        return written


def _labels_on_slice(segmentation, reference_node, k: int) -> set[int]:
    """The labels (1 GTVp, 2 GTVn) of the imported segmentation on axial slice ``k`` of the T2 grid."""
    from HNTumorSegLib.scene.segmentation_io import export_label_map

    labels = export_label_map(segmentation, reference_node)
    return {int(v) for v in np.unique(labels.array[k]) if v in (1, 2)}


def panel_drawing(out: Path, screenshots: Path) -> list[Path]:
    """A drawing of the module panel, section by section as in HNTumorSeg.ui (not a screenshot)."""
    w, h = 380, 820
    img = Image.new("RGB", (w, h), (246, 246, 246))
    d = ImageDraw.Draw(img)
    f, fb, fs = font(12), font(13), font(10)
    y = 8
    d.text((10, y), "DRAWING, NOT A SCREENSHOT", fill=(180, 30, 30), font=fb)
    d.text((10, y + 17), "of the HNTumorSeg module panel (sections of HNTumorSeg.ui)", fill=(120, 30, 30), font=fs)
    y += 38

    def section(title, rows):
        nonlocal y
        d.rectangle([6, y, w - 6, y + 20], fill=(214, 222, 232), outline=(160, 170, 180))
        d.text((12, y + 3), "v " + title, fill=(20, 20, 20), font=fb)
        y += 26
        for label, widget in rows:
            if label:
                d.text((14, y + 3), label, fill=(40, 40, 40), font=f)
            x0 = 120 if label else 14
            d.rectangle([x0, y, w - 14, y + 20], fill=(255, 255, 255), outline=(170, 170, 170))
            d.text((x0 + 6, y + 3), widget, fill=(30, 30, 30), font=f)
            y += 25
        y += 4

    section("Inputs", [("Task:", "Mid-RT MRI (T2 + pre-RT prior)  v"), ("", "[ Load case folder... ]"),
                       ("T2 volume:", "1_midRT_T2  v"), ("Pre-RT prior:", "1_preRT_mask_registered  v"),
                       ("", "[ Assign inputs by name ]")])
    section("Lesion boxes", [("", "GTVp-1    GTVn-1    GTVn-2"), ("", "[ Boxes from prior ] [ Add GTVp ] [ Add GTVn ]"),
                             ("", "[x] Restrict to boxes   [x] Show gradient-map preview")])
    section("Model", [("Model:", "demo-midrt  v"), ("Device:", "auto  v"), ("Quality:", "fast  v")])
    d.rectangle([14, y, w - 14, y + 24], fill=(70, 120, 190), outline=(40, 80, 140))
    d.text((w // 2 - 24, y + 5), "Cancel", fill=(255, 255, 255), font=fb)
    y += 30
    d.text((14, y), "inference: fold 1/1, tile 3/8", fill=(40, 40, 40), font=f)
    y += 18
    d.rectangle([14, y, w - 14, y + 16], fill=(255, 255, 255), outline=(170, 170, 170))
    d.rectangle([15, y + 1, 15 + int(0.42 * (w - 30)), y + 15], fill=(90, 170, 90))
    d.text((w // 2 - 10, y + 2), "42%", fill=(20, 20, 20), font=fs)
    y += 24
    section("Log (collapsed)", [])
    section("Review", [("Segmentation:", "HNTumorSeg segmentation  v"), ("Reference:", "1_midRT_mask  v"),
                       ("", "[ Show volumes, lesions and comparison ]")])
    section("Export", [("Folder:", "~/contours"), ("", "[x] NIfTI  [ ] DICOM SEG  [ ] RTSTRUCT  [x] CSV"),
                       ("", "[ Export ]")])
    img = img.crop((0, 0, w, min(h, y + 6)))
    paths = [out / "slicer_panel.png", screenshots / "panel.png"]
    for p in paths:
        img.save(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="README section 1 pictures and the extension screenshots")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=None,
                       help=f"folder for the pictures (screenshots in its Screenshots/; default {DEFAULT_OUT})")
    where.add_argument("--update", action="store_true",
                       help="overwrite the tracked pictures README shows (docs/images/, Resources/Screenshots/)")
    args = parser.parse_args(argv)
    out, screenshots = (TRACKED_IMAGES, TRACKED_SCREENSHOTS) if args.update else \
        (args.out or DEFAULT_OUT, (args.out or DEFAULT_OUT) / "Screenshots")
    for folder in (out, screenshots):
        folder.mkdir(parents=True, exist_ok=True)
    for p in panel_drawing(out, screenshots) + slice_pictures(out, screenshots):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
