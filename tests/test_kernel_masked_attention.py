"""Triton masked attention + token mixing + top-K vs its torch reference (and the reference vs the
model's attention): odd grids, ragged row/key blocks, no and all hole tokens, no allowed key, fp16/fp32."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")
from rethined_engine.kernels.masked_attention import (CONFIGS, compact, masked_attention_kernel,  # noqa: E402
                                                      masked_attention_topk,
                                                      masked_attention_topk_reference)

# (grid_h, grid_w, patch, d, hole fraction): N = 15 .. 221 tokens, partial blocks of rows and keys
CPU_SHAPES = [(3, 5, 8, 256, 0.4), (9, 13, 8, 256, 0.3), (13, 17, 8, 64, 0.6), (6, 10, 4, 64, 0.5),
              (2, 3, 16, 128, 0.5), (5, 5, 8, 64, 0.0), (5, 5, 8, 64, 1.0), (12, 12, 8, 64, 0.97)]
GPU_SHAPES = [(64, 64, 8, 256, 0.4), (36, 64, 8, 256, 0.4), (64, 64, 8, 256, 0.9)]
LOGIT_SCALE, TOPK = 23.3, 4
MIXED_ATOL = {torch.float32: 1e-5, torch.float16: 2e-3}   # fp16: p and the output are rounded to fp16
WEIGHT_ATOL = 1e-5                                           # logits accumulate in fp32 either way
LOGIT_TIE = 1e-4


def case(shape, dtype, device, seed=0):
    gh, gw, p, d, hole = shape
    g = torch.Generator().manual_seed(seed)
    n = gh * gw
    image = torch.rand(3, gh * p, gw * p, generator=g)
    q = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    k = F.normalize(q + torch.randn(n, d, generator=g), dim=-1)    # correlated with q: peaked rows
    query_masked = torch.rand(n, generator=g) < hole
    inside = torch.rand(n, generator=g) < 0.9
    return [t.to(device) for t in (q.to(dtype), k.to(dtype), image.to(dtype), query_masked, inside)] + [p]


def check_topk(q, k, query_masked, allowed, weight, index, ref_weight):
    """Weights match; each kernel index is an allowed key whose logit ties the reference's K-th best."""
    torch.testing.assert_close(weight, ref_weight, rtol=0, atol=WEIGHT_ATOL)
    logits = (q.double() @ k.double().t()) * LOGIT_SCALE
    live = weight > 0
    assert not live[~query_masked].any()
    rows, cols = live.nonzero(as_tuple=True)
    chosen = index[rows, cols].long()
    assert allowed[chosen].all()
    ref_logits = logits.masked_fill(~allowed[None, :], float("-inf")).sort(dim=-1, descending=True).values
    torch.testing.assert_close(logits[rows, chosen], ref_logits[rows, cols], rtol=0, atol=LOGIT_TIE)
    for r in rows.unique():                                        # distinct keys per row
        keys = index[r][live[r]]
        assert keys.unique().numel() == keys.numel()


def run_case(shape, dtype, device, topk=TOPK):
    q, k, image, query_masked, inside, p = case(shape, dtype, device)
    allowed = inside & ~query_masked
    hole_pixels = F.interpolate(query_masked.reshape(1, 1, shape[0], shape[1]).float(), scale_factor=p)[0, 0] > 0
    out = image.clone()
    out[:, hole_pixels] = float("nan")                             # poison what the kernel must write
    mixed, weight, index = masked_attention_topk(q, k, image, query_masked, inside, LOGIT_SCALE, topk, p, out=out)
    ref_mixed, ref_weight, _ = masked_attention_topk_reference(q.double(), k.double(), image.double(), query_masked,
                                                               inside, LOGIT_SCALE, topk, p)
    assert mixed.data_ptr() == out.data_ptr() and weight.shape == (q.shape[0], topk) and index.dtype == torch.int32
    torch.testing.assert_close(mixed.double(), ref_mixed, rtol=0, atol=MIXED_ATOL[dtype])
    assert torch.equal(mixed[:, ~hole_pixels], image[:, ~hole_pixels])
    check_topk(q, k, query_masked, allowed, weight, index, ref_weight.float())


