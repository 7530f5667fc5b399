"""bench.native_stages times each native stage against torch code that computes the same result."""
import numpy as np
import pytest
import torch

from rethined_engine.backends.native_backend import native_module

pytestmark = pytest.mark.skipif(native_module() is None, reason="the native extension is not built")


def test_each_torch_reference_computes_the_native_result():
    """prep, hr and seam: the torch reference and the native stage agree (HR at scale 2, with the smooth
    style's two HF bands and hf_mid_gain < 1, which the torch reference must apply too)."""
    from bench.native_stages import stages
    from rethined_engine.weights import load_model

    smooth = load_model(style="smooth").cfg
    assert smooth.hf_mid_gain < 1.0 and smooth.hf_fine_decay is not None
    with torch.inference_mode():
        pairs = {stage: (reference(), fast()) for stage, reference, fast in stages(640, style="smooth")
                 if stage != "lr"}
    (ref_image, ref_mask), (image, mask) = pairs["prep"]
    np.testing.assert_allclose(np.asarray(image), ref_image.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(np.asarray(mask), ref_mask.numpy())
    for stage in ("hr", "seam"):
        ref, got = pairs[stage]
        diff = np.abs(ref[0].permute(1, 2, 0).numpy().astype(np.int16) - got.astype(np.int16))
        assert diff.max() <= 1 and (diff > 0).mean() <= 2e-3, stage


def test_the_default_stages_compute_the_native_result():
    """copy, border (the default's LR copy steps) and join (the CNN's head input): the torch reference and the
    C++ agree to float rounding; hr with the default's full-resolution cross-fade: to a uint8 level."""
    from bench.native_stages import stages

    with torch.inference_mode():
        pairs = {stage: (reference(), fast()) for stage, reference, fast in stages(640)
                 if stage in ("copy", "border", "join", "hr")}
    assert set(pairs) == {"copy", "border", "join", "hr"}
    for stage in ("copy", "border", "join"):
        ref, got = pairs[stage]
        got = got.numpy() if isinstance(got, torch.Tensor) else got.transpose(0, 3, 1, 2)
        np.testing.assert_allclose(got, ref.numpy(), atol=1e-6, rtol=0, err_msg=stage)
    ref, got = pairs["hr"]
    diff = np.abs(ref[0].permute(1, 2, 0).numpy().astype(np.int16) - got.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() <= 2e-3


def test_the_flat_fill_stages_compute_the_native_result():
    """flat:membrane, flat:continued, flat:continued_flat: torch's `flat_fill` and the C++ `FlatFill` agree on the
    LR network's real composite and copies (fill to float rounding, weight within 1e-4: a ramp in log)."""
    from bench.native_stages import stages

    with torch.inference_mode():
        pairs = {stage: (reference(), fast()) for stage, reference, fast in stages(640) if stage.startswith("flat:")}
    assert set(pairs) == {"flat:membrane", "flat:continued", "flat:continued_flat"}
    for stage, ((ref_fill, ref_weight), (fill, weight)) in pairs.items():
        torch.testing.assert_close(fill, ref_fill, atol=1e-5, rtol=0, msg=stage)
        torch.testing.assert_close(weight, ref_weight, atol=1e-4, rtol=0, msg=stage)
