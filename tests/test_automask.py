"""Automatic mask generation: point grids, crops, stability, NMS, union-find merging, attention read-out,
HDBSCAN prompts, small-region clean-up, evaluation, the generator end to end, parity of grid prompting with the
reference generator, and the `automask` command.

Models are tiny random-weight SAM 2.1 models at 128 / 256 px; every expected value is hand-computed, an
invariant, or the reference package's output.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from efficient_sam2 import build_sam2
from efficient_sam2.configs import get_config
from efficient_sam2.automask import (
    PRESETS,
    AutomaskDependencyError,
    AutomaticMaskGenerator,
    BoxedMask,
    UnionFind,
    best_match_ious,
    block_attention,
    box_iou,
    box_nms,
    build_layer_point_grids,
    build_point_grid,
    check_attention_site,
    clean_small_regions,
    cluster_rows,
    cosine_distance_matrix,
    default_attention_site,
    encode_with_attention,
    evaluate_automask,
    find_gt,
    generate_crop_boxes,
    instance_miou,
    load_gt_instances,
    medoids,
    merge_groups,
    merge_masks,
    overlap_over_smaller,
    remove_small_regions,
    stability_score,
    tokens_to_points,
)
from efficient_sam2.automask.amg import box_near_crop_edge
from efficient_sam2.automask.merge import boxed_merge_groups
from efficient_sam2.cli import main
from efficient_sam2.io.masks import decode_rle, write_object_mask, write_palette_mask
from reference_oracle import build_reference_model, randomize_, require_reference, save_official_checkpoint


pytestmark = pytest.mark.usefixtures("one_thread")


def _scene(h=200, w=300, seed=0, noise=True):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (40, 50, 60)
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - 0.45 * h) ** 2 + (xx - 0.4 * w) ** 2 < (0.225 * h) ** 2
    rect = np.zeros((h, w), bool)
    rect[int(0.3 * h):int(0.75 * h), int(0.63 * w):int(0.9 * w)] = True
    img[disc] = (220, 40, 40)
    img[rect] = (30, 200, 90)
    if noise:
        img = np.clip(img.astype(int) + rng.integers(0, 25, size=img.shape), 0, 255).astype(np.uint8)
    return img, disc, rect


@pytest.fixture(scope="module")
def tiny256():
    m = build_sam2("tiny", weights="random", image_size=256)
    randomize_(m, 0)
    return m.eval()


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, tiny256):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"model": tiny256.state_dict()}, path)
    return str(path)


def _block_sklearn(monkeypatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` now raises ImportError


# ----------------------------------------------------------------------------------------------------------------
# Point grids and crops


def test_point_grid_hand_values():
    np.testing.assert_allclose(build_point_grid(1), [[0.5, 0.5]])
    np.testing.assert_allclose(build_point_grid(2), [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    g = build_point_grid(32)
    assert g.shape == (1024, 2) and g.min() == pytest.approx(1 / 64) and g.max() == pytest.approx(63 / 64)
    assert [len(x) for x in build_layer_point_grids(32, 2, 2)] == [1024, 256, 64]
    with pytest.raises(ValueError, match="points per side"):
        build_layer_point_grids(2, 2, 4)


def test_crop_boxes_hand_values():
    # 100 x 200 (HxW), one layer, overlap int(0.5 * 100 * 2 / 2) = 50: crops 125 wide, 75 high
    boxes, layers = generate_crop_boxes((100, 200), 1, 0.5)
    assert boxes == [[0, 0, 200, 100], [0, 0, 125, 75], [0, 25, 125, 100], [75, 0, 200, 75], [75, 25, 200, 100]]
    assert layers == [0, 1, 1, 1, 1]
    # an image smaller than the tiles: no empty crop (a 1 x 1 image keeps only its own box on every layer)
    assert generate_crop_boxes((1, 1), 2, 0.3) == ([[0, 0, 1, 1]] * 3, [0, 1, 2])
    boxes, _ = generate_crop_boxes((3, 2), 2, 0.0)
    assert all(x1 > x0 and y1 > y0 for x0, y0, x1, y1 in boxes)


@pytest.mark.reference
def test_grid_crops_stability_edge_filter_match_reference():
    require_reference()
    from sam2.utils import amg as ref

    for n in (1, 3, 32):
        np.testing.assert_allclose(build_point_grid(n), ref.build_point_grid(n))
    for args in [(16, 2, 2), (8, 1, 1)]:
        for ours, theirs in zip(build_layer_point_grids(*args), ref.build_all_layer_point_grids(*args)):
            np.testing.assert_allclose(ours, theirs)
    for hw, layers, ratio in [((200, 300), 2, 512 / 1500), ((333, 101), 1, 0.3), ((64, 64), 3, 0.1)]:
        assert generate_crop_boxes(hw, layers, ratio) == ref.generate_crop_boxes(hw, layers, ratio)
    logits = torch.randn(6, 40, 50, generator=torch.Generator().manual_seed(0)) * 3
    for thr, off in [(0.0, 1.0), (0.5, 0.7)]:
        torch.testing.assert_close(stability_score(logits, thr, off), ref.calculate_stability_score(logits, thr, off))
    crop, hw = [75, 25, 200, 100], (100, 200)
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0 = rng.integers(0, 120), rng.integers(0, 70)
        b = [int(x0), int(y0), int(x0 + rng.integers(0, 80)), int(y0 + rng.integers(0, 30))]
        local = torch.tensor([[b[0] - crop[0], b[1] - crop[1], b[2] - crop[0], b[3] - crop[1]]])
        expected = bool(ref.is_box_near_crop_edge(local, crop, [0, 0, hw[1], hw[0]])[0])
        assert box_near_crop_edge(b, crop, hw) == expected


def test_stability_score_hand_values():
    logits = torch.tensor([[[2.0, 0.5, -0.5], [-2.0, 1.5, 0.9]]])  # > 1: 2 pixels, > -1: 5 pixels
    assert stability_score(logits, 0.0, 1.0).item() == pytest.approx(2 / 5)
    assert stability_score(torch.full((1, 2, 2), -5.0), 0.0, 1.0).item() == 0.0  # empty: 0, not NaN


# ----------------------------------------------------------------------------------------------------------------
# NMS and union-find merging


def test_box_nms_hand_made():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # IoU(0, 1) = 81 / 119 = 0.68; IoU(0, 2) = 1; box 3 is far away
    assert box_nms(boxes, scores, 0.7).tolist() == [3, 0, 1]
    assert box_nms(boxes, scores, 0.6).tolist() == [3, 0]
    assert box_nms(boxes, scores, 1.0).tolist() == [3, 0, 1, 2]
    assert box_nms(boxes[[0, 2]], np.array([0.5, 0.5]), 0.5).tolist() == [0]  # ties: lower index wins
    assert box_nms(np.zeros((0, 4)), np.zeros(0), 0.5).size == 0


def test_box_nms_equals_greedy_nms_on_the_full_iou_matrix():
    """`box_nms` computes IoU rows of kept boxes only; the textbook greedy NMS on the whole `box_iou` matrix must
    keep the same boxes in the same order (random boxes with ties, empty boxes and every threshold kind)."""
    def greedy(boxes, scores, thresh):
        order = np.argsort(-scores, kind="stable")
        iou = box_iou(boxes[order])
        suppressed = np.zeros(order.size, dtype=bool)
        keep = []
        for i in range(order.size):
            if not suppressed[i]:
                keep.append(int(order[i]))
                suppressed |= iou[i] > thresh
        return keep

    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(0, 120))
        xy = rng.integers(0, 40, (n, 2))
        boxes = np.concatenate([xy, xy + rng.integers(0, 25, (n, 2))], axis=1).astype(float)
        scores = rng.integers(0, 4, n).astype(float)  # many ties
        thresh = float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0]))
        assert box_nms(boxes, scores, thresh).tolist() == greedy(boxes, scores, thresh), trial


def _hand_masks():
    m = np.zeros((5, 10, 10), bool)
    m[0, 0:6, 0:6] = True  # 36 px
    m[1, 1:3, 1:3] = True  # 4 px, inside mask 0: overlap / smaller = 1
    m[2, 4:8, 4:8] = True  # 16 px, 4 px shared with mask 0: 0.25
    m[3, 5:9, 5:9] = True  # 16 px, 9 px shared with mask 2: 9/16 = 0.5625; 1 px with mask 0: 1/16
    m[4, 8:10, 0:2] = True  # 4 px, alone
    return m


def test_overlap_and_union_find_merging_hand_made():
    m = _hand_masks()
    ov = overlap_over_smaller(m)
    assert ov[0, 1] == 1.0 and ov[0, 2] == 0.25 and ov[2, 3] == 0.5625 and ov[0, 3] == 1 / 16 and ov[4, 0] == 0
    assert merge_groups(m, 0.5) == [[0, 1], [2, 3], [4]]
    assert merge_groups(m, 0.2) == [[0, 1, 2, 3], [4]]  # 0-2 link (0.25) chains 0, 1, 2, 3
    assert merge_groups(m, 0.5625) == [[0, 1], [2], [3], [4]]  # strictly greater than the threshold
    merged, scores, groups = merge_masks(m, [0.1, 0.9, 0.5, 0.6, 0.3], 0.5)
    assert groups == [[1, 0], [3, 2], [4]]  # best merged score first; best member first
    np.testing.assert_allclose(scores, [0.9, 0.6, 0.3])
    np.testing.assert_array_equal(merged[0], m[0] | m[1])
    np.testing.assert_array_equal(merged[1], m[2] | m[3])
    np.testing.assert_array_equal(merged[2], m[4])
    # the boxed variant (used by the generator) gives the same components
    boxed = [BoxedMask.from_mask(x) for x in m]
    for t in (0.0, 0.2, 0.5, 0.9):
        assert boxed_merge_groups(boxed, t) == merge_groups(m, t)


def test_boxed_merge_matches_dense_on_random_masks():
    rng = np.random.default_rng(1)
    masks = np.zeros((30, 40, 50), bool)
    for k in range(30):
        y, x = rng.integers(0, 35), rng.integers(0, 45)
        masks[k, y:y + rng.integers(2, 15), x:x + rng.integers(2, 15)] = True
        masks[k] &= rng.random((40, 50)) > 0.2
    boxed = [BoxedMask.from_mask(x) for x in masks]
    for t in (0.1, 0.3, 0.6):
        assert boxed_merge_groups(boxed, t) == merge_groups(masks, t)


def test_union_find():
    uf = UnionFind(6)
    assert uf.union(0, 3) and uf.union(3, 5) and not uf.union(5, 0)
    assert uf.groups() == [[0, 3, 5], [1], [2], [4]]


# ----------------------------------------------------------------------------------------------------------------
# Attention prompts


def test_medoid_hand_made():
    pos = np.array([0.0, 1.0, 2.0, 4.0, 10.0, 100.0, 101.0, 103.0, 50.0])
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, -1])
    d = np.abs(pos[:, None] - pos[None])
    # cluster 0 sums: 17, 14, 13, 15, 33 -> index 2 (the point nearest the mean, 3.4, would be index 3)
    # cluster 1 sums: 4, 3, 5 -> index 6; the noise point gives no prompt
    assert medoids(d, labels) == [2, 6]
    assert medoids(torch.from_numpy(d), labels) == [2, 6]
    assert medoids(d, np.full(9, -1)) == []


def test_tokens_to_points_non_square_hand_computed():
    # 4x4 token grid over a 200 x 300 (HxW) image: cells are 75 px wide, 50 px high
    pts = tokens_to_points([0, 7, 15], (4, 4), (200, 300))
    np.testing.assert_allclose(pts, [[37.5, 25.0], [262.5, 75.0], [262.5, 175.0]])
    # 2 x 4 grid over 100 x 400: token 5 is row 1, column 1 -> x = 1.5 * 100, y = 1.5 * 50
    np.testing.assert_allclose(tokens_to_points([5], (2, 4), (100, 400)), [[150.0, 75.0]])
    with pytest.raises(ValueError, match="token indices"):
        tokens_to_points([16], (4, 4), (200, 300))


def _synthetic_attention(sizes=(30, 25, 20), n_cols=75, seed=0):
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    cols = np.array_split(rng.permutation(n_cols), len(sizes))
    for g, size in enumerate(sizes):
        for _ in range(size):
            logits = rng.normal(0, 0.3, n_cols)
            logits[cols[g]] += 4.0  # each group attends to its own tokens
            p = np.exp(logits)
            rows.append(p / p.sum())
            truth.append(g)
    return np.array(rows), np.array(truth)


def test_cosine_distances_and_hdbscan_recover_groups():
    pytest.importorskip("sklearn.cluster", reason="scikit-learn is optional")
    from sklearn.cluster import HDBSCAN
    from sklearn.metrics import adjusted_rand_score

    rows, truth = _synthetic_attention()
    d = cosine_distance_matrix(torch.from_numpy(rows))
    n = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    np.testing.assert_allclose(d.numpy(), np.clip(1 - n @ n.T, 0, 2) * (1 - np.eye(len(rows))), atol=1e-6)
    labels = cluster_rows(d, min_samples=2, min_cluster_size=5)
    assert (labels >= 0).all()
    assert adjusted_rand_score(truth, labels) == 1.0
    # the precomputed matrix is HDBSCAN with metric="cosine"
    extra = {"copy": True} if "copy" in inspect.signature(HDBSCAN).parameters else {}
    direct = HDBSCAN(min_cluster_size=5, min_samples=2, metric="cosine", **extra).fit_predict(rows)
    assert adjusted_rand_score(direct, labels) == 1.0
    # every medoid belongs to its cluster
    for lab, tok in enumerate(medoids(d, labels)):
        assert labels[tok] == lab
    assert (cluster_rows(d[:3, :3], 2, 5) == -1).all()  # fewer points than min_cluster_size: no cluster


@torch.inference_mode()
def test_block_attention_equals_sdpa_head_and_encoder_is_unchanged():
    model = build_sam2("tiny", weights="random", image_size=128)
    randomize_(model, 3)
    model.eval()
    trunk = model.image_encoder.trunk
    block, head = 7, 1
    x_img = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    feats, attn, grid, _ = encode_with_attention(model, x_img, block, head, chunk=5)
    ref = model.forward_image(x_img)
    for a, b in zip([*feats.high_res, feats.vision, feats.vision_pos], [*ref.high_res, ref.vision, ref.vision_pos]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    # independent path to the block input, and the block's own attention output without its projection
    x = trunk.embed(x_img)
    for blk in trunk.blocks[:block]:
        x = blk(x)
    assert grid == (x.shape[1], x.shape[2]) == (8, 8)
    blk = copy.deepcopy(trunk.blocks[block])
    nh, hd = blk.attn.num_heads, blk.attn.head_dim
    tokens = blk.norm1(x).reshape(1, -1, x.shape[-1])
    v = blk.attn.qkv(tokens).view(1, tokens.shape[1], 3, nh, hd)[0, :, 2, head]  # (N, hd)
    blk.attn.proj = torch.nn.Identity()
    sdpa_head = blk.attention(tokens)[0, :, head * hd:(head + 1) * hd]
    torch.testing.assert_close(attn @ v, sdpa_head, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(attn.sum(1), torch.ones(64), rtol=0, atol=1e-5)
    torch.testing.assert_close(block_attention(trunk.blocks[block], x, head, chunk=4096), attn, rtol=0, atol=1e-6)
    # other heads differ (the head index is honoured)
    assert not torch.allclose(block_attention(trunk.blocks[block], x, 0), attn, atol=1e-3)


def test_attention_site_defaults_and_errors(tiny256):
    assert default_attention_site(tiny256) == (5, 2)
    for size, expected in [("tiny", (5, 2)), ("small", (7, 2)), ("base_plus", (12, 2)), ("large", (23, 2))]:
        assert default_attention_site(get_config(size)) == expected
        assert default_attention_site(get_config(size).hiera) == expected
    with pytest.raises(ValueError, match=r"global blocks are \[5, 7, 9\]"):
        check_attention_site(tiny256, 6, 0)
    with pytest.raises(ValueError, match="heads 0..3"):
        check_attention_site(tiny256, 5, 4)
    assert set(PRESETS) == {"low_latency", "high_quality", "sam3d", "sam1"}
    assert [(p.min_samples, p.min_cluster_size) for p in PRESETS.values()] == [(2, 10), (2, 5), (5, 40), (2, 3)]


# ----------------------------------------------------------------------------------------------------------------
# Small-region clean-up


def test_clean_small_regions_hand_made():
    m = np.zeros((20, 20), bool)
    m[2:12, 2:12] = True
    m[5:7, 5:6] = False  # 2 px hole
    m[15:17, 15:17] = True  # 4 px island
    out, changed = clean_small_regions(BoxedMask.from_mask(m), 5)
    expected = np.zeros_like(m)
    expected[2:12, 2:12] = True
    assert changed and np.array_equal(out.to_full(), expected)
    # a notch open to the outside of the box is not a hole, however small
    c = np.zeros((20, 20), bool)
    c[5:10, 5:10] = True
    c[7, 5:7] = False  # opens onto the box's left border
    out, changed = clean_small_regions(BoxedMask.from_mask(c), 10)
    assert not changed and np.array_equal(out.to_full(), c)


def test_clean_small_regions_equals_full_image_computation():
    rng = np.random.default_rng(0)
    for k in range(40):
        m = np.zeros((48, 64), bool)
        for _ in range(rng.integers(1, 6)):
            y, x = rng.integers(0, 44), rng.integers(0, 60)
            m[y:y + rng.integers(1, 20), x:x + rng.integers(1, 25)] = True
        if k % 4 == 1:
            m[:, rng.integers(0, 60)] = True  # spans the whole height: left and right outside parts
        if k % 4 == 2:
            m[rng.integers(0, 44), :] = True  # spans the whole width
        m &= rng.random(m.shape) > 0.1
        if not m.any():
            continue
        thr = int(rng.integers(2, 40))
        full, _ = remove_small_regions(m, thr, "holes")
        full, _ = remove_small_regions(full, thr, "islands")
        boxed, _ = clean_small_regions(BoxedMask.from_mask(m), thr)
        np.testing.assert_array_equal(boxed.to_full(), full)
    # a mask covering nearly the whole image: its background is itself a small hole
    m = np.ones((10, 10), bool)
    m[0, 0] = False
    out, changed = clean_small_regions(BoxedMask.from_mask(m), 5)
    assert changed and out.to_full().all()


# ----------------------------------------------------------------------------------------------------------------
# Evaluation


def test_best_match_iou_hand_made(tmp_path):
    gt = np.zeros((2, 10, 10), bool)
    gt[0, 0:4, 0:4] = True  # 16 px
    gt[1, 5:10, 5:10] = True  # 25 px
    pred = np.zeros((3, 10, 10), bool)
    pred[0, 0:4, 0:4] = True  # = instance 0
    pred[1, 5:10, 5:10] = True
    pred[1, 0:1, 5:10] = True  # instance 1 + 5 px: 25 / 30
    pred[2] = True  # everything: 16 / 100 and 25 / 100
    np.testing.assert_allclose(best_match_ious(gt, pred), [1.0, 25 / 30])
    assert instance_miou(gt, pred) == pytest.approx((1 + 25 / 30) / 2)
    np.testing.assert_allclose(best_match_ious(gt, pred[2:]), [0.16, 0.25])
    np.testing.assert_allclose(best_match_ious(gt, np.zeros((0, 10, 10), bool)), [0.0, 0.0])
    ignore = np.zeros((10, 10), bool)
    ignore[0, :] = True  # the extra row of prediction 1 is ignored
    np.testing.assert_allclose(best_match_ious(gt, pred[1:2], ignore), [0.0, 1.0])
    assert np.isnan(instance_miou(np.zeros((0, 10, 10), bool), pred))

    # ground truth on disk: an id PNG with an ignore id, and a per-instance folder
    ids = np.zeros((10, 10), np.uint8)
    ids[gt[0]], ids[gt[1]], ids[9, 0] = 3, 7, 255
    write_palette_mask(tmp_path / "a.png", ids)
    masks, ign = load_gt_instances(tmp_path / "a.png", ignore_id=255)
    np.testing.assert_array_equal(masks, gt)
    np.testing.assert_array_equal(ign, ids == 255)
    os.makedirs(tmp_path / "b")
    write_object_mask(tmp_path / "b" / "x.png", gt[1])
    write_object_mask(tmp_path / "b" / "y.png", gt[0])
    masks, ign = load_gt_instances(tmp_path / "b")
    np.testing.assert_array_equal(masks, gt[[1, 0]])
    assert ign is None
    assert find_gt(tmp_path, "/somewhere/a.jpg").endswith("a.png")
    assert find_gt(tmp_path, "b.jpeg").endswith("b")
    with pytest.raises(ValueError, match="no ground truth"):
        find_gt(tmp_path, "c.jpg")


# ----------------------------------------------------------------------------------------------------------------
# The generator end to end


def _check_records(result, image_hw):
    h, w = image_hw
    masks = result.binary_masks()
    assert masks.shape == (len(result.masks), h, w)
    for rec, mask in zip(result.masks, masks):
        rle = rec["segmentation"]
        assert isinstance(rle["counts"], str) and rle["size"] == [h, w]
        np.testing.assert_array_equal(decode_rle(rle), mask)
        assert rec["area"] == int(mask.sum()) > 0
        ys, xs = np.nonzero(mask)
        assert rec["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        for x, y in rec["point_coords"]:
            assert 0 <= x <= w and 0 <= y <= h
        assert 0.0 <= rec["stability_score"] <= 1.0
    assert [r["predicted_iou"] for r in result.masks] == sorted((r["predicted_iou"] for r in result.masks),
                                                                reverse=True)
    json.dumps(result.to_json())


def test_grid_end_to_end_without_scikit_learn(tiny256, monkeypatch):
    _block_sklearn(monkeypatch)
    img, _, _ = _scene()
    gen = AutomaticMaskGenerator(tiny256, "grid", points_per_side=4, pred_iou_thresh=0.0,
                                 stability_score_thresh=0.0, box_nms_thresh=1.0)
    res = gen.generate_result(img)
    assert res.num_prompts == 16 and len(res.masks) > 10  # 48 decoded; only empty masks are dropped
    _check_records(res, img.shape[:2])
    expected_points = build_point_grid(4) * [300, 200]
    for rec in res.masks:
        assert np.isclose(expected_points, rec["point_coords"][0]).all(axis=1).any()
    assert set(res.timings) == {"load", "embedding", "attention", "clustering", "decoding", "merging",
                                "encoding", "total"}
    assert res.timings["attention"] == 0 and res.timings["embedding"] > 0
    # default NMS: no two kept boxes overlap by more than the threshold
    nms = AutomaticMaskGenerator(tiny256, "grid", points_per_side=4, pred_iou_thresh=0.0,
                                 stability_score_thresh=0.0, output_mode="uncompressed_rle").generate_result(img)
    from efficient_sam2.automask import box_iou

    boxes = np.array([m.box for m in nms.boxed_masks], float)
    iou = box_iou(boxes) - np.eye(len(boxes))
    assert len(nms.masks) < len(res.masks) and (iou <= 0.7).all()
    assert isinstance(nms.masks[0]["segmentation"]["counts"], list)
    # attention prompting explains what is missing
    with pytest.raises(AutomaskDependencyError, match=r"pip install efficient-sam2\[automask\]"):
        AutomaticMaskGenerator(tiny256, "attention")


def test_attention_end_to_end(tiny256):
    pytest.importorskip("sklearn.cluster", reason="scikit-learn is optional")
    img, _, _ = _scene()
    h, w = img.shape[:2]
    common = dict(preset="high_quality", pred_iou_thresh=0.0, stability_score_thresh=0.0)
    res = AutomaticMaskGenerator(tiny256, "attention", merge="nms", box_nms_thresh=1.0, **common)
    res = res.generate_result(img)
    info = res.attention["crops"][0]
    assert res.attention["block"] == 5 and res.attention["head"] == 2 and info["num_tokens"] == 256
    assert res.num_prompts == info["num_clusters"] > 0
    assert len(res.masks) == res.num_prompts  # one mask per prompt, nothing suppressed at threshold 1
    _check_records(res, (h, w))
    for rec in res.masks:  # every prompt is the centre of a cell of the 16 x 16 token grid
        (x, y), = rec["point_coords"]
        assert (x / (w / 16) - 0.5) == pytest.approx(round(x / (w / 16) - 0.5))
        assert (y / (h / 16) - 0.5) == pytest.approx(round(y / (h / 16) - 0.5))
    assert all(res.timings[s] > 0 for s in ("embedding", "attention", "clustering", "decoding"))

    merged = AutomaticMaskGenerator(tiny256, "attention", **common).generate_result(img)
    assert merged.num_prompts == res.num_prompts
    _check_records(merged, (h, w))
    assert sum(r["num_merged"] for r in merged.masks) == res.num_prompts
    # merging = union-find on the unmerged masks (computed here on dense arrays) followed by unions
    expected, scores, groups = merge_masks(res.binary_masks(), [r["predicted_iou"] for r in res.masks], 0.5)
    np.testing.assert_array_equal(merged.binary_masks(), expected)
    assert [r["predicted_iou"] for r in merged.masks] == pytest.approx(scores.tolist())
    assert [r["num_merged"] for r in merged.masks] == [len(g) for g in groups]
    assert [r["point_coords"][0] for r in merged.masks] == [res.masks[g[0]]["point_coords"][0] for g in groups]
    # every output of every prompt (attention_masks="all"): the best-of-3 candidates are among them
    every = AutomaticMaskGenerator(tiny256, "attention", merge="nms", box_nms_thresh=1.0, attention_masks="all",
                                   **common).generate_result(img)
    assert every.num_prompts == res.num_prompts and res.num_prompts < len(every.masks) <= 3 * res.num_prompts
    keys = lambda r: (tuple(r["point_coords"][0]), round(r["predicted_iou"], 6))  # noqa: E731
    assert {keys(r) for r in res.masks} <= {keys(r) for r in every.masks}
    assert every.to_json()["masks"] and AutomaticMaskGenerator(tiny256, "attention").attention_masks == "best"
    with pytest.raises(ValueError, match="attention_masks"):
        AutomaticMaskGenerator(tiny256, "attention", attention_masks="top")
    # noise prompts: every token HDBSCAN left as noise is prompted too, besides the medoids
    noisy = AutomaticMaskGenerator(tiny256, "attention", merge="nms", box_nms_thresh=1.0, noise_prompts=True,
                                   **common).generate_result(img)
    crop = noisy.attention["crops"][0]
    assert (crop["num_clusters"], crop["num_noise_tokens"]) == (info["num_clusters"], info["num_noise_tokens"])
    assert noisy.num_prompts == crop["num_prompts"] == info["num_clusters"] + info["num_noise_tokens"]
    assert info["num_noise_tokens"] > 0  # the case is not vacuous
    assert {tuple(r["point_coords"][0]) for r in res.masks} <= {tuple(r["point_coords"][0]) for r in noisy.masks}
    assert AutomaticMaskGenerator(tiny256, "attention").noise_prompts is False  # the thesis's rule
    with pytest.raises(TypeError, match="noise_prompts"):
        AutomaticMaskGenerator(tiny256, "attention", noise_prompts="yes")
    with pytest.raises(ValueError, match="global blocks"):
        AutomaticMaskGenerator(tiny256, "attention", block=4)
    with pytest.raises(ValueError, match="unknown preset"):
        AutomaticMaskGenerator(tiny256, "attention", preset="fast")


@pytest.mark.reference
def test_grid_prompting_matches_reference_generator(tmp_path):
    require_reference()
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    S = 128
    ref = build_reference_model("sam2.1_hiera_tiny", image_size=S, seed=1)
    ours = build_sam2("tiny", save_official_checkpoint(ref, tmp_path / "t.pt"), image_size=S)
    ref_forward = ref.forward_image

    def forward_contiguous(x):  # the reference image predictor .view()s channels-last features
        out = ref_forward(x)
        out["backbone_fpn"] = [f.contiguous() for f in out["backbone_fpn"]]
        out["vision_pos_enc"] = [f.contiguous() for f in out["vision_pos_enc"]]
        return out

    ref.forward_image = forward_contiguous
    img, _, _ = _scene()
    settings = [
        dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.3, box_nms_thresh=0.95),
        dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.95,
             crop_n_layers=1, crop_n_points_downscale_factor=2, crop_nms_thresh=0.95),
        dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, multimask_output=False),
    ]
    for kw in settings:
        gen = SAM2AutomaticMaskGenerator(ref, **kw)
        gen.predictor._bb_feat_sizes = [(S // 4,) * 2, (S // 8,) * 2, (S // 16,) * 2]  # hard-coded for 1024
        theirs = gen.generate(img)
        mine = AutomaticMaskGenerator(ours, **kw).generate_result(img)
        assert len(theirs) == len(mine.masks) > 0, kw
        key = lambda r: (r["point_coords"][0][0], r["point_coords"][0][1], r["area"])  # noqa: E731
        for a, (b, m) in zip(sorted(theirs, key=key),
                             sorted(zip(mine.masks, mine.binary_masks()), key=lambda t: key(t[0]))):
            np.testing.assert_array_equal(a["segmentation"], m)
            assert a["area"] == b["area"]
            assert b["predicted_iou"] == pytest.approx(a["predicted_iou"], abs=1e-4)
            assert b["stability_score"] == pytest.approx(a["stability_score"], abs=1e-4)
            np.testing.assert_allclose(b["point_coords"], a["point_coords"], atol=1e-4)
            x, y, bw, bh = a["bbox"]  # the reference's width is x1 - x0; ours counts pixels (COCO)
            assert b["bbox"] == [x, y, bw + 1, bh + 1]


def test_evaluate_automask_compares_methods(tiny256, tmp_path):
    img, disc, rect = _scene(96, 128, noise=False)
    Image.fromarray(img).save(tmp_path / "scene.png")
    os.makedirs(tmp_path / "gt")
    write_palette_mask(tmp_path / "gt" / "scene.png", disc.astype(np.uint8) + 2 * rect.astype(np.uint8))
    Image.fromarray(img).save(tmp_path / "nogt.jpg")
    gens = {"grid": AutomaticMaskGenerator(tiny256, "grid", points_per_side=2, pred_iou_thresh=0.0,
                                           stability_score_thresh=0.0)}
    ev = evaluate_automask(gens, [str(tmp_path / "scene.png"), str(tmp_path / "nogt.jpg")], tmp_path / "gt",
                           progress=False)
    s = ev.methods["grid"]
    res = gens["grid"].generate_result(img)
    expected = best_match_ious(np.stack([disc, rect]), res.binary_masks())
    assert len(s.ious) == 2 and s.ious == pytest.approx(expected.tolist())
    assert ev.missing_gt == [str(tmp_path / "nogt.jpg")] and s.num_prompts == [4]
    assert "grid" in ev.summary()


# ----------------------------------------------------------------------------------------------------------------
# The command


def _write_images(folder, sizes=((72, 96),)):
    os.makedirs(folder, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(_scene(h, w, seed=i)[0]).save(os.path.join(folder, f"img{i}.jpg"))


def test_cli_grid_and_attention_with_evaluation(tiny_ckpt, tmp_path, capsys):
    pytest.importorskip("sklearn.cluster", reason="scikit-learn is optional")
    images, gt, out = tmp_path / "images", tmp_path / "gt", tmp_path / "out"
    _write_images(images)
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    _, disc, rect = _scene(72, 96, seed=0)
    os.makedirs(gt)
    write_palette_mask(gt / "img0.png", disc.astype(np.uint8) + 2 * rect.astype(np.uint8))
    args = ["automask", str(images), "--model", "tiny", "--checkpoint", tiny_ckpt, "--image-size", "256",
            "--output", str(out), "--prompting", "both", "--points-per-side", "2", "--pred-iou-thresh", "0",
            "--stability-score-thresh", "0", "--preset", "high_quality", "--min-region-area", "20",
            "--gt-dir", str(gt), "--attention-masks", "all", "--noise-prompts", "on"]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 1  # one unreadable image: reported, the others processed
    assert "broken.jpg" in captured.err and "cannot decode" in captured.err
    for method in ("grid", "attention"):
        doc = json.loads((out / method / "img0.json").read_text())
        assert doc["prompting"] == method and doc["height"] == 72 and doc["width"] == 96
        assert doc["num_masks"] == len(doc["masks"]) > 0
        for rec in doc["masks"]:
            mask = decode_rle(rec["segmentation"])
            assert mask.shape == (72, 96) and mask.sum() == rec["area"]
        assert doc["evaluation"]["num_instances"] == 2 and 0 <= doc["evaluation"]["miou"] <= 1
        assert set(doc["timings"]) >= {"embedding", "attention", "clustering", "decoding", "merging", "total"}
        overlay = np.array(Image.open(out / method / "img0.png"))
        assert overlay.shape == (72, 96, 3)
    assert json.loads((out / "grid" / "img0.json").read_text())["num_prompts"] == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"]["attention"]["num_instances"] == 2
    # --attention-masks reaches the generator (tiny's own default is the thesis's "best")
    assert summary["methods"]["attention"]["settings"]["attention_masks"] == "all"
    assert summary["methods"]["attention"]["settings"]["noise_prompts"] is True
    assert json.loads((out / "attention" / "img0.json").read_text())["settings"]["attention_masks"] == "all"
    assert [f["image"] for f in summary["failures"]] == [str(images / "broken.jpg")]
    assert "mean best-match IoU" in captured.out

    # the output folder is not empty now: refused without --overwrite, nothing touched
    before = (out / "grid" / "img0.json").read_bytes()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "grid" / "img0.json").read_bytes() == before


def test_cli_bad_inputs(tiny_ckpt, tmp_path, capsys, monkeypatch):
    images = tmp_path / "images"
    _write_images(images)
    base = ["automask", str(images), "--model", "tiny", "--image-size", "256"]

    def fails(argv, *needles, code=2):
        assert main(argv) == code
        err = capsys.readouterr().err
        for n in needles:
            assert n in err, err
        assert "Traceback" not in err

    fails(base + ["--checkpoint", str(tmp_path / "missing.pt"), "--output", str(tmp_path / "o1")],
          "missing.pt", "not found")
    os.makedirs(tmp_path / "empty")
    fails(["automask", str(tmp_path / "empty"), "--model", "tiny", "--checkpoint", tiny_ckpt,
           "--output", str(tmp_path / "o2")], "no images")
    fails(["automask", str(tmp_path / "nothing.jpg"), "--model", "tiny", "--checkpoint", tiny_ckpt,
           "--output", str(tmp_path / "o3")], "input not found")
    fails(base + ["--checkpoint", tiny_ckpt, "--output", str(tmp_path / "o4"), "--evaluate"], "--gt-dir")
    if importlib.util.find_spec("sklearn") is not None:
        fails(base + ["--checkpoint", tiny_ckpt, "--output", str(tmp_path / "o5"), "--prompting", "attention",
                      "--block", "6"], "global blocks")
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"garbage")
    fails(base + ["--checkpoint", str(bad_ckpt), "--output", str(tmp_path / "o6")], "could not read checkpoint")
    _block_sklearn(monkeypatch)
    fails(base + ["--checkpoint", tiny_ckpt, "--output", str(tmp_path / "o7"), "--prompting", "attention"],
          "pip install efficient-sam2[automask]")
    assert not any(os.path.exists(tmp_path / f"o{i}") for i in range(1, 8))


def test_mask_nms_equals_greedy_nms_on_mask_iou():
    """`batched.mask_nms` (chunked matrix products) keeps what the textbook greedy rule on the low-resolution
    masks' IoU keeps, in the same order: random blob masks with ties in the scores, chunks smaller than the
    candidate count, and thresholds from 0 to 1."""
    from efficient_sam2.automask.batched import mask_nms

    def greedy(logits, scores, thresh):
        masks = (logits > 0).flatten(1).numpy()
        order = np.argsort(-scores.numpy().astype(np.float64), kind="stable")
        keep = []
        for i in order:
            ok = True
            for k in keep:
                inter = (masks[i] & masks[k]).sum()
                union = (masks[i] | masks[k]).sum()
                if union > 0 and inter / union > thresh:
                    ok = False
                    break
            if ok:
                keep.append(int(i))
        return keep

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    for trial in range(40):
        n = int(rng.integers(1, 60))
        cx, cy, r = rng.uniform(0, 16, n), rng.uniform(0, 16, n), rng.uniform(1, 8, n)
        logits = torch.from_numpy(np.stack([r[k] - np.hypot(xx - cx[k], yy - cy[k]) for k in range(n)])).float()
        scores = torch.from_numpy(rng.integers(0, 5, n).astype(np.float32))
        thresh = float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0]))
        got = mask_nms(logits, scores, thresh, chunk=int(rng.integers(1, 20))).tolist()
        assert got == greedy(logits, scores, thresh), trial
    assert mask_nms(torch.zeros(0, 4, 4), torch.zeros(0), 0.5).numel() == 0


def test_grid_merge_default_is_the_models():
    from efficient_sam2.automask.generator import (default_attention_masks, default_grid_merge, default_merge,
                                                   default_noise_prompts)
    from efficient_sam2.build import build_sam2
    from efficient_sam2.configs import get_config

    assert default_grid_merge(get_config("micro")) == "mask-nms"  # measured (BENCHMARKS.md "Mask NMS")
    assert default_grid_merge(get_config("sam2.1_hiera_tiny")) == "nms"  # SAM's
    model = build_sam2("micro", weights="random", image_size=64)
    assert AutomaticMaskGenerator(model, "grid", points_per_side=4).merge == "mask-nms"
    assert AutomaticMaskGenerator(model, "grid", points_per_side=4, merge="nms").merge == "nms"
    # attention: the thesis's union-find on the best output, or the model's measured choice
    assert default_merge(get_config("sam2.1_hiera_tiny"), "attention") == "union-find"
    assert default_attention_masks(get_config("sam2.1_hiera_tiny")) == "best"
    assert default_merge(get_config("micro"), "attention") == "mask-nms"
    assert default_attention_masks(get_config("micro")) == "all"
    assert not default_noise_prompts(get_config("sam2.1_hiera_tiny")) and default_noise_prompts(get_config("micro"))
    att = AutomaticMaskGenerator(model, "attention")
    assert (att.merge, att.attention_masks) == ("mask-nms", "all")
    assert att.settings()["attention_masks"] == "all"
    assert AutomaticMaskGenerator(model, "attention", merge="union-find").merge == "union-find"
    gen = AutomaticMaskGenerator(model, "grid", points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert gen.settings()["merge"] == "mask-nms" and gen.settings()["merge_thresh"] == 0.6
    assert AutomaticMaskGenerator(model, "attention", merge="union-find").merge_thresh == 0.5  # union-find's own
    assert AutomaticMaskGenerator(model, "grid", merge="mask-nms", merge_thresh=0.4).merge_thresh == 0.4
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    for merge in ("nms", "mask-nms"):
        res = AutomaticMaskGenerator(model, "grid", points_per_side=4, merge=merge, pred_iou_thresh=0.0,
                                     stability_score_thresh=0.0).generate_result(image)
        assert all(m["num_merged"] == 1 for m in res.masks)


def test_spread_prompts_sample_each_cluster_farthest_first_by_hand():
    from efficient_sam2.automask.attention_prompts import spread_prompts

    # a 2 x 8 token grid: cluster 0 is the first row (medoid 3), cluster 1 tokens 8 and 9, token 10 is noise
    labels = np.array([0] * 8 + [1, 1, -1] + [1] * 5)
    assert spread_prompts(labels, [3, 8], 8, 3) == [7, 0, 15, 11]
    # row 0 from 3: token 7 (4 cells), then 0 (3 cells; then at most 2). Cluster 1 from 8: 15 (7 cells), then 11
    # (3 cells from 8 and 4 from 15; 12 ties at 3 but comes later)
    assert spread_prompts(labels, [3, 8], 8, 0) == []
    assert spread_prompts(labels, [3, 8], 8, 10) == []
    with pytest.raises(ValueError, match="centres"):
        spread_prompts(labels, [3], 8, 3)


def test_region_radii_by_hand():
    from efficient_sam2.automask.attention_prompts import region_radii

    # a 1 x 8 token grid, 16 px per token: cluster 0 is tokens 0-5, prompted at 2 (medoid) and 5; token 7 is noise
    labels = np.array([0, 0, 0, 0, 0, 0, 1, -1])
    radii = region_radii(labels, [2, 5, 7], 8, 16.0, 12.0, 100.0)
    # token 3 is nearer 2 (1 cell) than 5 (2 cells), token 4 nearer 5: shares 4 and 2 tokens
    assert np.allclose(radii, [16 * np.sqrt(4 / np.pi), 16 * np.sqrt(2 / np.pi), 12.0])
    assert np.allclose(region_radii(labels, [2, 5, 7], 8, 16.0, 12.0, 15.0, scale=2.0), [15.0, 15.0, 12.0])
    assert region_radii(labels, [], 8, 16.0, 12.0, 48.0).shape == (0,)
