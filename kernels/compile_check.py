"""Compile every Triton kernel for real GPU targets without a GPU: Triton's full pipeline down to a cubin
(bundled ptxas), for each named autotune config, both dtypes and the specialisations a launch creates
(an int argument equal to 1 becomes a constexpr). Catches what the interpreter accepts and the compiler
does not, and reports registers / spills (ptxas -v) and shared memory per config.

    python -m rethined_engine.kernels.compile_check [--arch 90 87]       # H100/H200, Jetson Orin

Must run without TRITON_INTERPRET (the kernels must be JIT functions, not interpreted ones).
"""
from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INT_ONE = 1            # what the launcher specialises: an int argument equal to 1 is a constexpr


def _variants():
    """(name, kernel JITFunction, signature {arg: type}, constexprs {arg: value}, num_warps, num_stages)."""
    from . import (blur, coherence, colour_anchor, copy_candidates, dis_search, flat_fill, flow_refinement,
                   hr_upscale, masked_attention, membrane, patch_projection, prep, seam_blend, source_sweep, token_copy)
    from .patch_projection import dot_precision
    from rethined_engine.model import flat, patchmatch

    import torch
    import triton

    out = []
    hr = {"image_ptr": "*u8", "mask_ptr": "*u8", "lr_ptr": "*fp32", "weight_ptr": "*fp32", "fine_weight_ptr": "*fp32",
          "index_ptr": "*i32", "known_ptr": "*u8", "out_ptr": "*u8", "H": "i32", "W": "i32", "h": "i32", "w": "i32",
          "scale": "i32", "span": "i32", "grid_h": "i32", "grid_w": "i32", "cols": "i32", "tiles_x": "i32",
          "feather": "i32", "img_sy": "i32", "img_sx": "i32", "img_sc": "i32", "out_sy": "i32", "out_sx": "i32",
          "out_sc": "i32", "mask_sy": "i32", "mask_sx": "i32", "K": "constexpr", "FINE": "constexpr",
          "FEATHER": "constexpr", "TILE_H": "constexpr", "TILE_W": "constexpr", "REFLECT": "constexpr"}
    chw, hwc = ("img_sx", "out_sx", "mask_sx"), ("img_sc", "out_sc", "mask_sx")
    for layout, ones, fine, feather, reflect, span in (("hwc_scale1", ("scale", "img_sc", "out_sc", "mask_sx"), False,
                                                        False, False, 8),
                                                       ("chw_scale4", chw, False, False, False, 32),
                                                       ("chw_scale4,fine", chw, True, False, False, 32),
                                                       ("chw_scale4,feather", chw, False, True, False, 32),
                                                       ("hwc_scale4,feather", hwc, False, True, False, 32),
                                                       ("chw_scale4,feather,reflect", chw, False, True, True, 32)):
        tile_h, tile_w = hr_upscale.tile_shape(span)
        out.append((f"hr_upscale[{layout}]", hr_upscale.hr_upscale_kernel, hr,
                    {**{k: INT_ONE for k in ones}, "K": 1 if feather else 4, "FINE": fine, "FEATHER": feather,
                     "TILE_H": tile_h, "TILE_W": tile_w, "REFLECT": reflect}, hr_upscale.NUM_WARPS, 3))
    rows = {"image_ptr": "*u8", "mask_ptr": "*u8", "taps_ptr": "*fp32", "rows_ptr": "*fp32", "H": "i32", "W": "i32",
            "Wp": "i32", "w": "i32", "scale": "i32", "radius": "i32", "img_sy": "i32", "img_sx": "i32",
            "img_sc": "i32", "mask_sy": "i32", "mask_sx": "i32", "n_taps": "i32", "REFLECT": "constexpr",
            "BLOCK": "constexpr"}
    cols = {"rows_ptr": "*fp32", "mask_ptr": "*u8", "taps_ptr": "*fp32", "lr_ptr": "*fp32", "lr_mask_ptr": "*fp32",
            "H": "i32", "W": "i32", "Hp": "i32", "h": "i32", "w": "i32", "scale": "i32", "radius": "i32",
            "mask_sy": "i32", "mask_sx": "i32", "n_taps": "i32", "REFLECT": "constexpr", "BLOCK": "constexpr"}
    out.append(("prep_rows[hwc_scale1]", prep.prep_rows_kernel, rows,
                {"scale": INT_ONE, "img_sc": INT_ONE, "mask_sx": INT_ONE, "n_taps": INT_ONE, "REFLECT": True,
                 "BLOCK": prep.BLOCK_LR}, 4, 3))
    out.append(("prep_rows[chw_scale4]", prep.prep_rows_kernel, rows,
                {"img_sx": INT_ONE, "mask_sx": INT_ONE, "REFLECT": False, "BLOCK": prep.BLOCK_LR}, 4, 3))
    out.append(("prep_cols[scale1]", prep.prep_cols_kernel, cols,
                {"scale": INT_ONE, "mask_sx": INT_ONE, "n_taps": INT_ONE, "REFLECT": True, "BLOCK": prep.BLOCK_LR}, 4, 3))
    out.append(("prep_cols[scale4]", prep.prep_cols_kernel, cols,
                {"mask_sx": INT_ONE, "REFLECT": False, "BLOCK": prep.BLOCK_LR}, 4, 3))
    seam = {"image_ptr": "*u8", "mask_ptr": "*u8", "taps_ptr": "*fp32", "out_ptr": "*u8", "H": "i32", "W": "i32",
            "gain": "fp32", "img_sy": "i32", "img_sx": "i32", "img_sc": "i32", "mask_sy": "i32", "mask_sx": "i32",
            "out_sy": "i32", "out_sx": "i32", "out_sc": "i32", "R": "constexpr", "TILE_H": "constexpr",
            "TILE_W": "constexpr", "ROWS": "constexpr", "HALO_W": "constexpr"}
    radius = 6                                                   # seam_taps(2.0)
    out.append(("seam_blend[chw]", seam_blend.seam_blend_kernel, seam,
                {"img_sx": INT_ONE, "mask_sx": INT_ONE, "out_sx": INT_ONE, "R": radius, "TILE_H": seam_blend.TILE_H,
                 "TILE_W": seam_blend.TILE_W, "ROWS": triton.next_power_of_2(seam_blend.TILE_H + 2 * radius),
                 "HALO_W": triton.next_power_of_2(seam_blend.TILE_W + 2 * radius)},
                seam_blend.NUM_WARPS, 3))
    for dtype, ty in ((torch.float16, "fp16"), (torch.float32, "fp32")):
        pj = {"image_ptr": f"*{ty}", "feat_ptr": f"*{ty}", "weight_ptr": f"*{ty}", "bias_ptr": f"*{ty}",
              "out_ptr": f"*{ty}", "h": "i32", "w": "i32", "grid_w": "i32", "n_tokens": "i32", "eps": "fp32",
              "P": "constexpr", "IN_DIM": "constexpr", "D": "constexpr", "CENTER": "constexpr",
              "PRECISION": "constexpr", "BLOCK_M": "constexpr", "BLOCK_IN": "constexpr"}
        for name, cfg in patch_projection.CONFIGS.items():
            out.append((f"patch_projection[{ty},{name}]", patch_projection.patch_projection_kernel.fn, pj,
                        {"P": 8, "IN_DIM": 288, "D": 256, "CENTER": 0.5, "PRECISION": dot_precision(dtype),
                         **cfg.kwargs}, cfg.num_warps, cfg.num_stages))
        at = {"q_ptr": f"*{ty}", "k_ptr": f"*{ty}", "image_ptr": f"*{ty}", "out_ptr": f"*{ty}", "rows_ptr": "*i32",
              "n_rows_ptr": "*i32", "keys_ptr": "*i32", "n_keys_ptr": "*i32", "weight_ptr": "*fp32",
              "index_ptr": "*i32", "h": "i32", "w": "i32", "grid_w": "i32", "scale_log2": "fp32",
              "D": "constexpr", "P": "constexpr", "K": "constexpr", "KP": "constexpr", "PRECISION": "constexpr",
              "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"}
        for name, cfg in masked_attention.CONFIGS.items():
            out.append((f"masked_attention[{ty},{name}]", masked_attention.masked_attention_kernel.fn, at,
                        {"D": 256, "P": 8, "K": 4, "KP": 4, "PRECISION": dot_precision(dtype), **cfg.kwargs},
                        cfg.num_warps, cfg.num_stages))
        co = {"hidden_ptr": f"*{ty}", "weight_ptr": f"*{ty}", "bias_ptr": f"*{ty}", "mixed_ptr": f"*{ty}",
              "image_ptr": f"*{ty}", "mask_ptr": f"*{ty}", "out_ptr": f"*{ty}", "h": "i32", "w": "i32",
              "C": "constexpr", "BH": "constexpr", "BW": "constexpr"}
        out.append((f"coherence_epilogue[{ty}]", coherence.coherence_epilogue_kernel, co,
                    {"C": 16, "BH": coherence.BLOCK_ROWS, "BW": coherence.BLOCK_COLS}, 4, 3))
        mb = {"src_ptr": f"*{ty}", "value_ptr": f"*{ty}", "fixed_ptr": "*u8", "rhs_ptr": f"*{ty}", "out_ptr": f"*{ty}",
              "height": "i32", "width": "i32", "channels": "i32", "FROM_COARSE": "constexpr", "HAS_RHS": "constexpr",
              "BLOCK": "constexpr"}
        for from_coarse, has_rhs in itertools.product((False, True), (False, True)):   # harmonic_fill, poisson_fill
            out.append((f"jacobi_sweep[{ty}{',from_coarse' if from_coarse else ''}{',rhs' if has_rhs else ''}]",
                        membrane.jacobi_sweep_kernel, mb,
                        {"FROM_COARSE": from_coarse, "HAS_RHS": has_rhs, "BLOCK": membrane.BLOCK}, 4, 3))
        mc = {"value_levels_ptr": f"*{ty}", "fixed_levels_ptr": "*u8", "rhs_levels_ptr": f"*{ty}",
              "buffers_ptr": f"*{ty}", "height": "i32", "width": "i32", "channels": "i32", "planes": "i32",
              "levels": "i32", "last": "i32", "coarsest_sweeps": "i32", "sweeps": "i32", "HAS_RHS": "constexpr",
              "BLOCK": "constexpr"}
        for has_rhs in (False, True):
            out.append((f"membrane_coarse[{ty}{',rhs' if has_rhs else ''}]", membrane.membrane_coarse_kernel, mc,
                        {"HAS_RHS": has_rhs, "BLOCK": membrane.SMALL_GRID}, membrane.SMALL_GRID_WARPS, 3))
        mp = {"values_ptr": f"*{ty}", "fixed_ptr": f"*{ty}", "value_levels_ptr": f"*{ty}", "fixed_levels_ptr": "*u8",
              "rhs_ptr": f"*{ty}", "rhs_levels_ptr": f"*{ty}", "height": "i32", "width": "i32", "channels": "i32",
              "planes": "i32", "LEVELS": "constexpr", "TILE": "constexpr", "HAS_RHS": "constexpr"}
        # the border match's levels, and the flat fill's (the colours' membrane and the continued fill's steps and
        # Poisson solve, the flatness carried into the hole)
        for levels, has_rhs in ((patchmatch.BORDER_MATCH_LEVELS, False), (flat.MEMBRANE_LEVELS, False),
                                (flat.MEMBRANE_LEVELS, True), (flat.FLAT_LEVELS, False)):
            out.append((f"membrane_pyramid[{ty},levels{levels}{',rhs' if has_rhs else ''}]",
                        membrane.membrane_pyramid_kernel, mp, {"LEVELS": levels, "TILE": 2 ** levels,
                                                               "HAS_RHS": has_rhs},
                        membrane.pyramid_warps(2 ** levels), 3))
        cm = {"x_ptr": f"*{ty}", "hole_ptr": f"*{ty}", "out_ptr": "*fp32", "h": "i32", "w": "i32", "gh": "i32",
              "gw": "i32", "total": "i32", "C": "constexpr", "CELL": "constexpr", "SQUARES": "constexpr",
              "BLOCK": "constexpr"}
        # the membrane's, the continued fill's, the band's
        for cell, squares in ((flat.MEMBRANE_CELL, True), (flat.MEMBRANE_CELL, False), (flat.BAND_CELL, False)):
            out.append((f"flat_cell_means[{ty},cell{cell}{',squares' if squares else ''}]",
                        flat_fill.cell_means_kernel, cm, {"C": 3, "CELL": cell, "SQUARES": squares,
                                                          "BLOCK": flat_fill.BLOCK}, 4, 3))
        bst = {"composite_ptr": f"*{ty}", "mask_ptr": f"*{ty}", "filled_ptr": f"*{ty}", "stack_ptr": "*fp32",
               "pixels": "i32", "total": "i32", "BLOCK": "constexpr"}
        out.append((f"border_stack[{ty}]", membrane.border_stack_kernel, bst, {"BLOCK": membrane.BLOCK}, 4, 3))
        bmm = {"means_ptr": "*fp32", "mask_ptr": f"*{ty}", "mismatch_ptr": f"*{ty}", "at_border_ptr": f"*{ty}",
               "h": "i32", "w": "i32", "total": "i32", "BLOCK": "constexpr"}
        out.append((f"border_mismatch[{ty}]", membrane.border_mismatch_kernel, bmm, {"BLOCK": membrane.BLOCK}, 4, 3))
        bap = {"filled_ptr": f"*{ty}", "mask_ptr": f"*{ty}", "membrane_ptr": f"*{ty}", "out_ptr": f"*{ty}",
               "pixels": "i32", "total": "i32", "BLOCK": "constexpr"}
        out.append((f"border_apply[{ty}]", membrane.border_apply_kernel, bap, {"BLOCK": membrane.BLOCK}, 4, 3))
        fe = {"filled_ptr": f"*{ty}", "low_ptr": f"*{ty}", "membranes_ptr": "*fp32", "flatness_ptr": "*fp32",
              "fill_out_ptr": f"*{ty}", "weight_out_ptr": f"*{ty}", "h": "i32", "w": "i32", "mh": "i32", "mw": "i32",
              "bh": "i32", "bw": "i32", "total": "i32", "BLOCK": "constexpr"}
        out.append((f"flat_epilogue[{ty}]", flat_fill.flat_epilogue_kernel, fe, {"BLOCK": flat_fill.BLOCK}, 4, 3))
        re = {"composite_ptr": f"*{ty}", "hole_ptr": f"*{ty}", "grown_ptr": f"*{ty}", "guess_ptr": "*fp32",
              "out_ptr": "*fp32", "h": "i32", "w": "i32", "gh": "i32", "gw": "i32", "total": "i32",
              "BLOCK": "constexpr"}
        out.append((f"flat_ring_error[{ty}]", flat_fill.ring_error_kernel, re, {"BLOCK": flat_fill.BLOCK}, 4, 3))
        ce = {"filled_ptr": f"*{ty}", "low_ptr": f"*{ty}", "continued_ptr": "*fp32", "carried_ptr": "*fp32",
              "any_ring_ptr": "*fp32", "flatness_ptr": "*fp32", "fill_out_ptr": f"*{ty}", "weight_out_ptr": f"*{ty}",
              "h": "i32", "w": "i32", "mh": "i32", "mw": "i32", "bh": "i32", "bw": "i32", "total": "i32",
              "FLAT": "constexpr", "BLOCK": "constexpr"}
        for with_flatness in (False, True):                 # flat_fill_form continued, continued_flat
            out.append((f"flat_continued_epilogue[{ty}{',flat' if with_flatness else ''}]",
                        flat_fill.continued_epilogue_kernel, ce, {"FLAT": with_flatness, "BLOCK": flat_fill.BLOCK},
                        4, 3))
        tc = {"image_ptr": f"*{ty}", "base_ptr": f"*{ty}", "known_ptr": f"*{ty}", "source_ptr": "*i64",
              "out_ptr": f"*{ty}", "h": "i32", "w": "i32", "grid_h": "i32", "grid_w": "i32", "PATCH": "constexpr",
              "FEATHER": "constexpr", "BASE_FEATHER": "constexpr", "BLOCK": "constexpr"}
        for feather, base_feather in ((4, 4), (2, 0)):                 # the realistic and the fast style
            out.append((f"copy_tokens[{ty},{feather},{base_feather}]", token_copy.copy_tokens_kernel, tc,
                        {"PATCH": 8, "FEATHER": feather, "BASE_FEATHER": base_feather, "BLOCK": token_copy.BLOCK},
                        4, 3))
        fa = {"x_ptr": f"*{ty}", "taps_ptr": "*fp32", "out_ptr": f"*{ty}", "total": "i32", "length": "i32",
              "inner": "i32", "n_taps": "i32", "BLOCK": "constexpr"}
        for axis, ones in (("rows", {}), ("cols", {"inner": INT_ONE})):
            out.append((f"filter_axis[{ty},{axis}]", blur.filter_axis_kernel, fa, {**ones, "BLOCK": blur.BLOCK}, 4, 3))
        ac = {"composite_ptr": f"*{ty}", "mask_ptr": f"*{ty}", "filled_ptr": f"*{ty}", "seed_ptr": "*i32",
              "colour_ptr": "*fp32", "fill_ptr": "*fp32", "h": "i32", "w": "i32", "gh": "i32", "gw": "i32",
              "total": "i32", "BLOCK": "constexpr"}
        out.append((f"anchor_cells[{ty}]", colour_anchor.anchor_cells_kernel, ac, {"BLOCK": colour_anchor.BLOCK}, 4, 3))
        aa = {"filled_ptr": f"*{ty}", "mask_ptr": f"*{ty}", "shift_ptr": "*fp32", "out_ptr": f"*{ty}", "h": "i32",
              "w": "i32", "gh": "i32", "gw": "i32", "total": "i32", "strength": "fp32", "BLOCK": "constexpr"}
        out.append((f"anchor_apply[{ty}]", colour_anchor.anchor_apply_kernel, aa, {"BLOCK": colour_anchor.BLOCK}, 4, 3))
        sw = {"q_ptr": f"*{ty}", "k_ptr": f"*{ty}", "candidates_ptr": "*i64", "own_score_ptr": "*fp32",
              "valid_ptr": "*i1", "has_key_ptr": "*i1", "key_ok_ptr": "*i1", "colours_ptr": "*fp32",
              "expected_ptr": "*fp32", "source_ptr": "*i64", "out_ptr": "*i64", "score_ptr": "*fp32",
              "score_out_ptr": "*fp32", "floor_ptr": "*fp32", "n": "i32", "grid_h": "i32",
              "grid_w": "i32", "dim": "i32", "candidates": "i32", "parity": "i32", "continuity": "fp32",
              "repeat_penalty": "fp32", "colour_weight": "fp32", "border_continuity": "fp32", "C_BLOCK": "constexpr",
              "RADIUS": "constexpr", "COLOUR": "constexpr", "GUIDES": "constexpr", "SUPPORT": "constexpr",
              "DIM_CHUNK": "constexpr", "BLOCK": "constexpr"}
        for radius, colour, guides, support in ((1, False, True, False), (1, False, False, False),
                                                (0, True, False, False), (1, False, False, True)):  # the copy styles
            out.append((f"propagation_sweep[{ty},r{radius},{'colour' if colour else 'no_colour'}"
                        f"{',guides' if guides else ''}{',support' if support else ''}]",
                        source_sweep.propagation_sweep_kernel, sw,
                        {"parity": INT_ONE, "C_BLOCK": 8, "RADIUS": radius, "COLOUR": colour, "GUIDES": guides,
                         "SUPPORT": support, "DIM_CHUNK": source_sweep.DIM_CHUNK, "BLOCK": source_sweep.BLOCK},
                        source_sweep.NUM_WARPS, 3))
        ps = {"q_ptr": f"*{ty}", "k_ptr": f"*{ty}", "query_masked_ptr": "*i1", "key_ok_ptr": "*i1",
              "value_ptr": "*fp32", "key_ptr": "*i32", "n": "i32", "dim": "i32", "grid_w": "i32", "pool": "i32",
              "split_keys": "i32", "locality": "fp32", "inv_side": "fp32", "POOL_BLOCK": "constexpr",
              "LOCALITY": "constexpr", "IEEE": "constexpr", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr",
              "DIM_CHUNK": "constexpr"}
        out.append((f"pool_search[{ty},pool8]", copy_candidates.pool_search_kernel, ps,
                    {"POOL_BLOCK": 8, "LOCALITY": False, "IEEE": ty == "fp32", "BLOCK_M": copy_candidates.BLOCK_M,
                     "BLOCK_N": copy_candidates.BLOCK_N, "DIM_CHUNK": copy_candidates.DIM_CHUNK},
                    copy_candidates.NUM_WARPS, 3))
    jf = {"seed_in_ptr": "*i32", "seed_out_ptr": "*i32", "gh": "i32", "gw": "i32", "total": "i32", "step": "i32",
          "BLOCK": "constexpr"}
    for name, ones in (("jump_flood[step]", {}), ("jump_flood[step1]", {"step": INT_ONE})):
        out.append((name, colour_anchor.jump_flood_kernel, jf, {**ones, "BLOCK": colour_anchor.BLOCK}, 4, 3))
    ad = {"seed_ptr": "*i32", "colour_ptr": "*fp32", "fill_ptr": "*fp32", "diff_ptr": "*fp32", "gh": "i32",
          "gw": "i32", "total": "i32", "BLOCK": "constexpr"}
    out.append(("anchor_difference", colour_anchor.anchor_difference_kernel, ad, {"BLOCK": colour_anchor.BLOCK}, 4, 3))
    bs = {"stack_ptr": "*fp32", "fine_ptr": "*fp32", "coarse_ptr": "*fp32", "out_ptr": "*fp32",
          "cells_per_image": "i32", "total": "i32", "BLOCK": "constexpr"}
    out.append(("flat_band_size", flat_fill.band_size_kernel, bs, {"BLOCK": flat_fill.BLOCK}, 4, 3))
    band_grid = {"stack_ptr": "*fp32", "blurred_ptr": "*fp32", "out_ptr": "*fp32", "bh": "i32", "bw": "i32",
                 "gh": "i32", "gw": "i32", "total": "i32", "BLOCK": "constexpr"}
    out.append(("flat_carry_cells", flat_fill.carry_cells_kernel, band_grid, {"BLOCK": flat_fill.BLOCK}, 4, 3))
    flatness = {"stack_ptr": "*fp32", "blurred_ptr": "*fp32", "carried_ptr": "*fp32", "out_ptr": "*fp32", "bh": "i32",
                "bw": "i32", "gh": "i32", "gw": "i32", "total": "i32", "BLOCK": "constexpr"}
    out.append(("flat_flatness", flat_fill.flatness_kernel, flatness, {"BLOCK": flat_fill.BLOCK}, 4, 3))
    steps = {"means_ptr": "*fp32", "steps_ptr": "*fp32", "known_ptr": "*fp32", "gh": "i32", "gw": "i32",
             "total": "i32", "BLOCK": "constexpr"}
    out.append(("flat_steps", flat_fill.steps_kernel, steps, {"BLOCK": flat_fill.BLOCK}, 4, 3))
    divergence = {"along_ptr": "*fp32", "out_ptr": "*fp32", "gh": "i32", "gw": "i32", "total": "i32",
                  "BLOCK": "constexpr"}
    out.append(("flat_divergence", flat_fill.divergence_kernel, divergence, {"BLOCK": flat_fill.BLOCK}, 4, 3))
    pm_sig = {"value_ptr": "*fp32", "key_ptr": "*i32", "colours_ptr": "*fp32", "expected_ptr": "*fp32", "out_ptr": "*i64",
              "n": "i32", "pool": "i32", "colour_weight": "fp32", "SPLITS": "constexpr", "POOL_BLOCK": "constexpr",
              "COLOUR": "constexpr", "BLOCK_M": "constexpr"}
    out.append(("pool_merge[pool8,colour]", copy_candidates.pool_merge_kernel, pm_sig,
                {"SPLITS": copy_candidates.MAX_SPLITS, "POOL_BLOCK": 8, "COLOUR": True,
                 "BLOCK_M": copy_candidates.MERGE_ROWS}, 4, 3))
    out.extend(_video_variants(dis_search, flow_refinement))
    return out


