"""J / F metrics against hand-computed values and brute-force re-implementations of the DAVIS definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from efficient_sam2.evaluation.metrics import (
    boundary_f_measure,
    boundary_map,
    disk,
    region_similarity,
    tolerance_radius,
)


def square(size: int, top: int, left: int, side: int, width: int | None = None) -> np.ndarray:
    """(size, width or size) bool image with a side x side square whose top-left pixel is (top, left)."""
    m = np.zeros((size, width or size), dtype=bool)
    m[top : top + side, left : left + side] = True
    return m


def pixels(shape, coords) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    for y, x in coords:
        m[y, x] = True
    return m


# ---------------------------------------------------------------------------------------------------------------------
# Brute-force references (pure Python loops, written from the definitions, sharing no code with the package)


def naive_boundary(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    out = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (1, 0), (1, 1)):
                ny, nx = y + dy, x + dx
                if ny < h and nx < w and mask[ny, nx] != mask[y, x]:
                    out[y, x] = True
    return out


def naive_f(gt: np.ndarray, pred: np.ndarray, radius: float) -> float:
    gb, pb = naive_boundary(gt), naive_boundary(pred)
    g_pts, p_pts = np.argwhere(gb), np.argwhere(pb)
    if len(p_pts) == 0 and len(g_pts) == 0:
        return 1.0
    if len(p_pts) == 0 or len(g_pts) == 0:
        return 0.0  # (P, R) = (1, 0) or (0, 1)
    d2 = ((p_pts[:, None, :] - g_pts[None, :, :]) ** 2).sum(-1)
    close = d2 <= radius * radius
    precision = close.any(axis=1).mean()
    recall = close.any(axis=0).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def random_blobs(rng: np.random.Generator, shape) -> np.ndarray:
    # Smooth random field thresholded -> a few irregular blobs, some touching the image border.
    noise = rng.random((shape[0] // 4 + 2, shape[1] // 4 + 2))
    field = np.kron(noise, np.ones((4, 4)))[: shape[0], : shape[1]]
    return field > 0.6


# ---------------------------------------------------------------------------------------------------------------------
# J


def test_region_similarity_shifted_squares():
    # Two 10x10 squares on a 40x40 image, the second shifted 2 px to the right:
    # intersection 10 x 8 = 80, union 100 + 100 - 80 = 120 -> J = 80 / 120.
    gt = square(40, 10, 10, 10)
    pred = square(40, 10, 12, 10)
    assert region_similarity(gt, pred) == pytest.approx(80 / 120)
    assert region_similarity(gt, gt) == 1.0


def test_region_similarity_empty_cases():
    gt = square(40, 10, 10, 10)
    empty = np.zeros_like(gt)
    assert region_similarity(gt, empty) == 0.0  # empty prediction
    assert region_similarity(empty, gt) == 0.0  # empty GT
    assert region_similarity(empty, empty) == 1.0  # both empty


def test_region_similarity_stack_and_numeric_masks():
    gt = np.stack([square(40, 10, 10, 10), square(40, 0, 0, 5), np.zeros((40, 40), bool)])
    pred = np.stack([square(40, 10, 12, 10), square(40, 0, 0, 5), np.zeros((40, 40), bool)])
    np.testing.assert_allclose(region_similarity(gt, pred), [80 / 120, 1.0, 1.0])
    # Numeric masks: any non-zero value is foreground.
    assert region_similarity(gt[0].astype(np.uint8) * 7, pred[0].astype(np.uint8)) == pytest.approx(80 / 120)
    with pytest.raises(ValueError, match="shapes differ"):
        region_similarity(gt, pred[:2])


# ---------------------------------------------------------------------------------------------------------------------
# Boundary maps


def test_boundary_map_interior_square():
    # Square rows/cols 10..19. Foreground pixels of its last row and last column differ from their bottom / right
    # neighbour (19 px); background pixels of column 9 (rows 9..19) and row 9 (cols 9..19) differ from a right, bottom
    # or bottom-right neighbour inside the square (21 px). Together: the 40-pixel outline of the box 9..19 x 9..19.
    b = boundary_map(square(40, 10, 10, 10))
    expected = np.zeros((40, 40), dtype=bool)
    expected[9, 9:20] = expected[19, 9:20] = True
    expected[9:20, 9] = expected[9:20, 19] = True
    assert b.sum() == 40
    np.testing.assert_array_equal(b, expected)


def test_boundary_map_masks_touching_the_border():
    # 6x6 image. Nothing beyond the image is compared against, so border pixels are never marked for touching it.
    # Top-left 3x3 block: only its last row and last column (5 px); row 0 and column 0 are not boundary.
    tl = square(6, 0, 0, 3)
    np.testing.assert_array_equal(
        boundary_map(tl), pixels((6, 6), [(2, 0), (2, 1), (2, 2), (0, 2), (1, 2)])
    )
    # Bottom-right 3x3 block: no foreground pixel is boundary (its neighbours are foreground or outside the image);
    # background pixels (2, 2..5) see it below / bottom-right and (3..5, 2) see it on their right: 7 px.
    br = square(6, 3, 3, 3)
    np.testing.assert_array_equal(
        boundary_map(br), pixels((6, 6), [(2, 2), (2, 3), (2, 4), (2, 5), (3, 2), (4, 2), (5, 2)])
    )
    # Right half (columns 3..5, all rows): background column 2 (6 px, the last row included via its right neighbour).
    right = np.zeros((6, 6), bool)
    right[:, 3:] = True
    np.testing.assert_array_equal(boundary_map(right), pixels((6, 6), [(y, 2) for y in range(6)]))
    # A full-image mask has no boundary at all.
    assert not boundary_map(np.ones((6, 6), bool)).any()


def test_boundary_map_matches_brute_force_on_random_masks():
    rng = np.random.default_rng(0)
    masks = np.stack([random_blobs(rng, (23, 31)) for _ in range(4)])
    got = boundary_map(masks)  # (N, H, W) is handled in one call
    for m, b in zip(masks, got):
        np.testing.assert_array_equal(b, naive_boundary(m))
    # Degenerate sizes: one row / one column compare along the only axis they have.
    row = np.array([[0, 1, 1, 0, 1]], bool)
    np.testing.assert_array_equal(boundary_map(row), naive_boundary(row))
    np.testing.assert_array_equal(boundary_map(row.T), naive_boundary(row.T))


# ---------------------------------------------------------------------------------------------------------------------
# Disk and tolerance


def test_disk_explicit():
    np.testing.assert_array_equal(disk(0), [[1]])
    np.testing.assert_array_equal(disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    np.testing.assert_array_equal(
        disk(2),
        [
            [0, 0, 1, 0, 0],
            [0, 1, 1, 1, 0],
            [1, 1, 1, 1, 1],
            [0, 1, 1, 1, 0],
            [0, 0, 1, 0, 0],
        ],
    )
    # r = 5: (3, 4) lies exactly on the circle and is included; (4, 4) is not.
    d5 = disk(5)
    assert d5.shape == (11, 11) and d5[5 + 3, 5 + 4] == 1 and d5[5 + 4, 5 + 4] == 0
    assert d5.dtype == np.uint8


def test_disk_matches_skimage_if_installed():
    morphology = pytest.importorskip("skimage.morphology")
    for r in range(0, 20):
        np.testing.assert_array_equal(disk(r), morphology.disk(r))


def test_tolerance_radius():
    assert tolerance_radius((40, 40)) == 1  # 0.008 * 56.57 = 0.45 -> 1
    assert tolerance_radius((480, 854)) == 8  # 0.008 * 979.6 = 7.84 -> 8 (DAVIS 480p)
    assert tolerance_radius((1080, 1920)) == 18  # 0.008 * 2202.9 = 17.6 -> 18
    assert tolerance_radius((40, 40), bound_th=3) == 3  # >= 1: pixels


# ---------------------------------------------------------------------------------------------------------------------
# F


def test_f_shifted_squares_by_hand():
    # GT square cols 10..19 -> boundary = outline of box rows 9..19 x cols 9..19 (40 px).
    # Prediction shifted 2 px right -> outline of rows 9..19 x cols 11..21 (40 px).
    # Tolerance r = 1 (4-neighbourhood plus the pixel itself). Predicted boundary pixels with a GT boundary pixel
    # within distance 1:
    #   top row (y=9, x=11..21): x=11..19 lie on the GT top row, x=20 touches (9,19), x=21 is 2 away   -> 10 of 11
    #   bottom row (y=19): same                                                                       -> 10 of 11
    #   left column (x=11, y=10..18): only y=10 (next to (9,11)) and y=18 (next to (19,11))            ->  2 of 9
    #   right column (x=21, y=10..18): the nearest GT pixels (x=19) are 2 away                          ->  0 of 9
    # Precision = 22 / 40; recall is the mirror image, 22 / 40; F = 22 / 40 = 0.55.
    gt = square(40, 10, 10, 10)
    pred = square(40, 10, 12, 10)
    assert boundary_f_measure(gt, pred, bound_th=1) == pytest.approx(0.55)
    # The default tolerance on a 40x40 image is ceil(0.008 * 56.6) = 1 px as well.
    assert boundary_f_measure(gt, pred) == pytest.approx(0.55)
    # With r = 2 every pixel of one outline is within 2 px of the other: F = 1.
    assert boundary_f_measure(gt, pred, bound_th=2) == pytest.approx(1.0)
    assert naive_f(gt, pred, 1) == pytest.approx(0.55)


def test_f_precision_differs_from_recall():
    # Prediction = the GT square plus one isolated pixel far away at (30, 30). That pixel adds a 4-px boundary
    # (the outline of the box 29..30 x 29..30) that matches nothing: P = 40 / 44, R = 40 / 40.
    # F = 2 * (10/11) * 1 / (10/11 + 1) = 20 / 21. J = 100 / 101.
    gt = square(40, 10, 10, 10)
    pred = gt.copy()
    pred[30, 30] = True
    assert boundary_f_measure(gt, pred, bound_th=1) == pytest.approx(20 / 21)
    assert boundary_f_measure(pred, gt, bound_th=1) == pytest.approx(20 / 21)  # F is symmetric
    assert region_similarity(gt, pred) == pytest.approx(100 / 101)


def test_f_empty_cases():
    gt = square(40, 10, 10, 10)
    empty = np.zeros_like(gt)
    assert boundary_f_measure(gt, empty) == 0.0  # P = 1, R = 0
    assert boundary_f_measure(empty, gt) == 0.0  # P = 0, R = 1
    assert boundary_f_measure(empty, empty) == 1.0  # P = R = 1
    # Both boundaries non-empty but nowhere near each other: P = R = 0 -> F = 0.
    assert boundary_f_measure(square(40, 0, 0, 5), square(40, 30, 30, 5)) == 0.0
    # Full-image masks have empty boundaries: F = 1 (and J = 1).
    full = np.ones((40, 40), bool)
    assert boundary_f_measure(full, full) == 1.0


def test_f_mask_touching_the_image_edge():
    # 20x20 image, GT = left half (cols 0..9): its only boundary is column 9 (20 px, no pixel on the image border).
    # r = ceil(0.008 * 28.3) = 1.
    gt = np.zeros((20, 20), bool)
    gt[:, :10] = True
    one = np.zeros_like(gt)
    one[:, :11] = True  # boundary column 10, 1 px from column 9 -> every pixel matched -> F = 1
    two = np.zeros_like(gt)
    two[:, :12] = True  # boundary column 11, 2 px away -> nothing matched -> P = R = 0 -> F = 0
    assert boundary_f_measure(gt, one) == 1.0
    assert boundary_f_measure(gt, two) == 0.0
    assert region_similarity(gt, two) == pytest.approx(200 / 240)


def test_f_several_frames_and_brute_force():
    rng = np.random.default_rng(1)
    gts = np.stack([random_blobs(rng, (36, 28)) for _ in range(5)])
    preds = np.stack([random_blobs(rng, (36, 28)) for _ in range(5)])
    preds[1] = gts[1]
    preds[2] = False  # empty prediction
    gts[3] = False  # empty GT
    for bound_th, radius in ((0.008, 1), (2, 2), (3.0, 3)):
        got = boundary_f_measure(gts, preds, bound_th=bound_th)
        assert got.shape == (5,)
        expected = [naive_f(g, p, radius) for g, p in zip(gts, preds)]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        for i in range(5):  # the stacked call equals frame-by-frame calls
            assert boundary_f_measure(gts[i], preds[i], bound_th=bound_th) == pytest.approx(got[i], abs=1e-15)
    assert boundary_f_measure(gts[1], preds[1]) == 1.0


def test_f_radius_from_image_diagonal():
    # 100x100: r = ceil(0.008 * 141.4) = 2. A 2-px shift keeps every boundary pixel within tolerance (F = 1); after
    # a 3-px shift the side columns no longer match while most of the top / bottom rows still do (brute force).
    gt = square(100, 30, 30, 20)
    assert tolerance_radius(gt.shape) == 2
    assert boundary_f_measure(gt, square(100, 30, 32, 20)) == 1.0
    shifted3 = square(100, 30, 33, 20)
    assert boundary_f_measure(gt, shifted3) == pytest.approx(naive_f(gt, shifted3, 2))
    assert boundary_f_measure(gt, shifted3) < 1.0
    assert not math.isnan(boundary_f_measure(gt, shifted3))


def test_f_small_objects_anywhere_match_brute_force():
    # Small objects at every distance from the borders, so any bounding-box cropping inside the implementation is
    # exercised next to the image edges as well as in the interior.
    h, w = 16, 18
    gts, preds = [], []
    for top in (0, 1, 2, 11, 12, 13):
        for left in (0, 1, 15):
            g = np.zeros((h, w), bool)
            g[top : top + 3, left : left + 3] = True
            p = np.zeros((h, w), bool)
            p[max(top - 1, 0) : top + 2, left : left + 2] = True
            gts.append(g)
            preds.append(p)
    gts, preds = np.stack(gts), np.stack(preds)
    for bound_th in (1, 2):
        got = boundary_f_measure(gts, preds, bound_th=bound_th)
        np.testing.assert_allclose(got, [naive_f(g, p, bound_th) for g, p in zip(gts, preds)], atol=1e-12)
        for i in range(len(gts)):  # alone, each frame gets its own (tighter) crop
            assert boundary_f_measure(gts[i], preds[i], bound_th=bound_th) == pytest.approx(got[i], abs=1e-15)
