"""ModelConfig: validation, JSON round trip (the weights carry it), parameter budget."""
import pytest

from rethined_engine import ModelConfig, Rethined
from rethined_engine.model.patchmatch import coherence_layer

MAX_PARAMS = 5_000_000  # the budget (the paper's model has 4.3 M)


def test_json_round_trip_keeps_tuples():
    cfg = ModelConfig(coherence_dilations=(1, 3), widths=(16, 24, 32, 48, 64), hr_topk=0)
    assert ModelConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("fine_decay", [None, 0.0, 4.5])
def test_fine_decay_survives_the_weights_metadata(fine_decay):
    cfg = ModelConfig(hf_fine_decay=fine_decay)
    assert ModelConfig.from_json(cfg.to_json()) == cfg


def test_unknown_metadata_field_is_rejected():
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_json('{"no_such_field": 1}')


@pytest.mark.parametrize("changes, message", [
    ({"patch_size": 6}, "patch_size"),
    ({"lr_long_side": 500}, "lr_long_side"),
    ({"hr_topk": -1}, "hr_topk"),
    ({"hf_decay": -0.5}, "hf_decay"),
    ({"hf_decay": float("nan")}, "hf_decay"),
    ({"hf_fine_decay": -1.0}, "hf_fine_decay"),
    ({"hf_fine_decay": float("nan")}, "hf_fine_decay"),
    ({"hf_mid_gain": -0.1, "hf_fine_decay": 3.0}, "hf_mid_gain"),
    ({"hf_mid_gain": 1.5, "hf_fine_decay": 3.0}, "hf_mid_gain"),
    ({"hf_mid_gain": float("nan"), "hf_fine_decay": 3.0}, "hf_mid_gain"),
    ({"coherence_dilations": ()}, "coherence_dilations"),
    ({"coherence_dilations": (1, 0)}, "coherence_dilations"),
    ({"widths": (8, 8)}, "widths"),
    ({"copy_base_feather": 5}, "copy_base_feather"),
    ({"copy_base_feather": 2.0}, "copy_base_feather"),
    ({"copy_base_sigma": 0.0}, "copy_base_sigma"),
    ({"copy_border_sigma": -1.0}, "copy_border_sigma"),
    ({"copy_border_sigma": float("nan")}, "copy_border_sigma"),
    ({"copy_consensus": -0.1}, "copy_consensus"),
    ({"copy_consensus": 1.5}, "copy_consensus"),
    ({"copy_consensus": float("nan")}, "copy_consensus"),
    ({"copy_detail_weight": -0.01}, "copy_detail_weight"),
    ({"copy_detail_weight": 0.5}, "copy_detail_weight"),
    ({"copy_detail_weight": float("nan")}, "copy_detail_weight"),
    ({"copy_repeat_radius": -1}, "copy_repeat_radius"),
    ({"copy_repeat_radius": 2.0}, "copy_repeat_radius"),
    ({"copy_repeat_penalty": -0.1}, "copy_repeat_penalty"),
    ({"copy_repeat_penalty": float("nan")}, "copy_repeat_penalty"),
    ({"copy_border_continuity": -0.5}, "copy_border_continuity"),
    ({"copy_border_continuity": 7.0}, "copy_border_continuity"),
    ({"copy_border_continuity": float("nan")}, "copy_border_continuity"),
    ({"copy_support_margin": -0.1}, "copy_support_margin"),
    ({"copy_support_margin": 2.5}, "copy_support_margin"),
    ({"copy_support_margin": float("nan")}, "copy_support_margin"),
    ({"colour_anchor": -0.1}, "colour_anchor"),
    ({"colour_anchor": 1.5}, "colour_anchor"),
    ({"colour_anchor_sigma": 0.0}, "colour_anchor_sigma"),
    ({"colour_anchor_sigma": 24.0}, "colour_anchor_sigma"),
    ({"flat_fill_form": "biharmonic"}, "flat_fill_form must be one of"),
])
def test_bad_values_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**changes)


def test_coherence_receptive_field_spans_a_token_seam():
    cfg = ModelConfig()
    convs = [m for m in coherence_layer(cfg.coherence_hidden, cfg.coherence_dilations) if hasattr(m, "dilation")]
    field = 1 + sum((m.kernel_size[0] - 1) * m.dilation[0] for m in convs)
    assert field > 2 * cfg.patch_size


def test_parameter_budget():
    assert sum(p.numel() for p in Rethined(ModelConfig()).parameters()) <= MAX_PARAMS