@pytest.mark.parametrize("shape", CPU_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_kernel_matches_reference(shape, dtype):
    run_case(shape, dtype, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("shape", CPU_SHAPES + GPU_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_kernel_matches_reference_cuda(shape, dtype):
    run_case(shape, dtype, "cuda")


@pytest.mark.parametrize("topk", [1, 3, 8])
def test_other_topk(topk):
    """K = 1 (a one-column top list), K not a power of two (padded columns), K = 8."""
    run_case((9, 13, 8, 64, 0.4), torch.float32, "cpu", topk)


def test_in_place_and_no_allowed_key():
    """out=image (values are read from known tokens only); a hole row without keys keeps its token."""
    q, k, image, query_masked, inside, p = case((4, 6, 8, 64, 0.5), torch.float32, "cpu")
    ref_mixed, _, _ = masked_attention_topk_reference(q, k, image, query_masked, inside, LOGIT_SCALE, TOPK, p)
    work = image.clone()
    mixed, _, _ = masked_attention_topk(q, k, work, query_masked, inside, LOGIT_SCALE, TOPK, p, out=work)
    torch.testing.assert_close(mixed, ref_mixed, rtol=0, atol=1e-5)
    nothing = torch.zeros_like(inside)
    mixed, weight, _ = masked_attention_topk(q, k, image, query_masked, nothing, LOGIT_SCALE, TOPK, p)
    assert torch.equal(mixed, image) and not weight.any()


def test_reference_matches_model_attention():
    """The reference's mixing and top-K are the model's (`NeuralPatchMatch` + `LRNetwork`) math."""
    from rethined_engine.model.patchmatch import masked_attention, patchify, unpatchify

    q, k, image, query_masked, inside, p = case((5, 7, 8, 64, 0.4), torch.float32, "cpu")
    allowed = inside & ~query_masked
    attn = masked_attention(q[None], k[None], query_masked[None], allowed[None], torch.tensor(LOGIT_SCALE))
    want = unpatchify(attn @ patchify(image[None], p), p, 5, 7)[0]
    mixed, weight, index = masked_attention_topk_reference(q, k, image, query_masked, inside, LOGIT_SCALE, TOPK, p)
    torch.testing.assert_close(mixed, want)
    live = weight > 0
    torch.testing.assert_close(weight.sum(-1)[live.any(-1)], torch.ones(int(live.any(-1).sum())))
    assert allowed[index[live].long()].all()


def test_compact():
    flags = torch.tensor([False, True, True, False, True, False])
    idx, count = compact(flags)
    assert count.tolist() == [3] and idx[:3].tolist() == [1, 2, 4]
    idx, count = compact(torch.zeros(5, dtype=torch.bool))
    assert count.tolist() == [0]


def test_rejects_bad_shapes():
    q, k, image, query_masked, inside, p = case((3, 5, 8, 64, 0.4), torch.float32, "cpu")
    with pytest.raises(ValueError, match="image"):
        masked_attention_topk(q, k, image[:, :-8], query_masked, inside, LOGIT_SCALE, TOPK, p)
    with pytest.raises(ValueError, match="query_masked"):
        masked_attention_topk(q, k, image, query_masked[:-1], inside, LOGIT_SCALE, TOPK, p)
    with pytest.raises(ValueError, match="topk"):
        masked_attention_topk(q, k, image, query_masked, inside, LOGIT_SCALE, 0, p)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_autotune_config(monkeypatch, name):
    """The interpreter runs the first config only; force each one so that no tile shape is untested."""
    monkeypatch.setattr(masked_attention_kernel, "configs", [CONFIGS[name]])
    monkeypatch.setattr(masked_attention_kernel, "cache", {})
    run_case((9, 13, 8, 64, 0.4), torch.float16, "cpu")


def test_rejects_non_contiguous_out():
    q, k, image, query_masked, inside, p = case((3, 5, 8, 64, 0.4), torch.float32, "cpu")
    strided = torch.empty(image.shape[1], image.shape[2], 3).permute(2, 0, 1)
    with pytest.raises(ValueError, match="out"):
        masked_attention_topk(q, k, image, query_masked, inside, LOGIT_SCALE, TOPK, p, out=strided)