def _video_variants(dis_search, flow_refinement) -> list[tuple]:
    """The video path's kernels: DIS's patch search and propagation (8 x 8 patches), the variational refinement's
    four kernels and its fused form."""
    n = 64                                                      # the presets' 8 x 8 patches
    search = {"target_ptr": "*fp32", "template_ptr": "*fp32", "gx_ptr": "*fp32", "gy_ptr": "*fp32", "x_ptr": "*fp32",
              "y_ptr": "*fp32", "start_ptr": "*fp32", "out_ptr": "*fp32", "h": "i32", "w": "i32", "patches": "i32",
              "iterations": "i32", "limit2": "fp32", "eps": "fp32", "BLOCK_P": "constexpr", "N": "constexpr"}
    spread = {"target_ptr": "*fp32", "template_ptr": "*fp32", "x_ptr": "*fp32", "y_ptr": "*fp32", "flow_ptr": "*fp32",
              "out_ptr": "*fp32", "h": "i32", "w": "i32", "patches": "i32", "cols": "i32", "BLOCK_P": "constexpr",
              "N": "constexpr"}
    patches = {"BLOCK_P": dis_search.BLOCK_P, "N": n}
    smooth = {"flow_ptr": "*fp32", "increment_ptr": "*fp32", "weights_ptr": "*fp32", "h": "i32", "w": "i32",
              "half_alpha": "fp32", "eps2": "fp32", "BLOCK": "constexpr"}
    system = {"terms_ptr": "*fp32", "flow_ptr": "*fp32", "increment_ptr": "*fp32", "weights_ptr": "*fp32",
              "system_ptr": "*fp32", "h": "i32", "w": "i32", "half_delta": "fp32", "half_gamma": "fp32",
              "zeta2": "fp32", "eps2": "fp32", "BLOCK": "constexpr"}
    sor = {"system_ptr": "*fp32", "weights_ptr": "*fp32", "increment_ptr": "*fp32", "h": "i32", "w": "i32",
           "parity": "i32", "omega": "fp32", "BLOCK": "constexpr"}
    terms = {"source_ptr": "*fp32", "target_ptr": "*fp32", "flow_ptr": "*fp32", "terms_ptr": "*fp32", "h": "i32",
             "w": "i32", "BLOCK": "constexpr"}
    fused = {"source_ptr": "*fp32", "target_ptr": "*fp32", "terms_ptr": "*fp32", "flow_ptr": "*fp32",
             "increment_ptr": "*fp32", "weights_ptr": "*fp32",
             "system_ptr": "*fp32", "h": "i32", "w": "i32", "fixed_point_iterations": "i32", "sor_iterations": "i32",
             "half_alpha": "fp32", "half_delta": "fp32", "half_gamma": "fp32", "zeta2": "fp32", "eps2": "fp32",
             "omega": "fp32", "BLOCK": "constexpr"}
    return [("dis_inverse_search", dis_search.inverse_search_kernel, search, patches, 4, 3),
            ("dis_propagate", dis_search.propagate_kernel, spread, patches, 4, 3),
            ("refine_terms", flow_refinement.terms_kernel, terms, {"BLOCK": flow_refinement.BLOCK}, 4, 3),
            ("refine_smoothness", flow_refinement.smoothness_kernel, smooth, {"BLOCK": flow_refinement.BLOCK}, 4, 3),
            ("refine_system", flow_refinement.system_kernel, system, {"BLOCK": flow_refinement.BLOCK}, 4, 3),
            ("refine_sor", flow_refinement.sor_kernel, sor, {"BLOCK": flow_refinement.BLOCK}, 4, 3),
            ("refine_sor[parity1]", flow_refinement.sor_kernel, sor,
             {"parity": INT_ONE, "BLOCK": flow_refinement.BLOCK}, 4, 3),
            ("refine_fused", flow_refinement.fused_refine_kernel, fused, {"BLOCK": flow_refinement.FUSED_BLOCK},
             flow_refinement.FUSED_WARPS, 3)]


