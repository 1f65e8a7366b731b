"""Tests of the SWR shortcut branches and their checkpoints (efficient_sam2/efficient/shortcut.py).

Independent checks: hand-written formulas (explicit LayerNorm / matmul / softmax), the parameter counts of
Table 3 and the official description, and files written the way the official training script writes them.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from efficient_sam2.efficient import shortcut as sc
from efficient_sam2.efficient.shortcut import (
    SHORTCUT_VARIANTS,
    AttentionShortcut,
    BottleneckShortcut,
    FFNShortcut,
    IdentityShortcut,
    ShortcutCheckpointError,
    build_shortcut,
    load_shortcut,
    save_shortcut,
    stage_dim_for_model,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomize(module: torch.nn.Module, seed: int, scale: float = 0.2) -> torch.nn.Module:
    """Redraw every tensor so that each layer visibly contributes (init leaves the branch near identity)."""
    g = _gen(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name == "norm.weight":
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=g))
    return module.eval()


def _official_state_dict(variant: str, dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the official key names and shapes, written out by hand (not from our modules)."""
    g = _gen(seed)
    half, double = dim // 2, 2 * dim
    shapes = {
        "bottleneck": {
            "down_project.weight": (half, dim), "down_project.bias": (half,),
            "up_project.weight": (dim, half), "up_project.bias": (dim,),
        },
        "ffn": {
            "input_proj.weight": (double, dim), "input_proj.bias": (double,),
            "output_proj.weight": (dim, double), "output_proj.bias": (dim,),
        },
        "attention": {
            "down_project.weight": (half, dim), "down_project.bias": (half,),
            "qkv.weight": (3 * half, half), "qkv.bias": (3 * half,),
            "up_project.weight": (dim, half), "up_project.bias": (dim,),
        },
    }[variant]
    sd = {k: 0.1 * torch.randn(s, generator=g) for k, s in shapes.items()}
    sd["norm.weight"] = 1.0 + 0.2 * torch.randn(dim, generator=g)
    sd["norm.bias"] = 0.2 * torch.randn(dim, generator=g)
    return sd


def _save_as_if_on_cuda(obj, path) -> None:
    """torch.save, but every storage is tagged 'cuda:0' as in the official files (which were saved on a GPU)."""
    ser = torch.serialization
    registry = getattr(ser, "_package_registry", None)
    if registry is None or not hasattr(ser, "register_package"):
        pytest.skip("this torch version offers no way to tag storages with a device")
    before = list(registry)
    ser.register_package(0, lambda s: "cuda:0" if s.device.type == "cpu" else None, lambda s, loc: None)
    try:
        torch.save(obj, path)
    finally:
        registry[:] = before


