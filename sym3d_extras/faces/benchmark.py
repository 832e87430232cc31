"""Validation numbers of the MediaPipe pose estimator on photos that ship in packages (offline).

Run ``python -m sym3d_extras.faces.benchmark [--synthetic]``; prints one table per check:

* mirror consistency (yaw/roll negated, pitch kept) on three portraits;
* in-plane rotations (the measured roll follows, the upright crop stays level);
* crop geometry (template origin, scale, eye positions in the 512 crop);
* timings per image (512 px and a 6000x6000 upscale);
* with ``--synthetic``: yaw/pitch against the known cameras of SymHeads renders (slow).

Photos: ``skimage.data.astronaut`` (NASA, public domain), ``skimage.data.camera`` (CC0) and
matplotlib's ``grace_hopper.jpg`` (US Navy, public domain).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F


def _photos() -> dict[str, torch.Tensor]:
    from skimage import data

    def t(a: np.ndarray) -> torch.Tensor:
        a = np.array(a)
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        return (
            torch.from_numpy(a[..., :3].astype(np.float32) / 255.0)
            .permute(2, 0, 1)[None]
            .contiguous()
        )

    photos = {"astronaut": t(data.astronaut()), "cameraman": t(data.camera())}
    try:
        import matplotlib.cbook as cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            photos["hopper"] = t(np.asarray(Image.open(f).convert("RGB")))
    except Exception:  # noqa: BLE001 - optional photo
        pass
    return photos


def _rotate(img: torch.Tensor, degrees: float) -> torch.Tensor:
    from scipy import ndimage

    out = ndimage.rotate(
        img[0].permute(1, 2, 0).numpy(), degrees, reshape=False, order=3, mode="reflect"
    )
    return torch.from_numpy(np.clip(out, 0, 1)).permute(2, 0, 1)[None].float().contiguous()


def _five(obs) -> np.ndarray:  # noqa: ANN001
    lm = obs.landmarks[0].numpy()
    return np.stack([lm[[33, 133]].mean(0), lm[[362, 263]].mean(0), lm[1], lm[61], lm[291]])


def main(argv: list[str] | None = None) -> None:
    """Print the validation tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--synthetic", action="store_true", help="also measure against SymHeads renders (slow)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timing repetitions")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from sym3d_extras.faces import build_pose_estimator
    from sym3d_extras.faces import geometry as geo

    est = build_pose_estimator()
    photos = _photos()
    deg = math.degrees

    print("\n## Mirror consistency (degrees)")
    print("| photo | yaw | yaw (mirrored) | yaw error | pitch | pitch (mirrored) | roll error |")
    print("|---|---|---|---|---|---|---|")
    base = {}
    for name, img in photos.items():
        a = base[name] = est.analyze(img)
        b = est.analyze(img.flip(-1))
        print(
            f"| {name} | {deg(a.yaw):.2f} | {deg(b.yaw):.2f} | {deg(abs(a.yaw + b.yaw)):.2f} | {deg(a.pitch):.2f} | "
            f"{deg(b.pitch):.2f} | {deg(abs(a.head_roll + b.head_roll)):.2f} |"
        )

    print("\n## In-plane rotation (degrees; upright crop)")
    print(
        "| photo | rotation | measured head-roll change | error | crop eye-line angle | label roll change | yaw change |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in ("astronaut", "hopper"):
        if name not in photos:
            continue
        a = base[name]
        for rot in (-25.0, -10.0, 10.0, 25.0):
            b = est.analyze(_rotate(photos[name], rot))
            f = _five(b.observation)
            eye = deg(math.atan2(f[1, 1] - f[0, 1], f[1, 0] - f[0, 0]))
            dr = deg(b.head_roll - a.head_roll)
            print(
                f"| {name} | {rot:+.0f} | {dr:+.2f} | {abs(dr - rot):.2f} | {eye:+.2f} | {deg(b.roll - a.roll):+.2f} | "
                f"{deg(b.yaw - a.yaw):+.2f} |"
            )

    print("\n## Crop geometry (512 crop, pixels)")
    print(
        "| photo | template origin | px per template unit (219.43) | eye row L/R | eye columns L/R | eye-mouth px | upsampling |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, a in base.items():
        f = _five(a.observation)
        t, s, _ = geo.pos_fit(f)
        print(
            f"| {name} | ({t[0]:.2f}, {t[1]:.2f}) | {s:.2f} | {f[0, 1]:.1f} / {f[1, 1]:.1f} | {f[0, 0]:.1f} / {f[1, 0]:.1f} | "
            f"{np.linalg.norm((f[3] + f[4]) / 2 - (f[0] + f[1]) / 2):.1f} | {a.upsampling:.2f} |"
        )
    frontal = geo.BFM_FIVE_POINTS[:, :2] * np.array([1, -1]) * geo.template_scale(512) + 256
    print(
        f"(frontal template: eyes at x = {frontal[0, 0]:.1f} / {frontal[1, 0]:.1f}, row {frontal[0, 1]:.1f}; mouth row {frontal[3, 1]:.1f})"
    )

    print(
        f"\n## Timings (median of {args.repeat}, seconds; torch threads = {torch.get_num_threads()})"
    )
    print("| input | total | detect | landmarks | camera | crop | masks |")
    print("|---|---|---|---|---|---|---|")
    inputs = {"astronaut 512x512": photos["astronaut"]}
    inputs["astronaut 6000x6000"] = F.interpolate(
        photos["astronaut"], size=(6000, 6000), mode="bilinear"
    )
    for name, img in inputs.items():
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            a = est.analyze(img)
            runs.append((time.perf_counter() - t0, a.timings))
        med = statistics.median(r[0] for r in runs)
        tm = {
            k: statistics.median(r[1].get(k, 0.0) for r in runs)
            for k in ("detect", "landmarks", "camera", "crop", "masks")
        }
        print(f"| {name} | {med:.3f} | " + " | ".join(f"{tm[k]:.3f}" for k in tm) + " |")

    if args.synthetic:
        from sym3d.camera import look_at
        from sym3d_extras.synthetic import SymHeadsScene

        print("\n## SymHeads renders at known cameras (degrees; 192 px)")
        print("| seed | true yaw | true pitch | yaw | pitch |")
        print("|---|---|---|---|---|")
        syn = build_pose_estimator(min_face_size=0, warn_face_size=0)
        yaws = torch.tensor([-0.7, -0.35, 0.0, 0.35, 0.7, 0.0, 0.0])
        pitches = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, -0.25, 0.25])
        from sym3d.camera import yaw_pitch_roll

        cams = look_at(yaws, pitches)
        true_yaw, true_pitch, _ = yaw_pitch_roll(
            cams
        )  # viewing-direction angles, as the estimator reports
        for seed in (3, 7):
            images = SymHeadsScene(seed=seed).render(cams, resolution=192).image
            for i in range(len(yaws)):
                try:
                    a = syn.analyze(images[i : i + 1])
                    got = f"{deg(a.yaw):.1f} | {deg(a.pitch):.1f}"
                except Exception as exc:  # noqa: BLE001 - report and go on
                    got = f"failed: {type(exc).__name__} | -"
                print(
                    f"| {seed} | {deg(float(true_yaw[i])):.1f} | {deg(float(true_pitch[i])):.1f} | {got} |"
                )
    est.close()


if __name__ == "__main__":
    main()
