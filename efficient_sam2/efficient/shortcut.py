"""Shortcut branches of Sparse Window Routing (SWR).

With SWR the routed blocks of the stride-16 Hiera stage only see the object windows. The background windows
skip those blocks: they go once through a small shortcut branch, and the result is put back in their slots
before the last (dense, global) block of the stage. This file holds the shortcut variants compared in Table 3
of the paper and the reading/writing of their checkpoints.

Variants (input: background windows x of shape (N, w, w, d), output: the same shape):

    bottleneck  x + W_up(ReLU(W_down(LayerNorm(x))))  with d -> d/2 -> d (the paper's method, Eq. 13).
                Keys: norm.{weight,bias} (d,), down_project.weight (d/2, d), down_project.bias (d/2,),
                up_project.weight (d, d/2), up_project.bias (d,).
    ffn         the same pattern with an expansion d -> 2d -> d. The official code names its layers
                `input_proj` / `output_proj`, so do we: norm.*, input_proj.weight (2d, d), input_proj.bias,
                output_proj.weight (d, 2d), output_proj.bias.
    attention   x + W_up(MHSA_window(W_down(LayerNorm(x)))): multi-head self-attention among the w*w tokens of
                each window at width d/2. Keys: norm.*, down_project.weight (d/2, d), down_project.bias,
                qkv.weight (3d/2, d/2), qkv.bias (3d/2,), up_project.weight (d, d/2), up_project.bias.
                There is no output projection inside the attention (as in the official module).
    identity    x unchanged (no parameters).

Checkpoints: the official release ships `bypass_bottleneck_{base,large}.pth`, plain state dicts saved from a
CUDA device. Our own files wrap the state dict with metadata:

    {"format": "efficient-sam2-shortcut", "version": 1, "variant": str, "dim": int,
     "model": str (canonical model name, e.g. "sam2.1_hiera_base_plus"), "state_dict": {...},
     "options": {...constructor options besides dim, e.g. num_heads...},   # may be absent
     "config": {...free-form training / router settings...}}                # may be absent

`load_shortcut` reads both and tells them apart by the "format" field.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..configs import get_config, resolve_model_name
from ..io.atomic import atomic_torch_save

__all__ = [
    "BottleneckShortcut",
    "FFNShortcut",
    "AttentionShortcut",
    "IdentityShortcut",
    "SHORTCUT_VARIANTS",
    "ShortcutCheckpointError",
    "build_shortcut",
    "load_shortcut",
    "save_shortcut",
    "stage_dim_for_model",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
]

CHECKPOINT_FORMAT = "efficient-sam2-shortcut"
CHECKPOINT_VERSION = 1

# Width of the stride-16 Hiera stage -> the SAM 2 sizes that have it (used in error messages).
_DIM_TO_SIZES = {384: "tiny/small", 448: "base_plus", 576: "large"}


def _describe_dim(dim: int) -> str:
    sizes = _DIM_TO_SIZES.get(dim)
    return f"{dim} (Hiera {sizes})" if sizes else f"{dim} (no SAM 2 model size has this width)"


# ----------------------------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------------------------


class BottleneckShortcut(nn.Module):
    """Residual bottleneck MLP, the paper's shortcut branch (Eq. 13).

    Position-wise: x (..., d) -> (..., d). Parameters: d^2 + d/2 + d for the two linear layers plus 2d for the
    LayerNorm (202,272 for d = 448; 333,792 for d = 576). The up-projection starts at N(0, 1e-3), so the branch
    starts close to the identity.
    """

    def __init__(self, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        _check_dim(dim, even=True)
        self.dim = dim
        hidden = dim // 2
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.down_project = nn.Linear(dim, hidden)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.up_project = nn.Linear(hidden, dim)
        _init_residual_mlp(self.down_project, self.up_project)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., d), e.g. background windows (N, w, w, d). Returns the same shape."""
        h = self.act(self.down_project(self.norm(x)))
        return x + self.up_project(self.dropout(h))