def _bottleneck_by_hand(x, sd):
    y = F.layer_norm(x, (x.shape[-1],), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    h = torch.clamp(y @ sd["down_project.weight"].T + sd["down_project.bias"], min=0)
    return x + h @ sd["up_project.weight"].T + sd["up_project.bias"]


def _ffn_by_hand(x, sd):
    y = F.layer_norm(x, (x.shape[-1],), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    h = torch.clamp(y @ sd["input_proj.weight"].T + sd["input_proj.bias"], min=0)
    return x + h @ sd["output_proj.weight"].T + sd["output_proj.bias"]


def _attention_by_hand(x, sd, num_heads, scale, official_layout=False):
    """Per-window attention with explicit softmax, one head at a time (channels h*hd:(h+1)*hd of q, k, v)."""
    n, hh, ww, d = x.shape
    c = d // 2
    hd = c // num_heads
    y = F.layer_norm(x, (d,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    y = (y @ sd["down_project.weight"].T + sd["down_project.bias"]).reshape(n, hh * ww, c)
    qkv = y @ sd["qkv.weight"].T + sd["qkv.bias"]  # (n, t, 3c): q | k | v
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    if not official_layout:
        heads = []
        for h in range(num_heads):
            sl = slice(h * hd, (h + 1) * hd)
            logits = q[..., sl] @ k[..., sl].transpose(-1, -2) * scale  # (n, t, t)
            heads.append(torch.softmax(logits, dim=-1) @ v[..., sl])  # (n, t, hd)
        out = torch.cat(heads, dim=-1)  # (n, t, c)
    else:
        # the official module: within each token, heads attend to heads; then (t, heads) -> (heads, t) flatten
        qh, kh, vh = (z.reshape(n, hh * ww, num_heads, hd) for z in (q, k, v))
        attn = torch.softmax(torch.einsum("ntad,ntbd->ntab", qh, kh) * scale, dim=-1)
        out = torch.einsum("ntab,ntbd->ntad", attn, vh)  # (n, t, heads, hd)
        out = out.permute(0, 2, 1, 3).contiguous()  # (n, heads, t, hd)
    out = out.reshape(n, hh, ww, c)
    return x + out @ sd["up_project.weight"].T + sd["up_project.bias"]


# ------------------------------------------------------------------------------------------------------------
# Modules
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(SHORTCUT_VARIANTS))
def test_every_variant_keeps_window_shape(variant):
    m = build_shortcut(variant, 64).eval()
    for shape in [(3, 7, 7, 64), (0, 7, 7, 64), (2, 3, 4, 4, 64)]:
        x = torch.randn(shape)
        y = m(x)
        assert y.shape == x.shape
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("variant", ["bottleneck", "ffn", "identity"])
def test_position_wise_variants_accept_any_leading_shape(variant):
    m = _randomize(build_shortcut(variant, 32), seed=1)
    x = torch.randn(2, 5, 3, 32)
    y = m(x)
    assert y.shape == x.shape
    # position-wise: the same rows give the same outputs whatever the leading shape
    torch.testing.assert_close(m(x.reshape(-1, 32)), y.reshape(-1, 32), rtol=0, atol=1e-6)


def test_identity_returns_input_and_has_no_parameters():
    m = IdentityShortcut()
    x = torch.randn(2, 7, 7, 16)
    assert m(x) is x
    assert sum(p.numel() for p in m.parameters()) == 0
    assert m.state_dict() == {}


@pytest.mark.parametrize("variant", ["bottleneck", "ffn", "attention"])
def test_learned_variants_start_near_identity(variant):
    torch.manual_seed(0)
    m = build_shortcut(variant, 448).eval()
    x = torch.randn(2, 14, 14, 448)
    delta = m(x) - x
    assert delta.abs().max() < 0.2  # |x| ~ 1; the up-projection starts at N(0, 1e-3)
    assert delta.std() < 0.05
    assert delta.abs().max() > 0  # but not exactly the identity: the gradient reaches every layer


def test_bottleneck_initialisation():
    torch.manual_seed(0)
    m = BottleneckShortcut(448)
    assert m.norm.eps == 1e-6
    assert torch.equal(m.down_project.bias, torch.zeros(224)) and torch.equal(m.up_project.bias, torch.zeros(448))
    assert abs(m.up_project.weight.std().item() - 1e-3) < 1e-4
    assert abs(m.down_project.weight.std().item() - math.sqrt(2 / 448)) < 0.005  # Kaiming, fan_in, relu


@pytest.mark.parametrize(
    "variant,dim,count",
    [
        # official description: 202,272 (B+) and 333,792 (L), the paper's 0.20 M / 0.33 M
        ("bottleneck", 448, 202_272),
        ("bottleneck", 576, 333_792),
        # Table 3: FFN 0.81 M / 1.33 M, Attention 0.35 M / 0.58 M
        ("ffn", 448, 805_056),
        ("ffn", 576, 1_329_984),
        ("attention", 448, 353_472),
        ("attention", 576, 583_488),
        ("identity", 448, 0),
    ],
)
def test_parameter_counts(variant, dim, count):
    m = build_shortcut(variant, dim)
    assert sum(p.numel() for p in m.parameters()) == count


def test_bottleneck_key_names_and_shapes():
    sd = BottleneckShortcut(448).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "norm.weight": (448,), "norm.bias": (448,),
        "down_project.weight": (224, 448), "down_project.bias": (224,),
        "up_project.weight": (448, 224), "up_project.bias": (448,),
    }


@pytest.mark.parametrize("variant", ["ffn", "attention"])
def test_ffn_and_attention_key_names_match_official(variant):
    official = _official_state_dict(variant, 64)
    ours = build_shortcut(variant, 64).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in official.items()}


@pytest.mark.parametrize("variant,by_hand", [("bottleneck", _bottleneck_by_hand), ("ffn", _ffn_by_hand)])
def test_mlp_variants_match_hand_formula(variant, by_hand):
    m = _randomize(build_shortcut(variant, 64), seed=2)
    sd = m.state_dict()
    x = torch.randn(3, 7, 7, 64, generator=_gen(3))
    torch.testing.assert_close(m(x), by_hand(x, sd), rtol=1e-5, atol=1e-5)


def test_dropout_only_in_training():
    m = _randomize(BottleneckShortcut(64), seed=4)
    x = torch.randn(4, 7, 7, 64)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    torch.manual_seed(0)
    a = m(x)
    b = m(x)
    assert not torch.equal(a, b)
    assert (a - _bottleneck_by_hand(x, m.state_dict())).abs().max() > 1e-3
    # dropout sits before the up-projection, x + up(dropout(h)): dropping everything leaves x + up.bias
    m.dropout.p = 1.0
    torch.testing.assert_close(m(x), x + m.up_project.bias, rtol=0, atol=1e-6)


def test_attention_matches_explicit_per_window_softmax():
    m = _randomize(AttentionShortcut(64, num_heads=4), seed=5)
    x = torch.randn(3, 7, 7, 64, generator=_gen(6))
    expected = _attention_by_hand(x, m.state_dict(), num_heads=4, scale=1 / math.sqrt(8))
    got = m(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # leading dims are flattened into windows
    torch.testing.assert_close(m(x.reshape(1, 3, 7, 7, 64)).reshape(3, 7, 7, 64), got, rtol=0, atol=1e-6)


def test_attention_is_window_local_and_permutation_equivariant():
    m = _randomize(AttentionShortcut(32, num_heads=2), seed=7)
    x = torch.randn(2, 4, 4, 32, generator=_gen(8))
    y = m(x)
    x2 = x.clone()
    x2[1] += 1.0
    y2 = m(x2)
    assert torch.equal(y[0], y2[0])  # window 0 does not see window 1
    assert not torch.allclose(y[1], y2[1])
    # no position encoding: permuting the tokens of a window permutes the outputs
    perm = torch.randperm(16, generator=_gen(9))
    xp = x.reshape(2, 16, 32)[:, perm].reshape(2, 4, 4, 32)
    torch.testing.assert_close(m(xp).reshape(2, 16, 32), y.reshape(2, 16, 32)[:, perm], rtol=1e-5, atol=1e-5)


def test_attention_official_scaling_multiplies_by_sqrt_head_dim():
    correct = _randomize(AttentionShortcut(64, num_heads=4), seed=10)
    official = AttentionShortcut(64, num_heads=4, official_scaling=True)
    official.load_state_dict(correct.state_dict())
    official.eval()
    assert correct.scale == pytest.approx(1 / math.sqrt(8)) and official.scale == pytest.approx(math.sqrt(8))
    x = torch.randn(2, 7, 7, 64, generator=_gen(11))
    sd = correct.state_dict()
    torch.testing.assert_close(
        official(x), _attention_by_hand(x, sd, 4, scale=math.sqrt(8)), rtol=1e-5, atol=1e-5
    )
    assert (official(x) - correct(x)).abs().max() > 1e-2  # a different function (logits 8x sharper)


def test_attention_official_layout_reproduces_official_forward():
    m = _randomize(AttentionShortcut(64, num_heads=4, official_scaling=True, official_layout=True), seed=12)
    x = torch.randn(3, 5, 5, 64, generator=_gen(13))
    expected = _attention_by_hand(x, m.state_dict(), 4, scale=math.sqrt(8), official_layout=True)
    torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-5)


def test_attention_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_heads"):
        AttentionShortcut(64, num_heads=5)
    with pytest.raises(ValueError, match=r"\(\.\.\., h, w, d\)"):
        AttentionShortcut(64)(torch.randn(10, 64))


def test_build_shortcut_unknown_variant_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_shortcut("mlp", 448)
    msg = str(err.value)
    assert "'mlp'" in msg
    for name in ("bottleneck", "ffn", "attention", "identity"):
        assert name in msg
    assert isinstance(build_shortcut("FFN", 64), FFNShortcut)  # the official spelling works


def test_stage_dim_for_model():
    assert stage_dim_for_model("sam2.1_hiera_tiny") == 384
    assert stage_dim_for_model("sam2.1_hiera_small") == 384
    assert stage_dim_for_model("sam2.1_hiera_base_plus") == 448
    assert stage_dim_for_model("sam2_hiera_large") == 576
    assert stage_dim_for_model("large") == 576


# ------------------------------------------------------------------------------------------------------------
# Official checkpoints
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim,size", [(448, "base_plus"), (576, "large")])
def test_official_bottleneck_file_saved_on_cuda_loads(tmp_path, dim, size):
    sd = _official_state_dict("bottleneck", dim, seed=dim)
    path = tmp_path / f"bypass_bottleneck_{size}.pth"
    _save_as_if_on_cuda(sd, path)
    if not torch.cuda.is_available():  # the file really needs remapping
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)

    module, meta = load_shortcut(path)
    assert isinstance(module, BottleneckShortcut) and not module.training
    assert meta["variant"] == "bottleneck" and meta["dim"] == dim
    assert meta["model"] is None and meta["source"] == "official" and meta["config"] == {}
    assert all(v.device.type == "cpu" for v in module.state_dict().values())

    x = torch.randn(2, 4, 4, dim, generator=_gen(1))
    torch.testing.assert_close(module(x), _bottleneck_by_hand(x, sd), rtol=1e-5, atol=1e-5)

    # the model size it belongs to is accepted by width and by name
    load_shortcut(path, dim=dim, variant="bottleneck", model_name=f"sam2.1_hiera_{size}")


