"""The held-out "organic" style of synthetic video: determinism, exact ground truth, sizes, how it differs, and the
default style left exactly as it was."""

import hashlib
import json
import os

import numpy as np
import pytest

import efficient_sam2.data.synthetic as synthetic
from efficient_sam2.data import (STYLES, SUBSET_NAMES, SyntheticConfig, dataset_layout, default_size, generate_video,
                                 video_seed, write_dataset)
from efficient_sam2.data.organic import (ORGANIC_SHAPES, ORGANIC_TEXTURES, Lighting, OrganicScene, organic_shape,
                                         organic_texture)
from efficient_sam2.data.scene import Scene
from efficient_sam2.data.textures import SHAPE_FAMILIES
from efficient_sam2.io.masks import read_palette_mask

SMALL = dict(frames=10, size=(80, 128))


def _digest(video) -> str:
    h = hashlib.sha256()
    for frame, mask in zip(video.frames, video.masks):
        h.update(frame.tobytes())
        h.update(mask.tobytes())
    return h.hexdigest()


def test_the_default_style_is_unchanged():
    # the digest of this video from the generator as it was before styles existed (commit 18aedba); it also pins
    # numpy's PCG64 stream and OpenCV's interpolation, so a library upgrade that changes them shows here as well
    before = "e4310a867c34f0157efd363bb4446b3dd731e73d8c0afee740588b46ed235280"
    assert _digest(generate_video(3, "standard", frames=6, size=(64, 96))) == before
    assert _digest(generate_video(3, "standard", frames=6, size=(64, 96), style="synth")) == before
    assert generate_video(2, frames=2).frames[0].shape == (256, 256, 3)  # default size: 256 x 256
    assert "style" not in generate_video(2, frames=2).summary()


def test_organic_is_deterministic_and_its_own_seed():
    a = generate_video(4, "standard", style="organic", **SMALL)
    b = generate_video(4, "standard", style="organic", **SMALL)
    assert _digest(a) == _digest(b) and np.array_equal(a.visible, b.visible)
    assert np.array_equal(a.camera, b.camera) and a.depth_order == b.depth_order
    assert _digest(generate_video(5, "standard", style="organic", **SMALL)) != _digest(a)
    synth = generate_video(4, "standard", **SMALL)  # same seed, other style: another video
    assert np.abs(synth.frames[0].astype(int) - a.frames[0]).mean() > 10
    assert a.config.style == "organic" and a.summary()["style"] == "organic"


def test_organic_sizes_are_not_square():
    spec = STYLES["organic"]
    sizes = {default_size("organic", s) for s in range(40)}
    assert {h for h, _ in sizes} == {spec.height} and len(sizes) >= 4
    assert all(w in spec.widths and w != spec.height for _, w in sizes)
    v = generate_video(11, "standard", style="organic", frames=3)
    assert v.frames[0].shape == (*default_size("organic", 11), 3) and v.masks[0].shape == default_size("organic", 11)
    assert v.summary()["size"] == list(default_size("organic", 11))
    v = generate_video(11, "scene_cut", style="organic", frames=8, size=(96, 200))  # an explicit size is kept
    assert v.frames[-1].shape == (96, 200, 3) and v.cut_frame is not None
    assert default_size("synth", 11) == (256, 256)
    with pytest.raises(ValueError, match="valid styles: synth, organic"):
        SyntheticConfig(style="cartoon")


@pytest.mark.parametrize("subset", SUBSET_NAMES)
def test_organic_drawn_is_annotated(subset, monkeypatch):
    """Every annotation is the label map of the composite that was drawn (the last layer painted at each pixel);
    lighting and grain only change pixel values, and each object is clearly visible on frame 0."""
    rendered = []
    real = synthetic.render_frame

    def recording(background, layers):
        out = real(background, layers)
        rendered.append((out, layers))
        return out

    monkeypatch.setattr(synthetic, "render_frame", recording)
    v = generate_video(21, subset, style="organic", frames=12, size=(96, 160))
    drawn = rendered[-v.num_frames:]  # the frames of the draw that was kept (earlier draws may have been refused)
    h, w = v.config.size
    for t, (out, layers) in enumerate(drawn):
        assert np.array_equal(v.masks[t], out.labels)
        for k, layer in enumerate(layers):  # a pixel owned by a layer shows that layer's texture
            own = out.owner == k + 1
            assert np.array_equal(out.image[own], layer.texture[own])
            assert (out.labels[own] == layer.label).all()
        counts = np.bincount(v.masks[t].ravel(), minlength=v.num_objects + 1)[1:]
        assert np.array_equal(counts, v.visible[t])
        # the image is the composite, lit and grained pixel by pixel: the edges of the labels are its edges
        assert _edge_alignment(v.frames[t], v.masks[t]) == (0, 0), (subset, t)
    assert (v.visible[0] >= 0.005 * h * w).all() and (2 * v.visible[0] >= v.unoccluded[0]).all()