class FFNShortcut(nn.Module):
    """Residual expanding MLP (d -> 2d -> d), the "FFN" row of Table 3.

    Position-wise: x (..., d) -> (..., d). Layer names follow the official module (`input_proj`,
    `output_proj`) so its checkpoints load. 805,056 parameters for d = 448; 1,329,984 for d = 576.
    """

    def __init__(self, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        _check_dim(dim)
        self.dim = dim
        hidden = 2 * dim
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.input_proj = nn.Linear(dim, hidden)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.output_proj = nn.Linear(hidden, dim)
        _init_residual_mlp(self.input_proj, self.output_proj)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., d). Returns the same shape."""
        h = self.act(self.input_proj(self.norm(x)))
        return x + self.output_proj(self.dropout(h))


class AttentionShortcut(nn.Module):
    """Residual window self-attention at half width, the "Attention" row of Table 3.

    x (..., h, w, d) -> LayerNorm -> down to c = d/2 -> num_heads-head self-attention among the h*w tokens of
    each window -> up to d -> + x. 353,472 parameters for d = 448; 583,488 for d = 576.

    Two switches reproduce the official `AttentionAdapter` (needed only for weights trained with it):
        official_scaling: multiply the logits by sqrt(head_dim) instead of dividing by it.
        official_layout: the official module forgets to move the head axis before the matrix products, so each
            token's heads attend to each other (softmax over the num_heads axis, not over tokens), and the result
            (tokens, heads, head_dim) is transposed to (heads, tokens, head_dim) before being reshaped to
            (h, w, c), which mixes positions and channels.
    Both True gives the official forward exactly. Both False (default) is the attention the paper describes.

    Initialisation: down_project and qkv Kaiming-normal (fan_in, linear), biases 0, and up_project N(0, 1e-3)
    so that the branch starts close to the identity like the MLP variants (the official module draws
    up_project Kaiming-normal too; this only matters for training from scratch).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        official_scaling: bool = False,
        official_layout: bool = False,
    ) -> None:
        super().__init__()
        _check_dim(dim, even=True)
        inner = dim // 2
        if num_heads < 1 or inner % num_heads != 0:
            raise ValueError(f"num_heads ({num_heads}) must divide the attention width dim // 2 = {inner}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = inner // num_heads
        self.official_scaling = official_scaling
        self.official_layout = official_layout
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.down_project = nn.Linear(dim, inner)
        self.qkv = nn.Linear(inner, 3 * inner)
        self.up_project = nn.Linear(inner, dim)
        for layer in (self.down_project, self.qkv):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="linear")
            nn.init.zeros_(layer.bias)
        nn.init.normal_(self.up_project.weight, std=1e-3)
        nn.init.zeros_(self.up_project.bias)

    @property
    def scale(self) -> float:
        """Factor applied to q . k before the softmax."""
        return math.sqrt(self.head_dim) if self.official_scaling else 1.0 / math.sqrt(self.head_dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: windows (..., h, w, d), e.g. (N, w, w, d). Returns the same shape."""
        if x.dim() < 3:
            raise ValueError(f"AttentionShortcut needs windows shaped (..., h, w, d), got {tuple(x.shape)}")
        *lead, h, w, _ = x.shape
        n, t = math.prod(lead), h * w
        y = self.down_project(self.norm(x)).reshape(n, t, self.num_heads * self.head_dim)
        q, k, v = self.qkv(y).reshape(n, t, 3, self.num_heads, self.head_dim).unbind(2)  # each (n, t, heads, hd)
        if self.official_layout:
            # attention over the head axis of every token, then the official (heads, tokens) reshape
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (n, t, heads, hd)
            out = out.transpose(1, 2)  # (n, heads, t, hd), flattened below as if it were (n, t, heads, hd)
        else:
            q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (n, heads, t, hd)
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (n, heads, t, hd)
            out = out.transpose(1, 2)  # (n, t, heads, hd)
        out = out.reshape(*lead, h, w, self.num_heads * self.head_dim)
        return x + self.up_project(out)


class IdentityShortcut(nn.Module):
    """Background windows pass unchanged (the "Identity" row of Table 3). No parameters.

    `dim` is accepted (and ignored) so that every variant can be built as `cls(dim)`.
    """

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., d). Returns x itself."""
        return x


SHORTCUT_VARIANTS: dict[str, type[nn.Module]] = {
    "bottleneck": BottleneckShortcut,
    "ffn": FFNShortcut,
    "attention": AttentionShortcut,
    "identity": IdentityShortcut,
}


def build_shortcut(variant: str, dim: int, **options: Any) -> nn.Module:
    """A freshly initialised shortcut branch of `variant` for a stride-16 stage of width `dim`.

    `options` go to the constructor (e.g. num_heads, official_scaling for "attention").
    """
    cls = _variant_class(variant)
    return cls(dim, **options)


def _variant_class(variant: str) -> type[nn.Module]:
    key = variant.lower() if isinstance(variant, str) else variant
    if key not in SHORTCUT_VARIANTS:
        raise ValueError(f"unknown shortcut variant {variant!r}; valid variants: {', '.join(SHORTCUT_VARIANTS)}")
    return SHORTCUT_VARIANTS[key]


def _check_dim(dim: int, even: bool = False) -> None:
    if not isinstance(dim, int) or dim <= 0 or (even and dim % 2):
        kind = "a positive even integer" if even else "a positive integer"
        raise ValueError(f"shortcut dim must be {kind}, got {dim!r}")


def _init_residual_mlp(first: nn.Linear, second: nn.Linear) -> None:
    """Near-identity start: Kaiming-normal (fan_in, relu) first layer, N(0, 1e-3) second layer, zero biases."""
    nn.init.kaiming_normal_(first.weight, mode="fan_in", nonlinearity="relu")
    nn.init.zeros_(first.bias)
    nn.init.normal_(second.weight, std=1e-3)
    nn.init.zeros_(second.bias)


def _variant_of(module: nn.Module) -> str | None:
    for name, cls in SHORTCUT_VARIANTS.items():
        if type(module) is cls:
            return name
    return None


def _module_options(module: nn.Module) -> dict[str, Any]:
    """Constructor options besides dim that change the function (stored in our checkpoints)."""
    if isinstance(module, AttentionShortcut):
        return {
            "num_heads": module.num_heads,
            "official_scaling": module.official_scaling,
            "official_layout": module.official_layout,
        }
    return {}


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------------


class ShortcutCheckpointError(ValueError):
    """A shortcut checkpoint that cannot be read or does not fit the model being built."""


def stage_dim_for_model(name: str) -> int:
    """Width of the stride-16 Hiera stage (where SWR routes) of model `name`: 384 tiny/small, 448 b+, 576 large."""
    return get_config(name).hiera.stage_dims[2]


# The parameter names of each variant, in the official key spelling (ours is identical).
_VARIANT_KEYS = {
    "bottleneck": {"norm", "down_project", "up_project"},
    "ffn": {"norm", "input_proj", "output_proj"},
    "attention": {"norm", "down_project", "qkv", "up_project"},
    "identity": set(),
}


def _infer_variant(state_dict: Mapping[str, Tensor], path: str) -> str:
    layers = {key.rsplit(".", 1)[0] for key in state_dict}
    for variant, expected in _VARIANT_KEYS.items():
        if layers == expected:
            return variant
    # closest variant: the one whose layer names overlap most; report what does not fit it
    best = max(_VARIANT_KEYS, key=lambda v: (len(layers & _VARIANT_KEYS[v]), -len(layers ^ _VARIANT_KEYS[v])))
    unknown = sorted(k for k in state_dict if k.rsplit(".", 1)[0] not in _VARIANT_KEYS[best])
    missing = sorted(_VARIANT_KEYS[best] - layers)
    details = []
    if unknown:
        details.append(f"unknown keys {unknown}")
    if missing:
        details.append(f"missing layers {missing}")
    raise ShortcutCheckpointError(
        f"{path}: the state dict matches no shortcut variant (closest: {best!r}: {'; '.join(details)}). "
        f"Expected layer names: "
        + "; ".join(f"{v}: {sorted(k) or 'none'}" for v, k in _VARIANT_KEYS.items())
    )


def _infer_dim(state_dict: Mapping[str, Tensor], path: str) -> int:
    weight = state_dict.get("norm.weight")
    if not isinstance(weight, Tensor) or weight.dim() != 1:
        raise ShortcutCheckpointError(f"{path}: cannot infer the shortcut width: no 1-D tensor 'norm.weight'")
    return int(weight.shape[0])


def _read(path: str, map_location: Any) -> Any:
    if not os.path.exists(path):
        raise FileNotFoundError(f"shortcut checkpoint not found: {path}")
    if os.path.isdir(path):
        raise ShortcutCheckpointError(f"{path}: is a directory, expected a shortcut checkpoint file (.pth)")
    from ..io.torch_files import TorchFileError, read_torch_file

    try:
        # data only, never code; map_location: official files hold tensors saved on cuda:0
        return read_torch_file(path, "shortcut checkpoint", map_location)
    except TorchFileError as exc:  # empty, not a torch file, truncated, pickled objects that are not plain data
        raise ShortcutCheckpointError(f"{path}: could not read it as a shortcut checkpoint: {exc.reason}") from exc


def load_shortcut(
    path: str | os.PathLike,
    dim: int | None = None,
    variant: str | None = None,
    model_name: str | None = None,
    map_location: Any = "cpu",
) -> tuple[nn.Module, dict]:
    """Read a shortcut checkpoint: an official `bypass_*.pth` state dict or our own format.

    Args:
        path: the checkpoint file.
        dim: expected width of the stride-16 stage of the model being built (checked). If None and model_name is
            given, the model's width is used.
        variant: expected variant (checked); None accepts whatever the file holds.
        model_name: the model being built. Our files must name the same model; official files (which name no
            model) are checked by width only.
        map_location: where tensors go; the official files were saved on cuda:0, so never None on CPU machines.

    Returns:
        (module in eval mode, metadata) with metadata keys: variant, dim, model (None for official files),
        source ("official" or "efficient-sam2"), options (constructor options), config (dict, may be empty),
        path.
    Raises:
        FileNotFoundError for a missing file; ShortcutCheckpointError (a ValueError) for anything else.
    """
    path = os.fspath(path)
    expected_model = None
    if model_name is not None:
        expected_model = resolve_model_name(model_name)
        model_dim = stage_dim_for_model(expected_model)
        if dim is None:
            dim = model_dim
        elif dim != model_dim:
            raise ValueError(
                f"load_shortcut: dim={dim} contradicts model_name={model_name!r}, whose stride-16 stage width is "
                f"{model_dim}"
            )
    if variant is not None:
        variant = _variant_name(variant)

    obj = _read(path, map_location)
    if not isinstance(obj, Mapping):
        raise ShortcutCheckpointError(
            f"{path}: expected a state dict or an '{CHECKPOINT_FORMAT}' dict, got {type(obj).__name__}"
        )

    if "format" in obj:
        state_dict, meta = _parse_ours(obj, path, expected_model)
    else:
        state_dict, meta = _parse_official(obj, path)

    if variant is not None and meta["variant"] != variant:
        raise ShortcutCheckpointError(
            f"{path}: holds a {meta['variant']!r} shortcut, but a {variant!r} shortcut was requested"
        )
    if dim is not None and meta["dim"] is not None and meta["dim"] != dim:
        raise ShortcutCheckpointError(
            f"{path}: the shortcut has width {_describe_dim(meta['dim'])}, but the stride-16 stage of the model "
            f"being built has width {_describe_dim(dim)}. Use the shortcut file trained for this model size."
        )
    if meta["dim"] is None:  # identity from an official-style empty dict
        meta["dim"] = dim

    try:
        module = build_shortcut(meta["variant"], meta["dim"], **meta["options"])
    except (TypeError, ValueError) as exc:
        raise ShortcutCheckpointError(f"{path}: cannot build the {meta['variant']!r} shortcut: {exc}") from exc
    _load_strict(module, state_dict, path)
    module.eval()
    meta["path"] = path
    return module, meta


def _variant_name(variant: str) -> str:
    return next(name for name, cls in SHORTCUT_VARIANTS.items() if cls is _variant_class(variant))


def _parse_official(state_dict: Mapping[str, Any], path: str) -> tuple[dict, dict]:
    bad = sorted(str(k) for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, Tensor))
    if bad:
        raise ShortcutCheckpointError(f"{path}: not a shortcut state dict: entries that are not named tensors: {bad}")
    variant = _infer_variant(state_dict, path)
    dim = _infer_dim(state_dict, path) if variant != "identity" else None
    # the official attention module is the buggy one; its weights only make sense with its forward
    options = {"official_scaling": True, "official_layout": True} if variant == "attention" else {}
    meta = {"variant": variant, "dim": dim, "model": None, "source": "official", "options": options, "config": {}}
    return dict(state_dict), meta


