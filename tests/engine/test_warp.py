import pytest
import torch

from sym3d.camera import look_at, mirror_camera, rotate_camera
from sym3d.errors import ShapeError
from sym3d.image import from_model_range, mirror_image
from sym3d.testing import TinyGenerator3D
from sym3d.warp import conflict_mask, warp_to_views


@pytest.fixture(scope="module")
def scene():
    gen = TinyGenerator3D(resolution=48, num_samples=64)
    cam = look_at(0.3, 0.05)[None]
    ws = gen.mean_latent(cam)
    return gen, ws, cam


def _render(gen, ws, cams):
    with torch.no_grad():
        return gen.render(ws, cams)


def test_same_camera_is_identity(scene):
    gen, ws, cam = scene
    src = _render(gen, ws, cam[:, None])
    img = from_model_range(src.image[:, 0])
    out = warp_to_views(img, src.depth_z[:, 0], cam, src.depth_z, cam[:, None])
    assert float(out.mask.mean()) == 1.0
    assert (out.image[0, 0] - img[0]).abs().max() < 1e-4


def test_matches_render_of_other_camera(scene):
    """Warping a render into a nearby camera matches that camera's render on valid pixels."""
    gen, ws, cam = scene
    src = _render(gen, ws, cam[:, None])
    targets = torch.stack([rotate_camera(cam[0], 0.2, 0.05), rotate_camera(cam[0], -0.25, 0.0)])[
        None
    ]
    tgt = _render(gen, ws, targets)
    out = warp_to_views(
        from_model_range(src.image[:, 0]),
        src.depth_z[:, 0],
        cam,
        tgt.depth_z,
        targets,
        source_mask=src.opacity[:, 0],
    )
    ref = from_model_range(tgt.image)
    for v in range(2):
        m = out.mask[0, v]
        assert float(m.mean()) > 0.3
        mean_err = float((out.image[0, v] - ref[0, v] * m).abs().sum() / (3 * m.sum()))
        assert mean_err < 0.02, mean_err  # tolerance: bilinear resampling of a 48 px render


def test_occluded_pixels_are_masked(scene):
    """From the far left, the right side of the head is occluded: a right-side view must be masked there."""
    gen, ws, _ = scene
    src_cam = look_at(-0.9, 0.0)[None]
    tgt_cam = look_at(0.9, 0.0)[None, None]
    src, tgt = _render(gen, ws, src_cam[:, None]), _render(gen, ws, tgt_cam)
    out = warp_to_views(
        from_model_range(src.image[:, 0]),
        src.depth_z[:, 0],
        src_cam,
        tgt.depth_z,
        tgt_cam,
        source_mask=src.opacity[:, 0],
    )
    head = tgt.opacity[0, 0, 0] > 0.9
    # The target sees mostly the +x side the source never sees: most head pixels are invalid,
    # although nearly all of them project inside the source image.
    assert float(out.in_bounds[0, 0, 0][head].mean()) > 0.9
    assert float(out.mask[0, 0, 0][head].mean()) < 0.35


def test_occluder_window_hides_surface_next_to_a_nearer_edge():
    """A plane at depth 2.5 behind a square at 2.0, same camera: with window ``k`` the plane's
    pixels within ``k`` pixels (Chebyshev) of the square fail the test; the rest pass."""
    size, k = 16, 2
    depth = torch.full((1, 1, size, size), 2.5)
    depth[..., 6:10, 6:10] = 2.0
    cam = look_at(0.0, 0.0)[None]
    image = torch.rand(1, 3, size, size)

    def visible(window: int) -> torch.Tensor:  # window in pixels
        out = warp_to_views(
            image, depth, cam, depth[:, None], cam[:, None], occluder_window=window / size
        )
        return out.visible[0, 0, 0]

    assert bool(visible(0).all())
    expected = torch.ones(size, size, dtype=torch.bool)
    expected[6 - k : 10 + k, 6 - k : 10 + k] = False
    expected[6:10, 6:10] = True  # the square itself is the nearest surface
    assert torch.equal(visible(k).bool(), expected)


def test_gradients_flow_to_image(scene):
    gen, ws, cam = scene
    src = _render(gen, ws, cam[:, None])
    img = from_model_range(src.image[:, 0]).clone().requires_grad_(True)
    out = warp_to_views(img, src.depth_z[:, 0], cam, src.depth_z, cam[:, None])
    out.image.sum().backward()
    assert img.grad is not None and float(img.grad.abs().sum()) > 0


def test_bad_shapes():
    with pytest.raises(ShapeError, match="target_cameras"):
        warp_to_views(
            torch.rand(1, 3, 8, 8),
            torch.rand(1, 1, 4, 4) + 2,
            torch.rand(1, 25),
            torch.rand(1, 2, 1, 4, 4),
            torch.rand(1, 3, 25),
        )


def test_conflict_mask_marks_asymmetric_detail(truth, side_view):
    """The authentic mask drops a one-sided mark copied by the mirror and keeps symmetric regions."""
    gen, ws = truth
    img, cam = side_view
    with torch.no_grad():
        src = gen.render(ws, cam[:, None])
        tcams = torch.stack(
            [rotate_camera(mirror_camera(cam)[0], d, 0.0) for d in (0.3, 0.4, 0.5)]
        )[None]
        tgt = gen.render(ws, tcams)
    marked = img.clone()
    # A dark mark on the seen (+x, image-right) cheek, off the symmetry plane: the photo sees the
    # clean skin at its mirrored spot, which the target views around the mirrored camera see too.
    marked[:, :, 14:18, 19:23] = 0.05

    def labels(photo):
        wm = warp_to_views(
            mirror_image(photo),
            mirror_image(src.depth_z[:, 0]),
            mirror_camera(cam),
            tgt.depth_z,
            tcams,
            source_mask=mirror_image(src.opacity[:, 0]),
        )
        wx = warp_to_views(
            photo, src.depth_z[:, 0], cam, tgt.depth_z, tcams, source_mask=src.opacity[:, 0]
        )
        return wm, wx

    wm0, wx0 = labels(img)
    wm1, wx1 = labels(marked)
    both_valid = (wx1.mask > 0.5) & (wm1.mask > 0.5)
    mark_region = ((wm1.image - wm0.image).abs().mean(2, keepdim=True) > 0.2) & both_valid
    assert int(mark_region.sum()) > 10, "the mirrored mark must be visible in the target views"
    conflict = conflict_mask(wm1, wx1, threshold=0.12).bool()
    baseline = conflict_mask(wm0, wx0, threshold=0.12).bool()
    assert float(conflict[mark_region].float().mean()) > 0.9
    # Everywhere the mark does not reach (neither its mirrored copy nor the mark itself, with a
    # one-pixel margin for bilinear blur), the mask is what it is without the mark.
    changed = ((wm1.image - wm0.image).abs().amax(2, keepdim=True) > 0.02) | (
        (wx1.image - wx0.image).abs().amax(2, keepdim=True) > 0.02
    )
    near = (
        torch.nn.functional.max_pool2d(changed.flatten(0, 1).float(), 3, 1, 1)
        .bool()
        .reshape(changed.shape)
    )
    assert torch.equal(conflict[~near], baseline[~near])
    assert float(baseline.float().mean()) < 0.08  # symmetric regions are (almost) never dropped
