"""Tests for efficient_sam2.io: lazy video frames (folders, video files, in-memory) and mask formats (PNG, RLE)."""

from __future__ import annotations

import os
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import efficient_sam2.io.frames as frames_mod
from efficient_sam2.io import (
    DAVIS_PALETTE,
    FrameCountWarning,
    FrameDecodeError,
    FrameSizeError,
    ImageError,
    ImageNotFoundError,
    MaskError,
    VideoError,
    VideoFrames,
    VideoNotFoundError,
    area_from_rle,
    compress_rle_counts,
    decode_rle,
    decompress_rle_counts,
    encode_rle,
    ids_from_masks,
    load_image,
    masks_from_ids,
    read_object_mask,
    read_object_masks_per_object,
    read_palette_mask,
    rgb_to_ids,
    sort_frame_names,
    write_object_mask,
    write_palette_mask,
)

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


# ---------------------------------------------------------------------------------------------------------------------
# helpers


def _random_frame(rng, h=40, w=56):
    # Smooth content plus noise, so JPEG keeps it recognisable and every frame differs.
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 200 / w, yy * 200 / h, (xx + yy) * 100 / (h + w)], axis=-1) + rng.integers(0, 40, size=3)
    return np.clip(base + rng.integers(0, 16, size=(h, w, 3)), 0, 255).astype(np.uint8)


def _write_folder(folder, names, rng, size=(40, 56)):
    os.makedirs(folder, exist_ok=True)
    arrays = {}
    for n in names:
        arr = _random_frame(rng, *size)
        Image.fromarray(arr).save(os.path.join(folder, n), quality=95)
        arrays[n] = arr
    return arrays


def _independent_tensor(path_or_array, s):
    """PIL bicubic resize to (s, s), then ImageNet normalisation in float64 numpy."""
    img = Image.open(path_or_array) if isinstance(path_or_array, (str, os.PathLike)) else Image.fromarray(path_or_array)
    arr = np.asarray(img.convert("RGB").resize((s, s), Image.Resampling.BICUBIC), dtype=np.float64) / 255.0
    return torch.from_numpy(((arr - MEAN) / STD).transpose(2, 0, 1))


def _write_video(path, frames, fps=10, fourcc="mp4v"):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        pytest.skip(f"this OpenCV build cannot write {fourcc} video")
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def _video_frames(n, h=48, w=64):
    # Distinct, smooth frames: brightness ramps with the frame index, so frames are told apart after lossy coding.
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        r = (xx * 4 + i * 20) % 256
        g = (yy * 5) % 256
        b = np.full_like(xx, 10 + i * 20)
        out.append(np.stack([r, g, b], axis=-1).astype(np.uint8))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# frame folders


def test_folder_numeric_order_and_extensions(tmp_path):
    rng = np.random.default_rng(0)
    arrays = _write_folder(tmp_path, ["10.jpg", "2.JPG", "0.jpeg", "1.png"], rng)
    (tmp_path / "notes.txt").write_text("not a frame")
    v = VideoFrames(tmp_path, image_size=32)
    assert v.frame_names == ["0", "1", "2", "10"]
    assert len(v) == v.num_frames == 4
    assert (v.height, v.width) == (40, 56)
    # Content follows the order: frame i is closest to the file it should be (JPEG is lossy, compare loosely).
    order = ["0.jpeg", "1.png", "2.JPG", "10.jpg"]
    for i, name in enumerate(order):
        diffs = [np.abs(v.get_rgb(i).astype(int) - arrays[n].astype(int)).mean() for n in order]
        assert int(np.argmin(diffs)) == i and diffs[i] < 4, (name, diffs)
    assert np.array_equal(v.get_rgb(1), arrays["1.png"])  # PNG is lossless
    assert np.array_equal(v.get_rgb(-1), v.get_rgb(3))
    with pytest.raises(IndexError):
        v.get_tensor(4)
    assert len(list(v)) == 4 and len(v[1:3]) == 2


