"""Draw the 128x128 extension / module icon with PIL (run: python Resources/make_icon.py).

A head-and-neck profile on a dark blue tile, with a red primary tumour (GTVp) in a dashed
lesion box and a blue-green node (GTVn): the module's colours (scene.roi_boxes.LABEL_COLOURS).
Drawn at 4x and downsampled for smooth edges.
"""

from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
S = 4  # supersampling


def draw() -> Image.Image:
    im = Image.new("RGBA", (128 * S, 128 * S), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle([2 * S, 2 * S, 126 * S, 126 * S], radius=22 * S, fill=(24, 44, 79, 255))
    # profile facing left: forehead, nose, lips, chin, neck (points in 128 px units)
    profile = [(74, 14), (54, 16), (42, 28), (38, 44), (36, 52), (28, 62), (36, 66), (36, 72), (32, 76), (38, 80),
               (36, 86), (42, 92), (52, 94), (56, 100), (56, 118), (100, 118), (100, 100), (96, 86), (102, 64),
               (100, 40), (92, 22)]
    d.polygon([(x * S, y * S) for x, y in profile], fill=(236, 240, 246, 255))
    # GTVp near the tongue base / oropharynx, inside a dashed box
    d.ellipse([52 * S, 60 * S, 72 * S, 78 * S], fill=(227, 66, 51, 255))
    x0, y0, x1, y1 = 47, 55, 77, 83
    for a in range(x0, x1, 6):
        d.line([(a * S, y0 * S), (min(a + 3, x1) * S, y0 * S)], fill=(227, 66, 51, 255), width=2 * S)
        d.line([(a * S, y1 * S), (min(a + 3, x1) * S, y1 * S)], fill=(227, 66, 51, 255), width=2 * S)
    for b in range(y0, y1, 6):
        d.line([(x0 * S, b * S), (x0 * S, min(b + 3, y1) * S)], fill=(227, 66, 51, 255), width=2 * S)
        d.line([(x1 * S, b * S), (x1 * S, min(b + 3, y1) * S)], fill=(227, 66, 51, 255), width=2 * S)
    # GTVn: a level II node
    d.ellipse([78 * S, 84 * S, 90 * S, 95 * S], fill=(31, 158, 191, 255))
    return im.resize((128, 128), Image.LANCZOS)


if __name__ == "__main__":
    icon = draw()
    for path in (ROOT / "Resources" / "HNTumorSeg.png", ROOT / "HNTumorSeg" / "Resources" / "Icons" / "HNTumorSeg.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        icon.save(path)
        print(path)