def _usage_from_log(log: str) -> tuple[int | None, int | None]:
    """(registers per thread, spill stores in bytes) read from a `ptxas -v` log."""
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores", log)
    return (int(regs.group(1)) if regs else None, int(spills.group(1)) if spills else None)


def _ptxas_usage(ptx: str, arch: int) -> tuple[int | None, int | None]:
    """(registers per thread, spill stores in bytes) from a second `ptxas -v` run, for a Triton that does not
    print its own ptxas log; (None, None) if it cannot say."""
    import shutil

    try:                                    # the ptxas Triton itself used (its API moved between versions)
        from triton.backends.nvidia.compiler import get_ptxas
        try:
            ptxas = get_ptxas(arch).path
        except TypeError:
            ptxas = get_ptxas().path
    except Exception:  # noqa: BLE001
        ptxas = shutil.which("ptxas")
    if ptxas is None:
        return None, None
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"     # Triton targets sm_90a on Hopper
        proc = subprocess.run([ptxas, "-v", f"--gpu-name={gpu}", str(src), "-o", str(Path(tmp) / "k.cubin")],
                              capture_output=True, text=True)
    return _usage_from_log(proc.stderr)


def _compile_with_log(fn, sig, constexprs, target, num_warps: int, num_stages: int):
    """triton.compile, and the log of the ptxas -v run it makes (printed where Triton has the
    TRITON_DUMP_PTXAS_LOG knob; empty where it has not)."""
    import contextlib
    import io

    import triton
    from triton.compiler import ASTSource

    knobs = getattr(getattr(triton, "knobs", None), "nvidia", None)
    prints_log = hasattr(knobs, "dump_ptxas_log")
    log = io.StringIO()
    with contextlib.redirect_stdout(log), (knobs.scope() if prints_log else contextlib.nullcontext()):
        if prints_log:
            knobs.dump_ptxas_log = True
        kernel = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs), target=target,
                                options={"num_warps": num_warps, "num_stages": num_stages})
    return kernel, log.getvalue()