def _edge_alignment(image: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """The shift (dy, dx) of the label map, within 2 pixels, whose boundaries sit on the strongest image edges (the
    step between a pixel and the one above / to its left, where the shifted labels of the two differ)."""
    grey = image.astype(np.float32).mean(2)
    steps = [np.abs(grey - np.roll(grey, 1, axis=a))[3:-3, 3:-3] for a in (0, 1)]
    best, where = -1.0, None
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            lab = np.roll(labels, (dy, dx), axis=(0, 1))
            edges = [(lab != np.roll(lab, 1, axis=a))[3:-3, 3:-3] for a in (0, 1)]
            score = sum(float(s[e].sum()) for s, e in zip(steps, edges)) / max(sum(int(e.sum()) for e in edges), 1)
            if score > best:
                best, where = score, (dy, dx)
    return where


def test_lighting_changes_each_pixel_by_itself():
    rng = np.random.default_rng(0)
    scene = OrganicScene(rng, SyntheticConfig(size=(48, 80), style="organic"))
    light = scene.lighting(30)
    assert isinstance(light, Lighting) and Scene(rng, SyntheticConfig()).lighting(30) is None
    image = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    poked = image.copy()
    poked[20, 33] = 255 - poked[20, 33]
    diff = np.any(light.apply(image, 7) != light.apply(poked, 7), axis=2)
    assert diff[20, 33] and diff.sum() == 1  # nothing else moved
    flat = np.full((48, 80, 3), 128, np.uint8)
    means = np.array([light.apply(flat, i).mean() for i in range(30)])
    assert means.max() - means.min() > 3  # brightness drifts over the shot
    frame = light.apply(flat, 0).astype(int).sum(2)
    assert frame[24, 40] > frame[0, 0] or frame[24, 40] > frame[47, 79]  # the vignette darkens a corner


def test_organic_looks_and_moves_otherwise():
    assert not set(ORGANIC_SHAPES) & set(SHAPE_FAMILIES)
    rng = np.random.default_rng(1)
    config = SyntheticConfig(size=(96, 160), style="organic")
    scene = OrganicScene(rng, config)
    families = {scene.target_sprite(np.zeros(3)).family for _ in range(40)}
    assert families == set(ORGANIC_SHAPES)
    # a ring has a hole: the filled outline holds more pixels than the mask
    import cv2

    ring = organic_shape(rng, 64, "ring", 28).astype(np.uint8)
    contours, _ = cv2.findContours(ring, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = cv2.drawContours(np.zeros_like(ring), contours, -1, 1, -1)
    assert filled.sum() > 1.2 * ring.sum()
    for family in ORGANIC_SHAPES:  # every shape stays within its radius of the centre
        m = organic_shape(rng, 64, family, 28)
        yy, xx = np.nonzero(m)
        assert m.sum() > 200 and np.hypot(yy - 31.5, xx - 31.5).max() <= 28 + 1.5, family
    for kind in ORGANIC_TEXTURES:
        tex = organic_texture(rng, 40, kind)
        assert tex.shape == (40, 40, 3) and tex.dtype == np.uint8 and tex.std() > 3, kind
    # motion: the speed changes over the shot (accelerating or braking) and so does the scale
    tracks = [scene.path(scene.target_sprite(np.zeros(3)), 1, 40, np.array([80.0, 48.0]), 0.5) for _ in range(8)]
    ratios = []
    for track in tracks:
        speed = np.linalg.norm(np.diff(track.centre, axis=0), axis=1)
        ratios.append((speed[-10:].mean() + 1e-3) / (speed[:10].mean() + 1e-3))
        assert track.scale[0] == 0.5
    assert max(ratios) / min(ratios) > 1.5
    assert max(abs(np.log(t.scale[-1] / t.scale[0])) for t in tracks) > 0.05


def test_write_an_organic_dataset_with_the_cli(tmp_path, capsys):
    from efficient_sam2.cli import main
    from efficient_sam2.io.datasets import VOSDataset

    out = tmp_path / "organic"
    assert main(["synth", "--out", str(out), "--videos", "3", "--split", "val", "--seed", "2", "--style", "organic",
                 "--frames", "4", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 3 val videos (12 frames, 192x(144..320), style organic" in printed and "192p" in printed
    layout = dataset_layout(out, "val", (192, 0))
    with open(layout.meta) as f:
        meta = json.load(f)
    assert meta["style"] == "organic" and meta["size"] is None and meta["resolution"] == "192p"
    ds = VOSDataset("davis", layout.video_dir, layout.mask_dir, layout.video_list)
    for entry in meta["videos"]:
        assert entry["seed"] == video_seed(2, "val", "standard", int(entry["name"][-4:]), "organic")
        assert entry["seed"] != video_seed(2, "val", "standard", int(entry["name"][-4:]))
        v = generate_video(entry["seed"], entry["subset"], frames=4, style="organic")
        assert entry["size"] == list(v.config.size) and ds.annotations(entry["name"]).size == v.config.size
        for t in range(4):
            ids, _ = read_palette_mask(os.path.join(layout.mask_dir, entry["name"], f"{t:05d}.png"))
            assert np.array_equal(ids, v.masks[t])
    # the default style's dataset is written as before: no style key, the fixed size
    write_dataset(tmp_path / "synth", 1, "val", 2, frames=2, size=(64, 64), progress=False)
    with open(tmp_path / "synth" / "meta.json") as f:
        meta = json.load(f)
    assert "style" not in meta and meta["size"] == [64, 64] and "size" not in meta["videos"][0]
