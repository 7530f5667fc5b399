"""Masking rules of the NeuralPatchMatch attention."""
import pytest
import torch
import torch.nn.functional as F

from rethined_engine.model.patchmatch import masked_attention, masked_attention_topk, patchify, token_mask, unpatchify

from conftest import make_model


def random_unit(b, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, n, d, generator=g), dim=-1)


def test_patchify_roundtrip():
    x = torch.rand(2, 3, 24, 40)
    tokens = patchify(x, 8)
    assert tokens.shape == (2, 15, 192)
    assert torch.equal(unpatchify(tokens, 8, 3, 5), x)
    # token 1 is the patch at grid (0, 1), channel-major
    assert torch.equal(tokens[0, 1].reshape(3, 8, 8), x[0, :, 0:8, 8:16])


def test_token_mask_is_any_pixel():
    mask = torch.zeros(1, 1, 16, 24)
    mask[0, 0, 9, 23] = 1  # a single pixel in token (1, 2)
    assert token_mask(mask, 8).tolist() == [[False, False, False, False, False, True]]


def test_attention_rules():
    b, n = 2, 37
    g = torch.Generator().manual_seed(0)
    query_masked = torch.rand(b, n, generator=g) < 0.4
    inside = torch.rand(b, n, generator=g) < 0.9
    key_ok = ~query_masked & inside
    attn = masked_attention(random_unit(b, n, 16, 1), random_unit(b, n, 16, 2), query_masked, key_ok,
                            torch.tensor(20.0))
    assert attn.dtype == torch.float32
    torch.testing.assert_close(attn.sum(-1), torch.ones(b, n), rtol=0, atol=1e-6)
    eye = torch.eye(n, dtype=torch.bool)
    for i in range(b):
        known = ~query_masked[i]
        # a known token keeps itself exactly
        assert torch.equal(attn[i][known], eye[known].float())
        rows = attn[i][query_masked[i]]
        # masked tokens put exactly zero weight on masked tokens (incl. themselves) and on padding
        assert torch.all(rows[:, ~key_ok[i]] == 0)
        assert torch.all(rows[:, key_ok[i]] > 0)


def test_no_known_key_keeps_self_without_nan():
    query_masked = torch.ones(1, 5, dtype=torch.bool)
    key_ok = torch.zeros(1, 5, dtype=torch.bool)
    attn = masked_attention(random_unit(1, 5, 4, 0), random_unit(1, 5, 4, 1), query_masked, key_ok,
                            torch.tensor(10.0))
    assert torch.equal(attn[0], torch.eye(5))


def test_fp16_inputs_softmax_in_fp32():
    q = random_unit(1, 9, 8, 3).half()
    query_masked = torch.tensor([[True, False] * 4 + [True]])
    attn = masked_attention(q, q, query_masked, ~query_masked, torch.tensor(100.0))
    assert attn.dtype == torch.float32 and torch.isfinite(attn).all()


def test_known_tokens_pass_through_and_no_hole_leaks_into_mixing():
    model = make_model(seed=2)
    torch.manual_seed(0)
    image = torch.rand(1, 3, 64, 96)
    mask = torch.zeros(1, 1, 64, 96)
    mask[..., 20:40, 30:70] = 1
    with torch.no_grad():
        out = model.forward_lr(image, mask, torch.ones(1, 8 * 12, dtype=torch.bool))
        # known tokens' mixed output equals their input patch
        known = ~out.query_masked[0]
        torch.testing.assert_close(patchify(out.mixed, 8)[0, known], patchify(image, 8)[0, known], rtol=0,
                                   atol=1e-6)
        # changing hole pixels (and thus the coarse fill) cannot change what the holes draw from
        poisoned = image.clone()
        poisoned[mask.expand_as(image) > 0] = 0.5
        out2 = model.forward_lr(poisoned, mask, torch.ones(1, 8 * 12, dtype=torch.bool))
    torch.testing.assert_close(out2.result, out.result, rtol=0, atol=1e-6)


def _dense_topk(q, k, tokens, query_masked, key_ok, scale, topk):
    """The dense reference of `masked_attention_topk`: full attention, A @ tokens, masked top-K rows."""
    attn = masked_attention(q, k, query_masked, key_ok, scale)
    weight, index = attn.topk(topk, dim=-1)
    source_ok = torch.gather(key_ok.float(), 1, index.flatten(1)).reshape(index.shape)
    weight = weight / weight.sum(-1, keepdim=True) * source_ok * query_masked.float()[..., None]
    return torch.bmm(attn, tokens.float()).to(tokens.dtype), weight, index


@pytest.mark.parametrize("case", ["scattered", "no_hole", "all_holes", "one_key", "batch_differs"])
@pytest.mark.parametrize("topk", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_compact_topk_matches_dense(case, topk, dtype):
    b, n, d = 2, 41, 16
    g = torch.Generator().manual_seed(topk)
    query_masked = torch.rand(b, n, generator=g) < 0.45
    key_ok = ~query_masked & (torch.rand(b, n, generator=g) < 0.9)
    if case == "no_hole":
        query_masked[:] = False
    elif case == "all_holes":
        query_masked[:] = True
    elif case == "one_key":    # fewer allowed keys than topk: the rest get zero weight
        key_ok[:] = False
        key_ok[:, 3] = True
        query_masked[:, 3] = False
    elif case == "batch_differs":
        query_masked[1] = False
    key_ok &= ~query_masked
    q, k = random_unit(b, n, d, 5).to(dtype), random_unit(b, n, d, 6).to(dtype)
    tokens = torch.rand(b, n, 12, generator=g).to(dtype)
    scale = torch.tensor(30.0)
    mixed, (weight, index) = masked_attention_topk(q, k, tokens, query_masked, key_ok, scale, topk)
    want_mixed, want_weight, want_index = _dense_topk(q, k, tokens, query_masked, key_ok, scale, topk)
    assert mixed.dtype == dtype and weight.dtype == torch.float32 and index.shape == (b, n, topk)
    atol = 1e-6 if dtype == torch.float32 else 1e-3
    torch.testing.assert_close(mixed, want_mixed, rtol=0, atol=atol)
    torch.testing.assert_close(weight, want_weight, rtol=0, atol=1e-6)
    used = weight > 0
    assert torch.equal(index[used], want_index[used])
    assert torch.equal(used, want_weight > 0)
    assert ((index >= 0) & (index < n)).all()   # unused slots still hold a valid token index


def test_compact_lr_network_matches_exported_graph(weights_path):
    """The native backend's compact LR network gives the exported graph's outputs (shipped fixture weights,
    a block hole whose inner tokens are deeper than one token, padding tokens that may not be keys)."""
    from rethined_engine.deploy.onnx_export import LRNetwork, example_inputs
    from rethined_engine.weights import load_model

    model = load_model(weights_path)
    for topk in (1, 4):
        image, mask, key_inside = example_inputs(96, 128, 8, batch=2, seed=topk)
        key_inside[:, :, -1] = 0
        with torch.inference_mode():
            want = LRNetwork(model, topk)(image, mask, key_inside)
            got = LRNetwork(model, topk, compact=True)(image, mask, key_inside)
        for name, a, b in zip(("lr_result", "weight", "fine_weight"), got[:3], want[:3]):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=name)
        used = want[1] != 0
        assert torch.equal(got[3][used], want[3][used]) and got[3].dtype == want[3].dtype