def compile_all(archs: list[int]) -> list[dict]:
    from triton.backends.compiler import GPUTarget

    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("error: unset TRITON_INTERPRET: the interpreter does not compile kernels")
    rows = []
    for arch in archs:
        target = GPUTarget("cuda", arch, 32)
        for name, fn, signature, constexprs, num_warps, num_stages in _variants():
            sig = {k: ("constexpr" if k in constexprs else v) for k, v in signature.items()}
            t0 = time.perf_counter()
            try:
                kernel, log = _compile_with_log(fn, sig, constexprs, target, num_warps, num_stages)
            except Exception as exc:  # noqa: BLE001 - reported per kernel, the caller decides
                rows.append({"arch": arch, "kernel": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]})
                continue
            regs, spills = _usage_from_log(log)
            if regs is None:                  # a Triton that keeps its ptxas log to itself: ptxas -v once more
                regs, spills = _ptxas_usage(kernel.asm["ptx"], arch)
            rows.append({"arch": arch, "kernel": name, "ok": True, "seconds": time.perf_counter() - t0,
                         "shared_bytes": kernel.metadata.shared, "registers": regs, "spill_bytes": spills,
                         "num_warps": num_warps})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[90, 87], help="SM versions (90 H100/H200, 87 Orin)")
    args = parser.parse_args(argv)
    rows = compile_all(args.arch)
    for r in rows:
        if r["ok"]:
            print(f"sm_{r['arch']} {r['kernel']:40s} ok  {r['seconds']:5.1f} s  regs {r['registers']}  "
                  f"spill {r['spill_bytes']} B  smem {r['shared_bytes']} B  warps {r['num_warps']}")
        else:
            print(f"sm_{r['arch']} {r['kernel']:40s} FAILED  {r['error']}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