def test_loader_passes_map_location_and_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "bypass_bottleneck_base.pth"
    torch.save(_official_state_dict("bottleneck", 448), path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(sc.torch, "load", spy)
    load_shortcut(path)
    assert calls and calls[0]["map_location"] == "cpu" and calls[0]["weights_only"] is True
    load_shortcut(path, map_location=torch.device("cpu"))
    assert calls[1]["map_location"] == torch.device("cpu")


@pytest.mark.parametrize("variant,cls", [("ffn", FFNShortcut), ("attention", AttentionShortcut)])
def test_official_ffn_and_attention_files_are_recognised(tmp_path, variant, cls):
    sd = _official_state_dict(variant, 64, seed=3)
    path = tmp_path / f"bypass_{variant}.pth"
    torch.save(sd, path)
    module, meta = load_shortcut(path)
    assert isinstance(module, cls) and meta["variant"] == variant and meta["dim"] == 64
    x = torch.randn(2, 4, 4, 64, generator=_gen(4))
    if variant == "ffn":
        expected = _ffn_by_hand(x, sd)
    else:  # official attention weights come with the official forward
        assert meta["options"] == {"official_scaling": True, "official_layout": True}
        expected = _attention_by_hand(x, sd, 4, scale=math.sqrt(8), official_layout=True)
    torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# Our format
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant,model,options",
    [
        ("bottleneck", "sam2.1_hiera_base_plus", {}),
        ("ffn", "sam2.1_hiera_tiny", {}),
        ("attention", "sam2.1_hiera_small", {"num_heads": 8, "official_scaling": True}),
        ("identity", "sam2.1_hiera_large", {}),
    ],
)
def test_round_trip(tmp_path, variant, model, options):
    dim = stage_dim_for_model(model)
    m = build_shortcut(variant, dim, **options)
    if variant != "identity":
        _randomize(m, seed=20)
    config = {"lr": 1e-4, "epochs": 3, "mem_strides": [1, 3, 5], "router": {"tau": 0.6, "theta_obj": 3.0}}
    path = tmp_path / "ckpt" / "shortcut.pt"
    save_shortcut(path, m, variant, model.replace("sam2.1_hiera_", ""), config=config)
    assert os.listdir(path.parent) == ["shortcut.pt"]  # written via a temp file that is gone

    loaded, meta = load_shortcut(path, dim=dim, variant=variant, model_name=model)
    assert type(loaded) is type(m) and not loaded.training
    assert meta["variant"] == variant and meta["dim"] == dim and meta["model"] == model
    assert meta["source"] == "efficient-sam2" and meta["config"] == config
    if variant == "attention":
        assert loaded.num_heads == 8 and loaded.official_scaling and not loaded.official_layout
    x = torch.randn(2, 3, 3, dim, generator=_gen(21))
    assert torch.equal(loaded(x), m.eval()(x))

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "efficient-sam2-shortcut" and raw["version"] == 1 and raw["model"] == model