def _parse_ours(obj: Mapping[str, Any], path: str, expected_model: str | None) -> tuple[dict, dict]:
    if obj.get("format") != CHECKPOINT_FORMAT:
        raise ShortcutCheckpointError(
            f"{path}: unknown checkpoint format {obj.get('format')!r}; expected {CHECKPOINT_FORMAT!r} "
            "or an official plain state dict"
        )
    version = obj.get("version")
    if version != CHECKPOINT_VERSION:
        raise ShortcutCheckpointError(
            f"{path}: {CHECKPOINT_FORMAT} version {version!r} is not supported (this library reads version "
            f"{CHECKPOINT_VERSION})"
        )
    allowed = {"format", "version", "variant", "dim", "model", "state_dict", "options", "config"}
    required = {"variant", "dim", "model", "state_dict"}
    extra = sorted(str(k) for k in obj if k not in allowed)
    absent = sorted(required - set(obj))
    if extra or absent:
        problems = ([f"unknown fields {extra}"] if extra else []) + ([f"missing fields {absent}"] if absent else [])
        raise ShortcutCheckpointError(f"{path}: malformed {CHECKPOINT_FORMAT} file: {'; '.join(problems)}")
    try:
        variant = _variant_name(obj["variant"])
    except ValueError as exc:
        raise ShortcutCheckpointError(f"{path}: {exc}") from exc
    dim, model = obj["dim"], obj["model"]
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise ShortcutCheckpointError(f"{path}: field 'dim' must be an int, got {dim!r}")
    if not isinstance(model, str):
        raise ShortcutCheckpointError(f"{path}: field 'model' must be a model name, got {model!r}")
    if expected_model is not None:
        try:
            file_model = resolve_model_name(model)
        except ValueError:
            file_model = model
        if file_model != expected_model:
            raise ShortcutCheckpointError(
                f"{path}: the shortcut was trained for model {model!r}, but the model being built is "
                f"{expected_model!r}"
            )
    state_dict = obj["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise ShortcutCheckpointError(f"{path}: field 'state_dict' must be a dict, got {type(state_dict).__name__}")
    options = dict(obj.get("options") or {})
    config = dict(obj.get("config") or {})
    meta = {
        "variant": variant,
        "dim": dim,
        "model": model,
        "source": "efficient-sam2",
        "options": options,
        "config": config,
    }
    if variant != "identity" and "norm.weight" in state_dict:
        stored = _infer_dim(state_dict, path)
        if stored != dim:
            raise ShortcutCheckpointError(f"{path}: field 'dim' says {dim} but the weights have width {stored}")
    return dict(state_dict), meta


def _load_strict(module: nn.Module, state_dict: Mapping[str, Tensor], path: str) -> None:
    own = module.state_dict()
    unknown = sorted(k for k in state_dict if k not in own)
    missing = sorted(k for k in own if k not in state_dict)
    wrong = sorted(
        f"{k}: file {tuple(state_dict[k].shape)} vs expected {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and (not isinstance(state_dict[k], Tensor) or state_dict[k].shape != v.shape)
    )
    problems = []
    if unknown:
        problems.append(f"unknown keys {unknown}")
    if missing:
        problems.append(f"missing keys {missing}")
    if wrong:
        problems.append(f"shape mismatches {wrong}")
    if problems:
        raise ShortcutCheckpointError(
            f"{path}: does not fit a {_variant_of(module)!r} shortcut of width {getattr(module, 'dim', None)}: "
            + "; ".join(problems)
        )
    module.load_state_dict(state_dict, strict=True)


_PLAIN_TYPES = (bool, int, float, str, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Config values must load under torch.load(weights_only=True): plain Python data only."""
    if isinstance(value, _PLAIN_TYPES):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"save_shortcut: config key {key!r} at {where} must be a string")
            _check_plain(item, f"{where}.{key}")
        return
    raise TypeError(
        f"save_shortcut: config value at {where} has type {type(value).__name__}; only bool, int, float, str, "
        "None, lists, tuples and dicts of them are stored"
    )


def save_shortcut(
    path: str | os.PathLike,
    module: nn.Module,
    variant: str,
    model_name: str,
    config: Mapping[str, Any] | None = None,
) -> None:
    """Write `module` in our format (see the module docstring), atomically: a temporary file in the same folder
    is renamed over `path` only once it is complete.

    Args:
        module: a shortcut built by `build_shortcut(variant, stage_dim_for_model(model_name))`.
        variant: its variant name (checked against the module's class).
        model_name: the SAM 2 model it was trained for (stored as its canonical name).
        config: optional training / router settings (plain Python data).
    """
    variant = _variant_name(variant)
    if _variant_of(module) != variant:
        raise ValueError(f"save_shortcut: variant {variant!r} does not match the module ({type(module).__name__})")
    model = resolve_model_name(model_name)
    dim = stage_dim_for_model(model)
    module_dim = getattr(module, "dim", None)
    if module_dim is not None and module_dim != dim:
        raise ValueError(
            f"save_shortcut: the module has width {module_dim}, but model {model!r} has stride-16 stage width {dim}"
        )
    config = dict(config or {})
    _check_plain(config, "config")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "variant": variant,
        "dim": dim,
        "model": model,
        "state_dict": {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()},
        "options": _module_options(module),
        "config": config,
    }
    atomic_torch_save(payload, path)
