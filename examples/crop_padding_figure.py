"""Make ``docs/figures/crop_padding.png``: a crop that reaches 40% beyond the photo, two fills.

A portrait cut so that the face sits at the photo's left edge (scikit-image's bundled astronaut
photo, no download), and an EG3D-style square crop around the face of which 40% lies left of
the photo. Left: the photo with the crop's outline. Middle: ``padding="reflect"`` (the fill
before; a mirrored second eye and cheek appear). Right: ``padding="fade"`` (the default now).

    python examples/crop_padding_figure.py [out.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from skimage import data  # noqa: E402

from sym3d_extras.faces import geometry as geo  # noqa: E402

SIZE = 256  # crop side (px)


def main(out: Path) -> None:
    photo_np = data.astronaut()[30:330, 175:420]  # the face near the left edge, 300 x 245 px
    photo = torch.from_numpy(photo_np).permute(2, 0, 1)[None].float() / 255
    h, w = photo_np.shape[:2]
    # The crop: 250 photo px square around the face, its left 40% beyond the photo.
    side, x0, y0 = 250.0, -100.0, 10.0
    s = SIZE / side
    matrix = np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s], [0.0, 0.0, 1.0]])
    frac = geo.outside_fraction(matrix, SIZE, h, w)
    crops = {mode: geo.warp_crop(photo, matrix, SIZE, padding=mode) for mode in ("reflect", "fade")}

    fig, axes = plt.subplots(1, 3, figsize=(9.0, 3.35), dpi=80)
    axes[0].imshow(photo_np, extent=(0, w, h, 0))
    axes[0].plot(
        [x0, x0 + side, x0 + side, x0, x0], [y0, y0, y0 + side, y0 + side, y0], "y--", lw=1.5
    )
    axes[0].set_xlim(x0 - 5, w + 5)
    axes[0].set_ylim(h + 5, y0 - 5)
    axes[0].set_title(f"photo and crop ({100 * frac:.0f}% outside)", fontsize=10)
    titles = {"reflect": 'before: "reflect" (a mirrored copy)', "fade": 'after: "fade" (default)'}
    for ax, (mode, crop) in zip(axes[1:], crops.items(), strict=True):
        ax.imshow(crop[0].permute(1, 2, 0).numpy())
        ax.axvline(-x0 * s, color="y", ls="--", lw=1)  # the photo's left edge
        ax.set_title(titles[mode], fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(
        f"wrote {out} ({out.stat().st_size // 1024} KB); crop {100 * frac:.0f}% outside the photo"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/figures/crop_padding.png"))
