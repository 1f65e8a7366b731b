"""Segment-everything images (`synth --images`): exact annotation, occlusion order, determinism, files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from efficient_sam2.cli import main
from efficient_sam2.data.images import IMAGE_SUBSETS, generate_image, image_seed, write_images
from efficient_sam2.io.masks import read_palette_mask


@pytest.mark.parametrize("subset", list(IMAGE_SUBSETS))
def test_drawn_equals_annotated_in_depth_order(subset):
    for seed in range(3):
        img = generate_image(seed, subset, (96, 112))
        h, w = 96, 112
        assert img.image.shape == (h, w, 3) and img.labels.shape == (h, w)
        # every pixel belongs to a segment, ids are 1..N, one role each
        assert img.labels.min() >= 1
        assert sorted(np.unique(img.labels)) == list(range(1, img.num_instances + 1))
        assert img.roles[0] == "background" and set(img.roles) <= {"background", "object", "salient", "camouflaged"}
        # a pixel shows the last layer drawn over it (occlusion order) and is annotated with that layer's id
        top = np.zeros((h, w), dtype=np.int64)
        for k, layer in enumerate(img.layers):
            top[layer.mask] = k + 1
        assert np.array_equal(top, img.owner)
        for k, layer in enumerate(img.layers):
            visible = img.owner == k + 1
            if layer.label == 0:
                assert not visible.any()  # dropped only when nothing of it shows
                continue
            assert np.array_equal(img.labels == layer.label, visible)
            # the colours there are that layer's texture (plus a little sensor grain)
            diff = np.abs(img.image[visible].astype(int) - layer.texture[visible].astype(int))
            assert diff.mean() < 4.0
        # objects keep at least half of their own area visible
        for k, layer in enumerate(img.layers):
            if layer.label and img.roles[layer.label - 1] != "background":
                assert (img.owner == k + 1).sum() * 2 >= layer.mask.sum()


def test_subsets_show_what_they_are_about():
    salient = [generate_image(s, "salient") for s in range(4)]
    for img in salient:
        areas = np.bincount(img.labels.ravel())[1:]
        big = [a for a, r in zip(areas, img.roles) if r == "salient"]
        assert len(big) == 1 and big[0] > 3 * max([a for a, r in zip(areas, img.roles) if r == "object"] or [0])
    inst = [generate_image(s, "instances") for s in range(4)]
    assert np.mean([sum(r == "object" for r in i.roles) for i in inst]) >= 4
    cam = [generate_image(s, "camouflaged") for s in range(4)]
    assert all("camouflaged" in i.roles for i in cam)


def test_images_are_a_function_of_the_seed():
    a, b, c = generate_image(7, "instances"), generate_image(7, "instances"), generate_image(8, "instances")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)
    assert image_seed(0, "train", "instances", 0) != image_seed(0, "val", "instances", 0)
    with pytest.raises(ValueError, match="unknown image subset"):
        generate_image(0, "nope")


def test_write_images_and_cli(tmp_path, capsys):
    names = write_images(tmp_path / "a", 2, "val", 0, subsets=["instances", "salient"], size=(64, 64),
                         progress=False)
    assert names == ["instances_00000", "instances_00001", "salient_00000", "salient_00001"]
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    for name in names:
        sub = name.rsplit("_", 1)[0]
        ids = read_palette_mask(tmp_path / "a" / "Annotations" / sub / f"{name}.png")[0]
        img = generate_image(meta["images"][name]["seed"], sub, (64, 64))
        assert np.array_equal(ids, img.labels)
        assert meta["images"][name]["roles"] == list(img.roles)
        assert os.path.isfile(tmp_path / "a" / "JPEGImages" / sub / f"{name}.jpg")
    assert main(["synth", "--images", "1", "--out", str(tmp_path / "b"), "--split", "train", "--seed", "0",
                 "--size", "64", "--no-progress"]) == 0
    assert sorted(os.listdir(tmp_path / "b" / "JPEGImages")) == sorted(IMAGE_SUBSETS)
    assert main(["synth", "--images", "1", "--out", str(tmp_path / "b"), "--split", "train", "--seed", "0",
                 "--no-progress"]) == 2  # not empty
    assert main(["synth", "--images", "1", "--out", str(tmp_path / "c"), "--split", "train", "--seed", "0",
                 "--subset", "occlusion", "--no-progress"]) == 2
    assert "unknown image subset" in capsys.readouterr().err