def test_natural_sort_fallback():
    assert sort_frame_names(["frame10.jpg", "frame2.jpg", "frame1.jpg"]) == ["frame1.jpg", "frame2.jpg", "frame10.jpg"]
    assert sort_frame_names(["10.jpg", "9.jpg", "0010.png"]) == ["9.jpg", "0010.png", "10.jpg"]
    assert sort_frame_names(["b2.jpg", "a10.jpg", "a9.jpg"]) == ["a9.jpg", "a10.jpg", "b2.jpg"]


def test_get_tensor_matches_independent_computation(tmp_path):
    rng = np.random.default_rng(1)
    _write_folder(tmp_path, ["00000.jpg", "00001.jpg", "00002.jpg"], rng)
    v = VideoFrames(str(tmp_path), image_size=48)
    for i in range(3):
        x = v.get_tensor(i)
        assert x.shape == (3, 48, 48) and x.dtype == torch.float32
        expected = _independent_tensor(tmp_path / f"{i:05d}.jpg", 48)
        assert (x.double() - expected).abs().max().item() < 1e-5


@pytest.mark.reference
def test_get_tensor_matches_reference_loader(tmp_path):
    misc = pytest.importorskip("sam2.utils.misc", reason="reference package sam2==1.1.0 is not installed")
    rng = np.random.default_rng(2)
    _write_folder(tmp_path, [f"{i}.jpg" for i in (0, 1, 2, 5, 11)], rng, size=(37, 61))
    ref, ref_h, ref_w = misc.load_video_frames(str(tmp_path), 64, offload_video_to_cpu=True)
    v = VideoFrames(str(tmp_path), image_size=64)
    ours = torch.stack(list(v))
    assert (v.height, v.width) == (ref_h, ref_w) == (37, 61)
    max_abs = (ours - ref).abs().max().item()
    print(f"max |ours - reference load_video_frames| = {max_abs:.3g}")
    assert max_abs <= 1e-6


