"""Image predictor: clear errors for bad inputs, and its behaviour on a random-weight tiny model at 128 px."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from efficient_sam2 import build_sam2_image_predictor
from efficient_sam2.io.frames import ImageError, ImageNotFoundError
from efficient_sam2.predictors import ImagePredictor, PromptError
from reference_oracle import randomize_

IMAGE_SIZE = 128
LOW_RES = IMAGE_SIZE // 4
H, W = 60, 90


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    pred = build_sam2_image_predictor("tiny", weights="random", image_size=IMAGE_SIZE)
    randomize_(pred.model, 0)
    return pred.model


def _image(seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, size=(H, W, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:H, :W]
    img[(yy - 30) ** 2 + (xx - 30) ** 2 < 14**2] = (220, 40, 40)
    img[15:45, 55:80] = (30, 200, 90)
    return img


@pytest.fixture()
def predictor(model):
    pred = ImagePredictor(model)
    pred.set_image(_image())
    return pred


def test_no_image_set(model):
    pred = ImagePredictor(model)
    assert not pred.is_image_set
    with pytest.raises(RuntimeError, match=r"no image is set: call predictor.set_image\(image\) before predict"):
        pred.predict(point_coords=[[10, 10]], point_labels=[1])
    with pytest.raises(RuntimeError, match="no image is set"):
        pred.get_image_embedding()
    pred.set_image(_image())
    pred.reset_predictor()
    with pytest.raises(RuntimeError, match="no image is set"):
        pred.predict(box=[1, 1, 5, 5])


def test_bad_prompts(predictor):
    cases = [
        (dict(point_coords=[[95, 10]], point_labels=[1]),
         r"point \(95, 10\) is outside the image \(x in \[0, 90\], y in \[0, 60\]\)"),
        (dict(point_coords=[[0.2, 1.5]], point_labels=[1], normalize_coords=False),
         r"point \(0.2, 1.5\) is outside the image \(x in \[0, 1\], y in \[0, 1\]\)"),
        (dict(point_coords=[[np.inf, 10]], point_labels=[1]), "point coordinates must be finite numbers"),
        (dict(box=[10, 10, 100, 20]), r"box corner \(100, 20\) is outside the image"),
        (dict(box=[40, 10, 20, 30]), "has x1 < x0 or y1 < y0"),
        (dict(box=[1, 2, 3]), r"a box is four numbers \(x0, y0, x1, y1\), got 3"),
        (dict(), "empty prompt: give points"),
        (dict(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0)), "empty prompt"),
        (dict(point_coords=[[10, 10], [20, 20]], point_labels=[1]), "got 2 points but 1 labels"),
        (dict(point_coords=[[10, 10]]), "point_coords and point_labels must be given together"),
        (dict(point_coords=[[10, 10, 3]], point_labels=[1]), r"points must be an \(N, 2\) array"),
        (dict(point_coords=[[10, 10]], point_labels=[2]), r"point labels must be 1 \(positive\) or 0 \(negative\)"),
        (dict(mask_input=np.zeros((1, 16, 16))),
         r"mask_input must be the \(1, 32, 32\) low-res logits .* \(image_size 128\), got shape \(1, 16, 16\)"),
        (dict(mask_input=np.zeros((3, LOW_RES, LOW_RES))), r"mask_input must be .* got shape \(3, 32, 32\)"),
        (dict(mask_input=np.full((1, LOW_RES, LOW_RES), np.nan)), "mask_input must hold finite logits"),
    ]
    for kwargs, message in cases:
        with pytest.raises(PromptError, match=message):
            predictor.predict(**kwargs)


def test_bad_images(model, tmp_path):
    pred = ImagePredictor(model)
    with pytest.raises(ImageError, match=r"has shape \(60, 90\); expected \(H, W, 3\) RGB"):
        pred.set_image(_image()[..., 0])  # a grey array is ambiguous: rejected, not guessed
    rgba = np.concatenate([_image(), np.full((H, W, 1), 255, np.uint8)], axis=2)
    with pytest.raises(ImageError, match=r"has shape \(60, 90, 4\); expected \(H, W, 3\) RGB"):
        pred.set_image(rgba)
    with pytest.raises(ImageError, match="has dtype float32; expected uint8 RGB"):
        pred.set_image(_image().astype(np.float32) / 255)
    with pytest.raises(ImageNotFoundError, match="image file not found"):
        pred.set_image(str(tmp_path / "missing.png"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match=r"cannot decode image .*broken\.jpg"):
        pred.set_image(str(broken))
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((H, W), 40000, np.uint16)).save(deep)
    with pytest.raises(ImageError, match="more than 8 bits per pixel"):
        pred.set_image(str(deep))
    with pytest.raises(ImageError, match="cannot load an image from list"):
        pred.set_image([[1, 2, 3]])
    # a failed set_image forgets the previous image instead of silently predicting on it
    pred.set_image(_image())
    with pytest.raises(ImageError):
        pred.set_image(rgba)
    assert not pred.is_image_set


def test_image_inputs_are_converted(model, tmp_path):
    img = _image()
    pred = ImagePredictor(model)
    pred.set_image(img)
    reference = pred.get_image_embedding().clone()
    path = tmp_path / "img.png"
    Image.fromarray(img).save(path)
    for source in (Image.fromarray(img), str(path), path, Image.fromarray(img).convert("RGBA")):
        pred.set_image(source)
        assert torch.equal(pred.get_image_embedding(), reference), type(source)
    # grey PIL images become RGB with three equal channels
    grey = img[..., 1]
    pred.set_image(Image.fromarray(grey, mode="L"))
    grey_embedding = pred.get_image_embedding().clone()
    pred.set_image(np.repeat(grey[..., None], 3, axis=2))
    assert torch.equal(pred.get_image_embedding(), grey_embedding)


def test_multimask_single_and_box(predictor):
    masks, scores, low = predictor.predict(point_coords=[[30, 30]], point_labels=[1], multimask_output=True)
    assert masks.shape == (3, H, W) and masks.dtype == bool
    assert scores.shape == (3,) and low.shape == (3, LOW_RES, LOW_RES)
    assert ((scores >= 0) & (scores <= 1)).all()  # sigmoid IoU predictions

    logits, scores1, low1 = predictor.predict(point_coords=[[30, 30], [70, 30]], point_labels=[1, 0],
                                              multimask_output=False, return_logits=True)
    assert logits.shape == (1, H, W) and logits.dtype == np.float32
    assert scores1.shape == (1,) and low1.shape == (1, LOW_RES, LOW_RES)
    # masks are the video-size upsampling of the low-res logits, thresholded at 0
    up = F.interpolate(torch.from_numpy(low1)[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(logits, up.numpy(), atol=1e-5)
    masks1, _, _ = predictor.predict(point_coords=[[30, 30], [70, 30]], point_labels=[1, 0], multimask_output=False)
    np.testing.assert_array_equal(masks1, logits > 0)
    assert 0 < masks1.sum() < H * W  # informative

    box_masks, box_scores, _ = predictor.predict(box=np.array([55, 15, 80, 45]), multimask_output=False)
    assert box_masks.shape == (1, H, W) and box_scores.shape == (1,)

    # a low-res mask from an earlier call can be fed back, alone or with clicks
    refined, _, _ = predictor.predict(mask_input=low1, multimask_output=False)
    assert refined.shape == (1, H, W)
    refined2, _, _ = predictor.predict(point_coords=[[30, 30]], point_labels=[1], mask_input=low1[0],
                                       multimask_output=False, return_logits=True)
    assert not np.array_equal(refined2, predictor.predict(point_coords=[[30, 30]], point_labels=[1],
                                                          multimask_output=False, return_logits=True)[0])


def test_normalized_coordinates_match_pixel_coordinates(predictor):
    px = predictor.predict(point_coords=[[45, 30]], point_labels=[1], box=[20, 10, 70, 50], return_logits=True)
    unit = predictor.predict(point_coords=[[0.5, 0.5]], point_labels=[1], box=[20 / W, 10 / H, 70 / W, 50 / H],
                             normalize_coords=False, return_logits=True)
    for a, b in zip(px, unit):
        np.testing.assert_allclose(a, b, atol=1e-4)