def test_save_overwrites_atomically(tmp_path, monkeypatch):
    path = tmp_path / "shortcut.pt"
    save_shortcut(path, _randomize(BottleneckShortcut(448), seed=30), "bottleneck", "base_plus")
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(sc.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_shortcut(path, BottleneckShortcut(448), "bottleneck", "base_plus")
    assert path.read_bytes() == before  # the old file is intact
    assert os.listdir(tmp_path) == ["shortcut.pt"]  # and no temporary file is left behind


def test_save_rejects_inconsistent_arguments(tmp_path):
    path = tmp_path / "s.pt"
    with pytest.raises(ValueError, match="does not match the module"):
        save_shortcut(path, BottleneckShortcut(448), "ffn", "base_plus")
    with pytest.raises(ValueError, match="width 448.*576"):
        save_shortcut(path, BottleneckShortcut(448), "bottleneck", "large")
    with pytest.raises(TypeError, match=r"config\.bad"):
        save_shortcut(path, BottleneckShortcut(448), "bottleneck", "base_plus", config={"bad": object()})
    with pytest.raises(ValueError, match="unknown model name"):
        save_shortcut(path, BottleneckShortcut(448), "bottleneck", "huge")
    assert not path.exists()


# ------------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_shortcut(path)


def test_unreadable_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file")
    with pytest.raises(ShortcutCheckpointError, match="garbage.pth.*could not read"):
        load_shortcut(garbage)

    code = tmp_path / "pickled_object.pth"
    torch.save({"norm.weight": torch.ones(4), "hook": torch.nn.ReLU()}, code)  # not plain data: refused
    with pytest.raises(ShortcutCheckpointError, match="pickled_object.pth.*could not read"):
        load_shortcut(code)

    mixed = tmp_path / "mixed.pth"
    torch.save({**_official_state_dict("bottleneck", 448), "epoch": 2}, mixed)
    with pytest.raises(ShortcutCheckpointError, match=r"mixed.pth.*not named tensors: \['epoch'\]"):
        load_shortcut(mixed)

    not_dict = tmp_path / "list.pth"
    torch.save([torch.ones(3)], not_dict)
    with pytest.raises(ShortcutCheckpointError, match="list.pth.*expected a state dict"):
        load_shortcut(not_dict)


def test_unknown_keys_are_listed(tmp_path):
    sd = _official_state_dict("bottleneck", 448)
    sd["gate.weight"] = torch.ones(448)
    sd["gate.bias"] = torch.ones(448)
    path = tmp_path / "extra.pth"
    torch.save(sd, path)
    with pytest.raises(ShortcutCheckpointError) as err:
        load_shortcut(path)
    msg = str(err.value)
    assert "extra.pth" in msg and "'gate.bias'" in msg and "'gate.weight'" in msg and "bottleneck" in msg

    # in our format the keys are checked against the declared variant
    m = BottleneckShortcut(448)
    save_shortcut(tmp_path / "ours.pt", m, "bottleneck", "base_plus")
    raw = torch.load(tmp_path / "ours.pt", weights_only=True)
    raw["state_dict"]["up_project.scale"] = torch.ones(1)
    del raw["state_dict"]["down_project.bias"]
    torch.save(raw, tmp_path / "ours_bad.pt")
    with pytest.raises(ShortcutCheckpointError, match=r"ours_bad.pt.*unknown keys \['up_project.scale'\]"
                       r".*missing keys \['down_project.bias'\]"):
        load_shortcut(tmp_path / "ours_bad.pt")


def test_wrong_shapes_are_reported(tmp_path):
    sd = _official_state_dict("bottleneck", 448)
    sd["down_project.weight"] = torch.zeros(100, 448)
    sd["down_project.bias"] = torch.zeros(100)
    path = tmp_path / "shapes.pth"
    torch.save(sd, path)
    with pytest.raises(ShortcutCheckpointError, match=r"shapes.pth.*down_project.weight: file \(100, 448\)"):
        load_shortcut(path)


@pytest.mark.parametrize(
    "file_dim,requested,file_size,model_size",
    [(448, 576, "base_plus", "large"), (576, 448, "large", "base_plus"), (384, 448, "tiny/small", "base_plus")],
)
def test_dim_mismatch_names_the_model_sizes(tmp_path, file_dim, requested, file_size, model_size):
    path = tmp_path / "bypass_bottleneck.pth"
    torch.save(_official_state_dict("bottleneck", file_dim), path)
    with pytest.raises(ShortcutCheckpointError) as err:
        load_shortcut(path, dim=requested)
    msg = str(err.value)
    assert "bypass_bottleneck.pth" in msg
    assert f"{file_dim} (Hiera {file_size})" in msg
    assert f"stride-16 stage of the model being built has width {requested} (Hiera {model_size})" in msg

    # the same check when only the model name is given
    name = {"large": "sam2.1_hiera_large", "base_plus": "sam2.1_hiera_base_plus"}[model_size]
    with pytest.raises(ShortcutCheckpointError, match=f"width {requested}"):
        load_shortcut(path, model_name=name)


def test_contradicting_dim_and_model_name(tmp_path):
    path = tmp_path / "b.pth"
    torch.save(_official_state_dict("bottleneck", 448), path)
    with pytest.raises(ValueError, match="dim=576 contradicts model_name='base_plus'"):
        load_shortcut(path, dim=576, model_name="base_plus")


def test_variant_mismatch(tmp_path):
    path = tmp_path / "bypass_bottleneck_base.pth"
    torch.save(_official_state_dict("bottleneck", 448), path)
    with pytest.raises(ShortcutCheckpointError, match="bypass_bottleneck_base.pth.*'bottleneck'.*'attention'"):
        load_shortcut(path, variant="attention")
    with pytest.raises(ValueError, match="unknown shortcut variant 'lora'"):
        load_shortcut(path, variant="lora")


def test_model_name_mismatch_in_our_format(tmp_path):
    path = tmp_path / "ours.pt"
    save_shortcut(path, BottleneckShortcut(448), "bottleneck", "sam2.1_hiera_base_plus")
    # same width (448), different weights: SAM 2 vs SAM 2.1
    with pytest.raises(ShortcutCheckpointError, match="ours.pt.*'sam2.1_hiera_base_plus'.*'sam2_hiera_base_plus'"):
        load_shortcut(path, model_name="sam2_hiera_base_plus")
    load_shortcut(path, model_name="b+")  # aliases resolve to the same model


def test_malformed_our_format(tmp_path):
    path = tmp_path / "ours.pt"
    save_shortcut(path, BottleneckShortcut(448), "bottleneck", "base_plus")
    raw = torch.load(path, weights_only=True)

    cases = {
        "future.pt": ({**raw, "version": 2}, "version 2 is not supported"),
        "other.pt": ({**raw, "format": "something-else"}, "unknown checkpoint format 'something-else'"),
        "fields.pt": ({**raw, "extra": 1}, r"unknown fields \['extra'\]"),
        "nodim.pt": ({k: v for k, v in raw.items() if k != "dim"}, r"missing fields \['dim'\]"),
        "wrongdim.pt": ({**raw, "dim": 576}, "field 'dim' says 576 but the weights have width 448"),
        "variant.pt": ({**raw, "variant": "lora"}, "unknown shortcut variant 'lora'"),
    }
    for name, (obj, message) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(ShortcutCheckpointError, match=f"{name}.*{message}"):
            load_shortcut(tmp_path / name)