def test_cache_is_bounded_and_lru(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    _write_folder(tmp_path, [f"{i}.png" for i in range(6)], rng, size=(16, 16))
    calls = []
    original = frames_mod.preprocess_frame
    monkeypatch.setattr(frames_mod, "preprocess_frame", lambda rgb, s: calls.append(1) or original(rgb, s))
    v = VideoFrames(tmp_path, image_size=16, cache_size=2)
    a = v.get_tensor(0)
    assert v.get_tensor(0) is a  # hit: no new decode
    v.get_tensor(1)
    v.get_tensor(0)  # 0 becomes most recent
    v.get_tensor(2)  # evicts 1
    assert v.cached_indices() == [0, 2]
    assert len(calls) == 3 and v.num_decoded == 3
    v.get_tensor(1)  # evicted, decoded again
    assert len(calls) == 4 and v.num_decoded == 4
    for i in range(6):
        v.get_tensor(i)
        assert len(v.cached_indices()) <= 2
    # cache_size=0 keeps nothing
    v0 = VideoFrames(tmp_path, image_size=16, cache_size=0)
    v0.get_tensor(3)
    v0.get_tensor(3)
    assert v0.cached_indices() == []


def test_offload_keeps_cache_on_cpu(tmp_path):
    rng = np.random.default_rng(4)
    _write_folder(tmp_path, ["0.png"], rng, size=(8, 8))
    v = VideoFrames(tmp_path, image_size=8, offload=True, device="cpu")
    assert v.get_tensor(0).device.type == "cpu" and v.cache_device.type == "cpu"


# ---------------------------------------------------------------------------------------------------------------------
# video files


def test_mp4_round_trip_and_random_access(tmp_path):
    src = _video_frames(12)
    path = tmp_path / "clip.mp4"
    _write_video(path, src)
    v = VideoFrames(path, image_size=32, cache_size=3)
    assert (v.num_frames, v.height, v.width) == (12, 48, 64)
    assert v.frame_names[0] == "00000" and len(v.frame_names) == 12
    sequential = [v.get_rgb(i).copy() for i in range(12)]
    for i in range(12):
        err = np.abs(sequential[i].astype(int) - src[i].astype(int)).mean()
        assert err < 8, (i, err)  # mp4 is lossy
    # Jumps (backwards, forwards, far) give the same decoded frames as the sequential pass.
    for i in (7, 2, 11, 0, 5, 6, 9, 3):
        assert np.array_equal(v.get_rgb(i), sequential[i]), i
    x = v.get_tensor(4)
    assert x.shape == (3, 32, 32)
    assert (x.double() - _independent_tensor(sequential[4], 32)).abs().max().item() < 1e-5
    for i in range(12):
        v.get_tensor(i)
    assert len(v.cached_indices()) == 3
    v.close()


@pytest.mark.parametrize("claimed", [100, 5, 0, -1])
def test_video_frame_count_is_verified(tmp_path, monkeypatch, claimed):
    path = tmp_path / "clip.avi"
    src = _video_frames(10, 32, 32)
    _write_video(path, src, fourcc="MJPG")

    real_capture = cv2.VideoCapture

    class LyingCapture:  # wraps the real capture but misreports the container's frame count
        def __init__(self, *args):
            self._cap = real_capture(*args)

        def get(self, prop):
            return float(claimed) if prop == cv2.CAP_PROP_FRAME_COUNT else self._cap.get(prop)

        def __getattr__(self, name):
            return getattr(self._cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", LyingCapture)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        v = VideoFrames(path, image_size=16)
    assert v.num_frames == 10
    assert np.abs(v.get_rgb(9).astype(int) - src[9].astype(int)).mean() < 8
    # a header count that disagrees is announced with both numbers; a missing one (0, -1) is not
    said = [str(w.message) for w in caught if issubclass(w.category, FrameCountWarning)]
    assert said == ([f"video file {str(path)!r}: its header says {claimed} frames but 10 decode (truncated or "
                     "damaged?); using the 10 frames that decode"] if claimed > 0 else [])


# ---------------------------------------------------------------------------------------------------------------------
# in-memory frames


def test_in_memory_sequences(tmp_path):
    rng = np.random.default_rng(5)
    arrays = [_random_frame(rng, 20, 30) for _ in range(3)]
    expected = [_independent_tensor(a, 24) for a in arrays]
    for video in (arrays, np.stack(arrays), [Image.fromarray(a) for a in arrays], tuple(arrays)):
        v = VideoFrames(video, image_size=24)
        assert (v.num_frames, v.height, v.width) == (3, 20, 30)
        assert v.frame_names == ["00000", "00001", "00002"]
        for i in range(3):
            assert np.array_equal(v.get_rgb(i), arrays[i])
            assert (v.get_tensor(i).double() - expected[i]).abs().max().item() < 1e-5


# ---------------------------------------------------------------------------------------------------------------------
# errors


def test_missing_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(VideoNotFoundError, match="nope") as info:
        VideoFrames(missing)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_folder_without_frames(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(VideoError) as info:
        VideoFrames(tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and ".jpg" in msg and ".jpeg" in msg and ".png" in msg


def test_corrupt_frame_raises_on_decode_and_in_verify(tmp_path):
    rng = np.random.default_rng(6)
    _write_folder(tmp_path, ["0.jpg", "1.jpg", "2.jpg"], rng)
    data = (tmp_path / "1.jpg").read_bytes()
    (tmp_path / "1.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    v = VideoFrames(tmp_path, image_size=16)  # frame 0 is fine, so opening works
    v.get_tensor(0)
    with pytest.raises(FrameDecodeError, match=r"frame 1 .*1\.jpg") as info:
        v.get_tensor(1)
    assert info.value.index == 1 and info.value.source.endswith("1.jpg")
    with pytest.raises(FrameDecodeError, match=r"1\.jpg"):
        VideoFrames(tmp_path, image_size=16).verify()
    # A garbage frame 0 is reported when the video is opened.
    (tmp_path / "0.jpg").write_bytes(b"definitely not a jpeg")
    with pytest.raises(FrameDecodeError, match=r"frame 0 .*0\.jpg"):
        VideoFrames(tmp_path)


def test_frames_of_differing_sizes(tmp_path):
    rng = np.random.default_rng(7)
    _write_folder(tmp_path, ["0.png", "1.png"], rng, size=(16, 16))
    _write_folder(tmp_path, ["2.png"], rng, size=(16, 20))
    v = VideoFrames(tmp_path, image_size=16)
    v.get_tensor(1)
    with pytest.raises(FrameSizeError, match=r"frame 2 \('2'\).*16x20.*16x16"):
        v.get_tensor(2)
    with pytest.raises(FrameSizeError, match="frame 2"):
        VideoFrames(tmp_path).verify()
    with pytest.raises(FrameSizeError, match="frame 1 .*12x16"):
        VideoFrames([np.zeros((16, 16, 3), np.uint8), np.zeros((12, 16, 3), np.uint8)])


def test_video_file_errors(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00garbage" * 200)
    with pytest.raises(VideoError, match="cannot open video file .*broken.mp4"):
        VideoFrames(bad)
    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    writer.release()
    with pytest.raises(VideoError, match="empty.avi.* zero frames|cannot open video file .*empty.avi"):
        VideoFrames(empty)
    image = tmp_path / "one.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    with pytest.raises(VideoError, match="single image"):
        VideoFrames(image)
    other = tmp_path / "clip.xyz"
    other.write_bytes(b"x")
    with pytest.raises(VideoError, match=r"unsupported video path .*\.mp4"):
        VideoFrames(other)


def test_in_memory_errors():
    with pytest.raises(VideoError, match="empty"):
        VideoFrames([])
    with pytest.raises(VideoError, match="zero frames"):
        VideoFrames(np.zeros((0, 4, 4, 3), np.uint8))
    with pytest.raises(VideoError, match=r"frame 1 has dtype float32; expected uint8"):
        VideoFrames([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(VideoError, match=r"shape \(4, 4\); expected \(H, W, 3\)"):
        VideoFrames([np.zeros((4, 4), np.uint8)])
    with pytest.raises(VideoError, match=r"\(N, H, W, 3\) uint8 .*float64"):
        VideoFrames(np.zeros((2, 4, 4, 3)))
    with pytest.raises(VideoError, match=r"\(N, H, W, 3\) uint8 .*\(2, 4, 4, 4\)"):
        VideoFrames(np.zeros((2, 4, 4, 4), np.uint8))
    with pytest.raises(VideoError, match="frame 0 is a Tensor"):
        VideoFrames([torch.zeros(4, 4, 3)])


def test_load_image(tmp_path):
    rgba = np.random.default_rng(8).integers(0, 256, size=(5, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), rgba[..., :3])
    write_palette_mask(tmp_path / "p.png", np.array([[0, 1], [2, 0]], np.uint8))
    assert load_image(tmp_path / "p.png")[1, 0].tolist() == [0, 128, 0]  # palette colour of id 2
    arr = rgba[..., :3]
    assert np.array_equal(load_image(arr), arr) and np.array_equal(load_image(Image.fromarray(arr)), arr)

    with pytest.raises(ImageNotFoundError, match="missing.jpg") as info:
        load_image(tmp_path / "missing.jpg")
    assert isinstance(info.value, FileNotFoundError)
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(ImageError, match="cannot decode image .*bad.jpg"):
        load_image(tmp_path / "bad.jpg")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="dtype float32; expected uint8"):
        load_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageError, match=r"shape \(4, 4, 4\); expected \(H, W, 3\)"):
        load_image(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ImageError, match="from list"):
        load_image([1, 2, 3])
    Image.fromarray(np.full((4, 4), 1000, np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(ImageError, match="more than 8 bits"):
        load_image(tmp_path / "deep.png")


# ---------------------------------------------------------------------------------------------------------------------
# palette PNGs and per-object masks


def test_davis_palette():
    assert isinstance(DAVIS_PALETTE, bytes) and len(DAVIS_PALETTE) == 768
    pal = np.frombuffer(DAVIS_PALETTE, np.uint8).reshape(256, 3)
    # Well-known VOC / DAVIS colours (background, the first objects, and 255 = the VOC 'void' colour).
    assert pal[:9].tolist() == [
        [0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128],
        [128, 0, 128], [0, 128, 128], [128, 128, 128], [64, 0, 0],
    ]  # fmt: skip
    assert pal[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in pal.tolist()}) == 256


def test_palette_png_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    ids = rng.integers(0, 6, size=(23, 31), dtype=np.uint8)
    path = tmp_path / "out" / "00000.png"  # parent folder is created
    write_palette_mask(path, ids)
    with Image.open(path) as img:
        assert img.mode == "P"
    got, palette = read_palette_mask(path)
    assert got.dtype == np.uint8 and np.array_equal(got, ids)
    assert palette == DAVIS_PALETTE
    # Custom (short) palette is kept, padded to 256 colours.
    write_palette_mask(path, ids, palette=[0, 0, 0, 255, 255, 255])
    got, palette = read_palette_mask(path)
    assert np.array_equal(got, ids) and palette[:6] == bytes([0, 0, 0, 255, 255, 255]) and len(palette) == 768
    # Greyscale ('L') id maps are read too, without a palette.
    Image.fromarray(ids).save(tmp_path / "grey.png")
    got, palette = read_palette_mask(tmp_path / "grey.png")
    assert np.array_equal(got, ids) and palette is None
    assert sorted(os.listdir(tmp_path / "out")) == ["00000.png"]  # no temp files left behind
    with pytest.raises(MaskError, match="0..255"):
        write_palette_mask(path, np.full((2, 2), 300))


def test_rgb_png_is_refused_with_a_conversion_hint(tmp_path):
    ids = np.array([[0, 1, 2], [3, 1, 0]], np.uint8)
    colours = np.frombuffer(DAVIS_PALETTE, np.uint8).reshape(256, 3)[ids]
    Image.fromarray(colours).save(tmp_path / "rgb.png")
    with pytest.raises(MaskError, match=r"rgb\.png.*RGB colour image.*mode 'P'.*rgb_to_ids"):
        read_palette_mask(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([colours, np.full((2, 3), 255, np.uint8)])).save(tmp_path / "rgba.png")
    with pytest.raises(MaskError, match="RGBA"):
        read_palette_mask(tmp_path / "rgba.png")
    assert np.array_equal(rgb_to_ids(colours), ids)  # the suggested conversion works
    colours[0, 0] = [1, 2, 3]
    with pytest.raises(MaskError, match=r"\(1, 2, 3\)"):
        rgb_to_ids(colours)
    with pytest.raises(FileNotFoundError, match="absent.png"):
        read_palette_mask(tmp_path / "absent.png")


def test_interrupted_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.png"
    old = np.array([[1, 2], [3, 4]], np.uint8)
    write_palette_mask(path, old)

    def failing_save(self, fp, format=None, **kw):
        fp.write(b"\x89PNG partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        write_palette_mask(path, np.zeros((2, 2), np.uint8))
    monkeypatch.undo()
    assert np.array_equal(read_palette_mask(path)[0], old)
    assert os.listdir(tmp_path) == ["m.png"]


def test_ids_and_masks_conversions():
    ids = np.array([[0, 1, 1], [2, 2, 0], [5, 0, 5]], np.uint8)
    masks = masks_from_ids(ids)
    assert list(masks) == [1, 2, 5]
    assert masks[5].tolist() == [[False, False, False], [False, False, False], [True, False, True]]
    assert np.array_equal(ids_from_masks(masks, ids.shape), ids)
    # Overlaps: the lowest id wins (painting in descending id order), like the reference VOS tooling.
    a = np.array([[1, 1], [0, 0]], bool)
    b = np.array([[0, 1], [1, 0]], bool)
    c = np.array([[1, 1], [1, 1]], bool)
    assert ids_from_masks({7: b, 3: a, 9: c}, (2, 2)).tolist() == [[3, 3], [7, 9]]
    # (1, H, W) masks and torch tensors are accepted; wrong shapes are not.
    assert ids_from_masks({2: torch.tensor(a)[None]}, (2, 2)).tolist() == [[2, 2], [0, 0]]
    with pytest.raises(MaskError, match=r"object 4 has shape \(3, 2\)"):
        ids_from_masks({4: np.zeros((3, 2), bool)}, (2, 2))
    with pytest.raises(MaskError, match="1..255"):
        ids_from_masks({256: a}, (2, 2))


def test_per_object_layout(tmp_path):
    video = tmp_path / "vid"
    m1 = np.zeros((6, 8), bool)
    m1[1:3, 2:5] = True
    m3 = np.zeros((6, 8), bool)
    m3[4, :] = True
    write_object_mask(video / "001" / "00000.png", m1)
    write_object_mask(video / "003" / "00000.png", m3)
    write_object_mask(video / "003" / "00004.png", m3)
    (video / ".ipynb_checkpoints").mkdir()
    with Image.open(video / "001" / "00000.png") as img:
        assert img.mode == "P" and set(np.unique(np.array(img)).tolist()) == {0, 1}
    got = read_object_masks_per_object(video, "00000")
    assert list(got) == [1, 3]
    assert np.array_equal(got[1], m1) and np.array_equal(got[3], m3) and got[1].dtype == bool
    assert np.array_equal(read_object_mask(video / "003" / "00004.png"), m3)
    with pytest.raises(FileNotFoundError, match=r"object 1 .*001.*00004\.png"):
        read_object_masks_per_object(video, "00004")
    assert list(read_object_masks_per_object(video, "00004", allow_missing=True)) == [3]


# ---------------------------------------------------------------------------------------------------------------------
# RLE


def test_rle_hand_computed_3x2():
    # mask (H=3, W=2)      column-major pixels: col 0 = 0,1,0 ; col 1 = 1,1,0  ->  0 1 0 1 1 0
    #   0 1                runs: one 0, one 1, one 0, two 1s, one 0  ->  counts [1, 1, 1, 2, 1]
    #   1 1                compressed: c0=1 -> '1'; c1=1 -> '1'; c2=1 -> '1';
    #   0 0                c3: 2 - c1 = 1 -> '1'; c4: 1 - c2 = 0 -> '0'   =>  "11110"
    mask = np.array([[0, 1], [1, 1], [0, 0]], bool)
    assert encode_rle(mask, compress=False) == {"size": [3, 2], "counts": [1, 1, 1, 2, 1]}
    assert encode_rle(mask) == {"size": [3, 2], "counts": "11110"}
    assert np.array_equal(decode_rle({"size": [3, 2], "counts": "11110"}), mask)
    assert np.array_equal(decode_rle({"size": [3, 2], "counts": [1, 1, 1, 2, 1]}), mask)
    assert area_from_rle({"size": [3, 2], "counts": "11110"}) == 3
    # Starting with a foreground pixel gives a leading zero-length background run.
    assert encode_rle(~mask, compress=False)["counts"] == [0, 1, 1, 1, 2, 1]


def test_rle_known_compressed_string():
    # H=2, W=23 (46 pixels): 40 background pixels (columns 0-19), then 3 foreground (column 20 and column 21 row 0),
    # 2 background (column 21 row 1, column 22 row 0), 1 foreground (column 22 row 1): counts [40, 3, 2, 1].
    # 40 = 0b01000_01000 -> low group 8 (bit 0x10 clear but 1 remains, so set the 'more' bit 0x20): 8|32 = 40
    #      -> chr(48 + 40) = 'X'; then group 1, nothing left -> '1'                                       => "X1"
    # 3 -> '3';  2 -> '2';  the 4th value is stored as 1 - 3 = -2: low group (-2 & 31) = 30, which has the sign
    # bit 0x10 set and the rest is -1 (pure sign extension), so it ends there: chr(48 + 30) = 'N'      => "X132N"
    mask = np.zeros((2, 23), bool)
    mask[:, 20] = True
    mask[0, 21] = True
    mask[1, 22] = True
    assert encode_rle(mask, compress=False)["counts"] == [40, 3, 2, 1]
    assert encode_rle(mask)["counts"] == "X132N"
    assert np.array_equal(decode_rle({"size": [2, 23], "counts": b"X132N"}), mask)
    assert area_from_rle({"size": [2, 23], "counts": [40, 3, 2, 1]}) == 4


def test_rle_round_trip_random_empty_full():
    rng = np.random.default_rng(10)
    shapes = [(1, 1), (1, 17), (13, 1), (7, 9), (64, 48), (33, 65)]
    for shape in shapes:
        for p in (0.05, 0.5, 0.95):
            mask = rng.random(shape) < p
            rle = encode_rle(mask)
            assert rle["size"] == list(shape) and isinstance(rle["counts"], str)
            assert np.array_equal(decode_rle(rle), mask)
            assert area_from_rle(rle) == mask.sum()
            assert decompress_rle_counts(rle["counts"]) == encode_rle(mask, compress=False)["counts"]
        empty = np.zeros(shape, bool)
        full = np.ones(shape, bool)
        n = shape[0] * shape[1]
        assert encode_rle(empty, compress=False)["counts"] == [n]
        assert encode_rle(full, compress=False)["counts"] == [0, n]
        assert np.array_equal(decode_rle(encode_rle(empty)), empty)
        assert np.array_equal(decode_rle(encode_rle(full)), full)
        assert area_from_rle(encode_rle(full)) == n
    # Larger counts and negative deltas survive the string compression.
    counts = rng.integers(0, 2_000_000, size=200).tolist() + [0, 5, 0, 10**9]
    assert decompress_rle_counts(compress_rle_counts(counts)) == counts


def test_rle_errors():
    with pytest.raises(MaskError, match="sum to 5 .* 3x2 has 6 pixels"):
        decode_rle({"size": [3, 2], "counts": [1, 1, 3]})
    with pytest.raises(MaskError, match="'size'"):
        decode_rle({"counts": "11110"})
    with pytest.raises(MaskError, match="2-D"):
        encode_rle(np.zeros((2, 2, 2), bool))


@pytest.mark.reference
def test_rle_counts_match_reference_amg():
    amg = pytest.importorskip("sam2.utils.amg", reason="reference package sam2==1.1.0 is not installed")
    rng = np.random.default_rng(11)
    masks = rng.random((4, 19, 27)) < 0.4
    masks[1] = True
    masks[2] = False
    ref = amg.mask_to_rle_pytorch(torch.from_numpy(masks))
    for m, r in zip(masks, ref):
        ours = encode_rle(m, compress=False)
        assert ours == r
        assert np.array_equal(amg.rle_to_mask(r), decode_rle(encode_rle(m)))
        assert area_from_rle(ours) == amg.area_from_rle(r)


def _compress_one_value_at_a_time(counts):
    """COCO's string compression written value by value (the reference the vectorised one is checked against)."""
    out = []
    for i, count in enumerate(counts):
        x = count - (counts[i - 2] if i > 2 else 0)
        while True:
            group, x = x & 0x1F, x >> 5
            more = x != -1 if group & 0x10 else x != 0
            out.append(chr(48 + (group | 0x20 if more else group)))
            if not more:
                break
    return "".join(out)


def test_rle_string_compression_equals_the_value_by_value_rule():
    rng = np.random.default_rng(3)
    cases = [[], [0], [5], [40, 3, 2, 1], [0, 7, 3, 100, 2], [1, 2, 3, 4, 5, 6], [10**12, 1, 2, 10**12 - 7]]
    cases += [rng.integers(0, high, size=n).tolist() for high in (16, 33, 1 << 20, 1 << 40) for n in (1, 3, 50, 400)]
    for counts in cases:
        assert compress_rle_counts(counts) == _compress_one_value_at_a_time(counts), counts
    assert compress_rle_counts([40, 3, 2, 1]) == "X132N"  # by hand: 40 = 8 + 1 * 32 -> "X1"; 1 - 3 = -2 -> "N"


def test_rle_of_a_boxed_mask_equals_the_rle_of_the_full_mask():
    from efficient_sam2.io.masks import encode_rle_in_box

    rng = np.random.default_rng(4)
    for H, W in ((1, 1), (5, 7), (33, 20)):
        for _ in range(40):
            y0, y1 = sorted(rng.integers(0, H, size=2))
            x0, x1 = sorted(rng.integers(0, W, size=2))
            pixels = rng.random((y1 - y0 + 1, x1 - x0 + 1)) < rng.choice([0.0, 0.3, 1.0])
            full = np.zeros((H, W), bool)
            full[y0:y1 + 1, x0:x1 + 1] = pixels
            for compress in (True, False):
                assert encode_rle_in_box(pixels, (x0, y0, x1, y1), (H, W), compress) == encode_rle(full, compress)
    with pytest.raises(MaskError, match="does not fit"):
        encode_rle_in_box(np.ones((2, 2), bool), (4, 0, 5, 1), (3, 5))
    with pytest.raises(MaskError, match="does not fit"):
        encode_rle_in_box(np.ones((3, 2), bool), (0, 0, 1, 1), (3, 5))
