"""Prompt encoder, two-way transformer and mask decoder against the reference `sam2==1.1.0` (same random weights),
plus hand-made checks of the prompt semantics, the stability-based mask selection and the decoder saliency map."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from efficient_sam2.modeling.mask_decoder import MaskDecoder, MaskDecoderOutput, decoder_saliency, mask_stability_score
from efficient_sam2.modeling.prompt_encoder import PromptEncoder
from efficient_sam2.modeling.transformer import TwoWayTransformer
from tests.reference_oracle import build_reference_model, require_reference

IMAGE_SIZE = 256
E = IMAGE_SIZE // 16  # image-embedding side
C = 256
TOL = 1e-4


# ----------------------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def heads():
    """(reference SAM2Base, our PromptEncoder, our MaskDecoder) sharing the reference's random weights."""
    require_reference()
    ref = build_reference_model("sam2.1_hiera_tiny", image_size=IMAGE_SIZE, seed=0)
    # The reference builder's default post-processing switches the dynamic multimask selection on.
    assert ref.sam_mask_decoder.dynamic_multimask_via_stability
    prompt_encoder = PromptEncoder(C, (E, E), (IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=16)
    prompt_encoder.load_state_dict(ref.sam_prompt_encoder.state_dict(), strict=True)
    decoder = MaskDecoder(
        transformer_dim=C,
        transformer=TwoWayTransformer(depth=2, embedding_dim=C, num_heads=8, mlp_dim=2048),
        dynamic_multimask_via_stability=True,
    )
    decoder.load_state_dict(ref.sam_mask_decoder.state_dict(), strict=True)
    return ref, prompt_encoder.eval(), decoder.eval()


def image_inputs(batch: int, seed: int, scale: float | torch.Tensor = 1.0):
    """Seeded image embedding (B, C, E, E) and high-res features [(B, 32, 4E, 4E), (B, 64, 2E, 2E)]."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1, 1, 1, 1)
    image = torch.randn(batch, C, E, E, generator=g) * scale
    high_res = [
        torch.randn(batch, C // 8, 4 * E, 4 * E, generator=g) * scale,
        torch.randn(batch, C // 4, 2 * E, 2 * E, generator=g) * scale,
    ]
    return image, high_res


def prompt_case(name: str, batch: int, seed: int = 1):
    """(points, boxes, masks) for the reference PromptEncoder signature."""
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(batch, 4, 2, generator=g) * IMAGE_SIZE
    labels = torch.tensor([[1, 0, 1, 0], [0, 1, 1, -1]])[:batch].int()
    box = torch.tensor([[30.0, 40.0, 200.0, 180.0], [10.0, 5.0, 120.0, 250.0]])[:batch]
    mask = torch.randn(batch, 1, 4 * E, 4 * E, generator=g) * 5
    if name == "points":
        return (coords, labels), None, None
    if name == "box_points":
        return (coords[:, :2], labels[:, :2].abs()), box, None
    if name == "box":
        return None, box, None
    if name == "mask":
        return (coords[:, :1], torch.ones(batch, 1, dtype=torch.int32)), None, mask
    if name == "mask_only":
        return None, None, mask
    if name == "pad_point":  # what SAM2Base sends with no user prompt
        return (torch.zeros(batch, 1, 2), -torch.ones(batch, 1, dtype=torch.int32)), None, None
    if name == "none":
        return None, None, None
    raise KeyError(name)


PROMPT_CASES = ["points", "box_points", "box", "mask", "mask_only", "pad_point", "none"]
DECODER_CASES = ["points", "box_points", "mask", "none"]  # "none": zero sparse tokens


def as_reference(out: MaskDecoderOutput) -> tuple[torch.Tensor, ...]:
    """Our decoder output as the reference's tuple: (masks, ious, tokens, object score logits)."""
    return out.masks, out.ious, out.tokens, out.object_score_logits


def max_diffs(ours, theirs) -> list[float]:
    return [(a.float() - b.float()).abs().amax().item() if a.numel() else 0.0 for a, b in zip(ours, theirs)]


# ----------------------------------------------------------------------------------------------------------------
# reference parity


@pytest.mark.reference
def test_state_dict_keys_and_shapes_match_reference(heads):
    ref, prompt_encoder, decoder = heads
    for ours, theirs in ((prompt_encoder, ref.sam_prompt_encoder), (decoder, ref.sam_mask_decoder)):
        ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
        assert list(ours_sd) == list(theirs_sd)
        assert all(ours_sd[k].shape == theirs_sd[k].shape for k in ours_sd)
    buffers = dict(prompt_encoder.named_buffers())
    assert buffers["pe_layer.positional_encoding_gaussian_matrix"].shape == (2, C // 2)
    assert "pe_layer.positional_encoding_gaussian_matrix" not in dict(prompt_encoder.named_parameters())


@pytest.mark.reference
@pytest.mark.parametrize("case", PROMPT_CASES)
@torch.no_grad()
def test_prompt_encoder_matches_reference(heads, case):
    ref, prompt_encoder, _ = heads
    batch = 1 if case == "none" else 2
    points, boxes, masks = prompt_case(case, batch)
    sparse, dense = prompt_encoder(points, boxes, masks)
    ref_sparse, ref_dense = ref.sam_prompt_encoder(points, boxes, masks)
    assert sparse.shape == ref_sparse.shape and dense.shape == ref_dense.shape
    d_sparse, d_dense = max_diffs((sparse, dense), (ref_sparse, ref_dense))
    assert d_sparse <= TOL and d_dense <= TOL, (d_sparse, d_dense)
    d_pe = (prompt_encoder.get_dense_pe() - ref.sam_prompt_encoder.get_dense_pe()).abs().max().item()
    assert d_pe <= 1e-5


@pytest.mark.reference
@torch.no_grad()
def test_mask_prompt_of_other_size_is_resized_like_reference(heads):
    """A 128 x 128 mask prompt is brought to 4E x 4E with antialiased bilinear, as SAM2Base does."""
    ref, prompt_encoder, _ = heads
    mask = torch.randn(2, 1, 128, 128, generator=torch.Generator().manual_seed(3)) * 4
    resized = F.interpolate(mask, size=(4 * E, 4 * E), mode="bilinear", align_corners=False, antialias=True)
    _, dense = prompt_encoder(None, None, mask)
    _, ref_dense = ref.sam_prompt_encoder(None, None, resized)
    assert (dense - ref_dense).abs().max().item() <= TOL


@pytest.mark.reference
@pytest.mark.parametrize(
    "multimask, dynamic", [(True, True), (False, True), (False, False)], ids=["multi", "single-dynamic", "single"]
)
@pytest.mark.parametrize("case", DECODER_CASES)
@torch.no_grad()
def test_prompt_encoder_and_decoder_match_reference(heads, case, multimask, dynamic):
    ref, prompt_encoder, decoder = heads
    batch = 1 if case == "none" else 2
    image, high_res = image_inputs(batch, seed=10)
    points, boxes, masks = prompt_case(case, batch)
    ref_decoder = ref.sam_mask_decoder
    ref_decoder.dynamic_multimask_via_stability = dynamic
    decoder.dynamic_multimask_via_stability = dynamic
    try:
        sparse, dense = ref.sam_prompt_encoder(points, boxes, masks)
        expected = ref_decoder(image, ref.sam_prompt_encoder.get_dense_pe(), sparse, dense, multimask, False, high_res)
        sparse, dense = prompt_encoder(points, boxes, masks)
        out = decoder(image, prompt_encoder.get_dense_pe(), sparse, dense, multimask, False, high_res)
    finally:
        ref_decoder.dynamic_multimask_via_stability = True
        decoder.dynamic_multimask_via_stability = True
    assert out.saliency is None
    got = as_reference(out)
    assert [t.shape for t in got] == [t.shape for t in expected]
    num_masks = 3 if multimask else 1
    assert got[0].shape == (batch, num_masks, 4 * E, 4 * E) and got[1].shape == (batch, num_masks)
    assert got[2].shape == (batch, num_masks, C) and got[3].shape == (batch, 1)
    diffs = max_diffs(got, expected)
    assert max(diffs) <= TOL, diffs


@pytest.mark.reference
@torch.no_grad()
def test_dynamic_multimask_takes_both_branches_like_reference(heads):
    """Item 0 (large logits) has a stable single mask; item 1 does not and falls back to the best multimask."""
    ref, prompt_encoder, decoder = heads
    image, high_res = image_inputs(2, seed=10, scale=torch.tensor([10.0, 1.0]))
    points, boxes, masks = prompt_case("points", 2)
    sparse, dense = prompt_encoder(points, boxes, masks)
    pe = prompt_encoder.get_dense_pe()

    all_masks, all_iou = decoder.predict_masks(image, pe, sparse, dense, False, high_res)[:2]
    stability = mask_stability_score(all_masks[:, 0], 0.05)
    assert stability[0] >= 0.98 > stability[1], stability
    best = all_iou[1, 1:].argmax() + 1

    got = as_reference(decoder(image, pe, sparse, dense, False, False, high_res))
    expected = ref.sam_mask_decoder(image, pe, sparse, dense, False, False, high_res)
    assert max(max_diffs(got, expected)) <= TOL
    assert torch.equal(got[0][0, 0], all_masks[0, 0]) and torch.equal(got[0][1, 0], all_masks[1, best])
    assert torch.equal(got[1][:, 0], torch.stack([all_iou[0, 0], all_iou[1, best]]))
    # the pointer token is the single-mask token whatever mask was picked
    tokens = decoder.predict_masks(image, pe, sparse, dense, False, high_res)[2]
    assert torch.equal(got[2], tokens[:, :1])


@pytest.mark.reference
@pytest.mark.parametrize("multimask", [True, False])
@torch.no_grad()
def test_repeat_image_matches_reference(heads, multimask):
    """One image shared by a batch of 2 prompt sets; high-res features of batch 1 broadcast."""
    ref, prompt_encoder, decoder = heads
    image, high_res = image_inputs(1, seed=11)
    points, boxes, masks = prompt_case("points", 2)
    sparse, dense = prompt_encoder(points, boxes, masks)
    pe = prompt_encoder.get_dense_pe()
    got = as_reference(decoder(image, pe, sparse, dense, multimask, True, high_res))
    expected = ref.sam_mask_decoder(image, pe, sparse, dense, multimask, True, high_res)
    assert got[0].shape[0] == 2
    assert max(max_diffs(got, expected)) <= TOL


def _reference_saliency(ref, image, pe, sparse, dense, high_res, token_mask):
    """Independent saliency: hooks on the reference's three token->image attentions recompute softmax(q k^T / sqrt d)
    in float64 from their projections; then the mean over layers, heads and the selected tokens, item by item."""
    transformer = ref.sam_mask_decoder.transformer
    modules = [layer.cross_attn_token_to_image for layer in transformer.layers] + [transformer.final_attn_token_to_image]
    probs = []

    def hook(module, args, kwargs, output):
        q = module.q_proj(kwargs["q"]).double()
        k = module.k_proj(kwargs["k"]).double()
        b, nq, d = q.shape
        h = module.num_heads
        q = q.reshape(b, nq, h, d // h).transpose(1, 2)
        k = k.reshape(b, k.shape[1], h, d // h).transpose(1, 2)
        probs.append(torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1))

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in modules]
    try:
        outputs = ref.sam_mask_decoder(image, pe, sparse, dense, False, False, high_res)
    finally:
        for handle in handles:
            handle.remove()
    probs = torch.stack(probs)  # (3, B, heads, 6 + N, E*E)
    rows = []
    for b in range(image.shape[0]):
        keep = torch.cat([torch.ones(6, dtype=torch.bool), token_mask[b]]).nonzero().flatten()
        rows.append(probs[:, b][:, :, keep].mean(dim=(0, 1, 2)))
    return torch.stack(rows), outputs


@pytest.mark.reference
@torch.no_grad()
def test_saliency_matches_independent_computation(heads):
    ref, prompt_encoder, decoder = heads
    image, high_res = image_inputs(2, seed=12)
    points, boxes, masks = prompt_case("points", 2)
    sparse, dense = prompt_encoder(points, boxes, masks)  # 4 points + 1 pad token each
    pe = prompt_encoder.get_dense_pe()
    token_mask = torch.tensor([[True, True, False, True, False], [False, False, False, False, False]])

    expected, ref_outputs = _reference_saliency(ref, image, pe, sparse, dense, high_res, token_mask)
    out = decoder(image, pe, sparse, dense, False, False, high_res, return_attention=True,
                  sparse_token_mask=token_mask)
    got, saliency = as_reference(out), out.saliency
    assert saliency.shape == (2, E * E)
    assert (saliency.double() - expected).abs().max().item() <= 1e-6
    assert torch.allclose(saliency.sum(-1), torch.ones(2), atol=1e-5)
    assert (saliency >= 0).all()
    # asking for the map leaves the other outputs as they were (and as the reference has them)
    plain = as_reference(decoder(image, pe, sparse, dense, False, False, high_res))
    assert max(max_diffs(got, plain)) <= 1e-5
    assert max(max_diffs(got, ref_outputs)) <= TOL

    # the token mask matters, and None means "all tokens"
    all_tokens = torch.ones_like(token_mask)
    expected_all, _ = _reference_saliency(ref, image, pe, sparse, dense, high_res, all_tokens)
    got_all = decoder(image, pe, sparse, dense, False, False, high_res, return_attention=True).saliency
    assert (got_all.double() - expected_all).abs().max().item() <= 1e-6
    assert (got_all - saliency).abs().max().item() > 1e-6


# ----------------------------------------------------------------------------------------------------------------
# hand-made checks (no reference needed)


@torch.no_grad()
def test_prompt_semantics_by_hand():
    torch.manual_seed(0)
    enc = PromptEncoder(32, (4, 4), (64, 64), mask_in_chans=16)
    coords = torch.tensor([[[10.0, 20.0], [3.0, 60.0], [0.0, 0.0]]])
    labels = torch.tensor([[1, 0, -1]])
    sparse, dense = enc((coords, labels), None, None)
    assert sparse.shape == (1, 4, 32)  # 3 points + 1 padding token
    pe = enc.pe_layer.encode_unit((coords + 0.5) / 64)
    assert torch.allclose(sparse[0, 0], pe[0, 0] + enc.point_embeddings[1].weight[0])
    assert torch.allclose(sparse[0, 1], pe[0, 1] + enc.point_embeddings[0].weight[0])
    assert torch.equal(sparse[0, 2], enc.not_a_point_embed.weight[0])
    assert torch.equal(sparse[0, 3], enc.not_a_point_embed.weight[0])
    assert torch.equal(dense, enc.no_mask_embed.weight.reshape(1, 32, 1, 1).expand(1, 32, 4, 4))

    box = torch.tensor([[4.0, 8.0, 40.0, 50.0]])
    sparse, _ = enc(None, box, None)
    corners = enc.pe_layer.encode_unit((box.reshape(1, 2, 2) + 0.5) / 64)
    assert torch.allclose(sparse[0, 0], corners[0, 0] + enc.point_embeddings[2].weight[0])
    assert torch.allclose(sparse[0, 1], corners[0, 1] + enc.point_embeddings[3].weight[0])

    sparse, dense = enc(None, None, None)
    assert sparse.shape == (1, 0, 32) and dense.shape == (1, 32, 4, 4)
    # the dense code is the point code of the cell centres
    dense_pe = enc.get_dense_pe()
    centre = enc.pe_layer.encode_unit(torch.tensor([[(2 + 0.5) / 4, (1 + 0.5) / 4]]))  # x = col 2, y = row 1
    assert torch.allclose(dense_pe[0, :, 1, 2], centre[0], atol=1e-6)
    # a sine/cosine pair per frequency: sin^2 + cos^2 = 1
    assert torch.allclose(dense_pe[0, :16] ** 2 + dense_pe[0, 16:] ** 2, torch.ones(16, 4, 4), atol=1e-5)


def test_stability_selection_by_hand():
    decoder = MaskDecoder(
        transformer=TwoWayTransformer(depth=1, embedding_dim=32, num_heads=2, mlp_dim=16),
        transformer_dim=32, dynamic_multimask_via_stability=True,
    ).eval()
    masks = torch.full((2, 4, 4, 4), -5.0)
    masks[0, 0, :2] = 5.0  # crisp: stability 1
    masks[1, 0, :2] = 5.0
    masks[1, 0, 2:] = 0.0  # 8 of 16 pixels inside (-0.05, 0.05]: stability 0.5
    masks[1, 2] = 7.0
    iou = torch.tensor([[0.1, 0.9, 0.2, 0.3], [0.1, 0.2, 0.8, 0.3]])
    assert torch.equal(mask_stability_score(masks[:, 0], 0.05), torch.tensor([1.0, 0.5]))
    assert torch.equal(mask_stability_score(torch.full((4, 4), -1.0), 0.05), torch.tensor(1.0))
    out_masks, out_iou = decoder._select_by_stability(masks, iou)
    assert torch.equal(out_masks[:, 0], torch.stack([masks[0, 0], masks[1, 2]]))
    assert torch.equal(out_iou, torch.tensor([[0.1], [0.8]]))


def test_decoder_saliency_by_hand():
    # two layers, one head, tokens [a, b], two image tokens
    attention = [torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]]), torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])]
    got = decoder_saliency(attention, torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(got, torch.tensor([[0.75, 0.25]]))
    got = decoder_saliency(attention, torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(got, torch.tensor([[0.375, 0.625]]))


def test_decoder_needs_high_res_features():
    decoder = MaskDecoder(
        transformer=TwoWayTransformer(depth=1, embedding_dim=32, num_heads=2, mlp_dim=16), transformer_dim=32
    ).eval()
    image = torch.randn(1, 32, 4, 4)
    sparse = torch.randn(1, 2, 32)
    with pytest.raises(ValueError, match="high_res_features"):
        decoder(image, torch.randn(1, 32, 4, 4), sparse, torch.zeros(1, 32, 4, 4), True, False)
    high_res = [torch.randn(1, 4, 16, 16), torch.randn(1, 8, 8, 8)]
    out = decoder(
        image, torch.randn(1, 32, 4, 4), sparse, torch.zeros(1, 32, 4, 4), True, False, high_res,
        return_attention=True,
    )
    masks, iou, tokens, score, saliency = out.masks, out.ious, out.tokens, out.object_score_logits, out.saliency
    assert masks.shape == (1, 3, 16, 16) and iou.shape == (1, 3) and tokens.shape == (1, 3, 32)
    assert score.shape == (1, 1) and saliency.shape == (1, 16)
