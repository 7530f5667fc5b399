"""Every hyper-parameter of the RETHINED model in one place."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass


INFERENCE_FIELDS = ("lr_long_side", "lr_texture", "copy_feather", "copy_base_feather", "copy_base_sigma",
                    "copy_border_sigma", "copy_pool", "copy_colour_weight", "copy_detail_weight", "copy_locality", "copy_sweeps", "copy_continuity",
                    "copy_border_continuity", "copy_support_margin",
                    "copy_match_sweeps", "copy_consensus", "colour_anchor", "colour_anchor_sigma", "colour_anchor_flat", "flat_fill_form", "copy_repeat_radius", "copy_repeat_penalty", "key_edge_tokens", "key_frame_lines", "key_hole_clearance",
                    "key_hole_clearance_max_loss", "copy_detail_min_spread",
                    "hr_fade_reflect", "hr_topk", "hf_transfer", "hf_decay", "hf_fine_decay", "hf_mid_gain", "hr_feather",
                    "seam_sigma", "seam_gain", "float_mask_threshold")  # may differ from training
LR_TEXTURES = ("mix", "copy")
COARSE_PREFILLS = ("zeros", "membrane")
FLAT_FILL_FORMS = ("membrane", "continued", "continued_flat")   # `model.flat.flat_fill`'s smooth fill and weight
COPY_SWEEPS_MAX = 16   # each sweep is unrolled in the exported graph
COPY_MATCH_SWEEPS_MAX = 256  # unrolled in the exported graph too
KEY_HOLE_CLEARANCE_MAX = 4  # each step is a 3-tap max pool in the exported graph
COLOUR_ANCHOR_SIGMA_MAX = 20.0  # LR px: the native extension's filters take radius <= 31 on the anchor's cells (model.anchor.ANCHOR_CELL px)
COPY_DETAIL_WEIGHT_MAX = 0.09  # model.patchmatch.DETAIL_LEVEL_SPAN ** 2 times this stays under 2: a copy option's score stays above NO_OPTION
COPY_BORDER_CONTINUITY_MAX = 6.0  # similarities differ by <= 2, four neighbours' copy_continuity by <= 4
COPY_SUPPORT_MARGIN_MAX = 2.0  # the span of cosine similarities
COPY_POOL_MAX = 1024  # TensorRT's TopK takes K <= 3840; a larger pool than this only adds distant, dissimilar keys

# Named groups of inference settings (`Engine(style=...)`): "realistic" (the shipped default) copies each hole token's
# strongest source, grown into coherent copies by 8 propagation sweeps (a source already copied diagonally before loses
# 0.05 of similarity; continuing a neighbour's copy earns credit only while that copy scores within 0.2 of its token's
# best own candidate), cross-fades the copies' blurred base and their detail (contrast kept) over 8 px, moves the fill's
# colour to its border's (a membrane of the mismatch), replaces 0.7 of its low band (Gaussian, 12 LR px) by that of the
# nearest known pixels' colours (the colour anchor), where the known surroundings are flat and their colours agree moves
# that low band towards a membrane through the known pixels (`flat_fill`: a fog, a clear sky, an out-of-focus
# background), and transfers each source's whole high-frequency band at full strength, cross-faded between neighbouring
# copies over 4 LR px (real texture; past a source's edge where a hole lies, its own texture mirrored), and copies
# nothing from the tokens along a side that holds a frame line (`frame_lines`); "fast" is realistic without the two-band
# copies and the border match (the colour anchor kept), with a 2 LR px texture fade (more visible seams), and with the
# continued flat fill (`flat_fill_form="continued"`: the known slopes carried into the hole where they predict the
# known ring beside it);
# "seamless" is realistic's former name; "smooth" mixes the sources by their attention weights and fades the
# transferred texture away from the hole's border (the fill that scores best on PSNR/SSIM, which reward blur).
# docs/quality.md measures them.
_FAST = dict(lr_texture="copy", copy_feather=2, copy_base_feather=0, copy_border_sigma=0.0, copy_sweeps=8,
             copy_continuity=0.5, copy_support_margin=0.2, copy_repeat_radius=1, copy_repeat_penalty=0.05, hr_topk=1,
             hf_transfer=True, hf_decay=0.0, hf_fine_decay=None, hf_mid_gain=1.0, hr_feather=1, hr_fade_reflect=True,
             seam_sigma=2.0, seam_gain=8.0, colour_anchor=0.7, colour_anchor_sigma=12.0, colour_anchor_flat=True,
             flat_fill_form="continued", key_frame_lines=True)
_REALISTIC = {**_FAST, "copy_feather": 4, "copy_base_feather": 4, "copy_base_sigma": 3.0, "copy_border_sigma": 2.0,
              "hr_feather": 2, "flat_fill_form": "membrane"}
STYLES = {
    "realistic": _REALISTIC,
    "seamless": _REALISTIC,
    "fast": _FAST,
    "smooth": dict(lr_texture="mix", key_hole_clearance=0, hr_fade_reflect=False, copy_base_feather=0,
                   copy_border_sigma=0.0, hr_feather=0, hr_topk=1, hf_transfer=True, hf_decay=0.5, hf_fine_decay=0.0,
                   hf_mid_gain=0.5, seam_sigma=2.0, seam_gain=8.0, colour_anchor=0.0, colour_anchor_flat=False,
                   flat_fill_form="membrane"),
}


def parse_settings(pairs: list[str]) -> dict:
    """KEY=VALUE strings (the command line's --set) -> inference settings, each value read as its
    `ModelConfig` field's type (bool: true/false; a field that may be None: none); ValueError naming the pair."""
    fields = {f.name: f for f in dataclasses.fields(ModelConfig)}
    settings = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in INFERENCE_FIELDS:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(INFERENCE_FIELDS)}")
        default = fields[key].default
        text = text.strip()
        try:
            if isinstance(default, bool):
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                value = text.lower() in ("true", "1")
            elif text.lower() == "none" and "None" in str(fields[key].type):
                value = None
            elif isinstance(default, (int, float, str)):
                value = type(default)(text)
            else:                                     # a field whose default is None: a float when given
                value = float(text)
        except ValueError:
            kind = "true or false" if isinstance(default, bool) else type(default if default is not None else 0.0).__name__
            raise ValueError(f"--set {pair!r}: {key} takes {kind}, got {text!r}") from None
        settings[key] = value
    return settings


def style_settings(style: str | None, overrides: dict) -> dict:
    """The inference settings of `style` (a STYLES name; None: none) with `overrides` on top."""
    if style is None:
        return dict(overrides)
    if style not in STYLES:
        raise ValueError(f"style: expected one of {sorted(STYLES)}, got {style!r}")
    return {**STYLES[style], **overrides}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and inference settings.

    Sizes are in pixels of the low-resolution (LR) working image unless stated.
    """

    # --- geometry -------------------------------------------------------
    lr_long_side: int = 512          # L: the LR working size (long side), HR scale s = ceil(max(H, W) / L)
    patch_size: int = 8              # P: NeuralPatchMatch patch (token) size at LR
    # --- coarse CNN -----------------------------------------------------
    widths: tuple[int, ...] = (32, 48, 96, 128, 192)  # channels of the 5 encoder stages (strides 2..32)
    blocks_per_stage: tuple[int, ...] = (1, 1, 2, 2, 2)
    train_branches: int = 2          # MobileOne over-parameterisation: k x k conv branches per layer
    feature_stage: int = 2           # stage index (stride 2 ** (index + 1)) of the decoder level whose features condition the tokens (stride 8)
    coarse_prefill: str = "zeros"    # what the coarse CNN sees in the hole: "zeros", or "membrane" (`coarse.membrane_prefill`: a membrane through the known pixels); the weights are trained for one
    # --- NeuralPatchMatch -----------------------------------------------
    attn_dim: int = 256              # d_k of the Q/K projection
    init_logit_scale: float = 20.0   # 1/tau at init; logits are cosine similarities times this scale
    max_logit_scale: float = 100.0
    coherence_hidden: int = 16       # channels of the coherence convs
    coherence_dilations: tuple[int, ...] = (1, 2, 4)  # hidden 3x3 convs; receptive field 3 + 2 * sum > 2 * patch_size spans a seam
    lr_texture: str = "mix"          # "mix": hole tokens = attention-weighted mix of sources + coherence layer; "copy": the strongest source's pixels
    copy_feather: int = 2            # LR px: with "copy", neighbouring copies cross-fade over 2 * copy_feather px (0..patch_size // 2)
    copy_base_feather: int = 0       # LR px: with "copy", the copies' blurred base cross-fades over 2 * this (their detail over copy_feather, contrast kept); 0 = one band
    copy_base_sigma: float = 2.0     # LR px: the Gaussian that splits base from detail (with copy_base_feather > 0)
    copy_border_sigma: float = 0.0   # LR px: with "copy", the fill is shifted by a membrane of its colour mismatch (Gaussian means of this sigma) at the hole's border (`border_match`); 0 = off
    copy_pool: int = 8               # with "copy": keys per hole token ranked by similarity, re-ranked by colour (`copy_candidates`)
    copy_colour_weight: float = 0.0  # with "copy": similarity credit lost per unit of L1 RGB distance (in [0, 3]) from the expected colour
    copy_detail_weight: float = 0.0  # with "copy": similarity lost per squared difference between a key's detail level and the level the hole token's surroundings predict (`detail_keys`); 0 = off
    copy_locality: float = 0.0       # with "copy": similarity lost per grid long side of distance between a hole token and a key, choosing the candidates; 0 = off
    copy_sweeps: int = 1             # with "copy": checkerboard updates of the source choice (`choose_sources`); more grow coherent copies
    copy_continuity: float = 0.02    # with "copy": similarity credited to continuing a neighbour's copy without a seam
    copy_border_continuity: float = 0.0  # with "copy": similarity credited to continuing a known neighbour's look-alike (`border_lookalikes`); 0 = off
    copy_support_margin: float = 0.0  # with "copy": a hole neighbour's copy earns continuity only while within this of its best own candidate's score (`propagate_sources`); 0 = off
    copy_match_sweeps: int = 0       # with "copy": Jacobi sweeps of the copies' colour offsets (`copy_colour_offsets`); 0 = off
    copy_consensus: float = 0.0      # with "copy": share of the way each copy's colour moves towards its candidates' attention-weighted mean colour (`consensus_offsets`); 0 = off
    colour_anchor: float = 0.0       # share of the LR fill's low band replaced by the nearest known colours' (`model.anchor.colour_anchor`); 0 = off
    colour_anchor_sigma: float = 12.0  # LR px: the Gaussian of both low bands
    colour_anchor_flat: bool = False  # where the hole's known surroundings are flat (a sky, a fog, an out-of-focus background) and the colours around agree, the fill's low band below 2 LR px becomes a membrane through the known pixels (`model.flat.flat_fill`)
    flat_fill_form: str = "membrane"  # FLAT_FILL_FORMS: the flat fill's smooth fill and its weight. "membrane": the known colours' membrane where the surroundings are flat and the colours around agree; "continued": the known pixels' slopes continued into the hole (`model.flat.continued_fill`), weighted by how well that predicts the known ring beside the hole when the ring is left out; "continued_flat": that weight times the flatness
    copy_repeat_radius: int = 0      # with "copy": tokens; a source already copied this close counts against an option; 0 = off
    copy_repeat_penalty: float = 0.0  # with "copy": similarity lost per such copy of the same source
    key_edge_tokens: int = 0         # tokens at each edge of the image that are never sources (an image's outermost rows and columns often hold a frame line or vignetting that a copy carries into the hole); kept where that would leave none
    key_frame_lines: bool = False    # the edge tokens along a side whose outermost line is a frame line (a thin line unlike the image just inside: a scan edge, a border, a dark last row) are never sources (`frame_lines`); kept where that would leave none
    key_hole_clearance: int = 0      # tokens: a source is at least this many 4-neighbour steps from every hole token (a source next to a hole has no texture beyond that edge to cross-fade with, so its copy meets the next one at a step); dropped for an image it would leave without sources
    key_hole_clearance_max_loss: float = 1.0  # share: the clearance is dropped for an image whose sources it would cut by more (strokes spread over the image leave few sources clear of them); 1 = only where none is left
    copy_detail_min_spread: float = 0.0  # share: copy_detail_weight applies only to an image whose hole lies one token from at least this share of its known tokens (`hole_spread`: strokes spread over the image, not one compact object); 0 = every image
    # --- attention upscaling (HR) ----------------------------------------
    hr_topk: int = 4                 # keys mixed per masked token at HR; 0 = dense softmax rows, 1 = argmax gather
    hf_transfer: bool = True         # False: HR result is the bilinear-upsampled LR result
    hf_decay: float = 0.0            # tokens: transferred HF fades as exp(-(d - 1) / hf_decay) with a hole token's distance d from known tokens; 0 = no fading
    hf_fine_decay: float | None = None  # tokens: the HF's finest band (what a 3x3 binomial blur removes) fades with this decay instead; None = one band, hf_decay
    hf_mid_gain: float = 1.0         # two bands: scales the HF below the finest band (0 = the finest band only); ignored with one band
    hr_feather: int = 0              # LR px: with "copy" and one band, neighbouring copies' HR texture cross-fades (contrast kept) over 2 * hr_feather * s HR px; 0 = pasted whole
    hr_fade_reflect: bool = False    # hr_feather's fades read a source's own texture, mirrored about its edge, where past that edge lies a hole (both copies reach every pixel of the fade)
    seam_sigma: float = 0.0          # HR px: hole pixels near known ones blend towards a Gaussian average of those (`blend_seams`); 0 = off
    seam_gain: float = 8.0           # the blend's weight is min(1, seam_gain * the known pixels' share of the Gaussian)
    # --- input handling -------------------------------------------------
    float_mask_threshold: float = 0.5  # a float mask fills where value >= this (bool/int masks: nonzero)

    def __post_init__(self) -> None:
        if len(self.widths) != 5 or len(self.blocks_per_stage) != 5:
            raise ValueError("widths and blocks_per_stage must have 5 entries (one per stage)")
        if self.patch_size not in (4, 8, 16):
            raise ValueError(f"patch_size must be 4, 8 or 16, got {self.patch_size}")
        if self.lr_long_side % self.grid_multiple:
            raise ValueError(f"lr_long_side must be a multiple of {self.grid_multiple}, got {self.lr_long_side}")
        if not self.coherence_dilations or min(self.coherence_dilations) < 1:
            raise ValueError(f"coherence_dilations must be a non-empty tuple of ints >= 1, got {self.coherence_dilations}")
        if self.coarse_prefill not in COARSE_PREFILLS:
            raise ValueError(f"coarse_prefill must be one of {COARSE_PREFILLS}, got {self.coarse_prefill!r}")
        if self.lr_texture not in LR_TEXTURES:
            raise ValueError(f"lr_texture must be one of {LR_TEXTURES}, got {self.lr_texture!r}")
        if not (isinstance(self.copy_feather, int) and 0 <= self.copy_feather <= self.patch_size // 2):
            raise ValueError(f"copy_feather must be an int in 0..{self.patch_size // 2} (LR px), got {self.copy_feather!r}")
        if not (isinstance(self.copy_base_feather, int) and 0 <= self.copy_base_feather <= self.patch_size // 2):
            raise ValueError(f"copy_base_feather must be an int in 0..{self.patch_size // 2} (LR px; 0 = one band), "
                             f"got {self.copy_base_feather!r}")
        if not self.copy_base_sigma > 0.0:
            raise ValueError(f"copy_base_sigma must be > 0 (LR px), got {self.copy_base_sigma}")
        if not self.copy_border_sigma >= 0.0:
            raise ValueError(f"copy_border_sigma must be >= 0 (LR px; 0 = off), got {self.copy_border_sigma}")
        if not (isinstance(self.copy_pool, int) and 1 <= self.copy_pool <= COPY_POOL_MAX):
            raise ValueError(f"copy_pool must be an int in 1..{COPY_POOL_MAX} (keys per hole token), got {self.copy_pool!r}")
        if not (isinstance(self.copy_sweeps, int) and 1 <= self.copy_sweeps <= COPY_SWEEPS_MAX):
            raise ValueError(f"copy_sweeps must be an int in 1..{COPY_SWEEPS_MAX} (checkerboard updates), got {self.copy_sweeps!r}")
        if not (isinstance(self.copy_match_sweeps, int) and 0 <= self.copy_match_sweeps <= COPY_MATCH_SWEEPS_MAX):
            raise ValueError(f"copy_match_sweeps must be an int in 0..{COPY_MATCH_SWEEPS_MAX} (0 = off), got {self.copy_match_sweeps!r}")
        if not 0.0 <= self.copy_consensus <= 1.0:
            raise ValueError(f"copy_consensus must be in [0, 1] (0 = off, 1 = the candidates' mean colour), got {self.copy_consensus}")
        if not 0.0 <= self.colour_anchor <= 1.0:
            raise ValueError(f"colour_anchor must be in [0, 1] (0 = off, 1 = the nearest known colours' low band), got {self.colour_anchor}")
        if not 0.0 < self.colour_anchor_sigma <= COLOUR_ANCHOR_SIGMA_MAX:
            raise ValueError(f"colour_anchor_sigma must be in (0, {COLOUR_ANCHOR_SIGMA_MAX}] (LR px), got {self.colour_anchor_sigma}")
        if not 0.0 <= self.copy_continuity <= 1.0:
            raise ValueError(f"copy_continuity must be in [0, 1] (cosine similarity credit), got {self.copy_continuity}")
        if not 0.0 <= self.copy_border_continuity <= COPY_BORDER_CONTINUITY_MAX:
            raise ValueError(f"copy_border_continuity must be in [0, {COPY_BORDER_CONTINUITY_MAX}] (cosine similarity "
                             f"credit; 0 = off), got {self.copy_border_continuity}")
        if not 0.0 <= self.copy_support_margin <= COPY_SUPPORT_MARGIN_MAX:
            raise ValueError(f"copy_support_margin must be in [0, {COPY_SUPPORT_MARGIN_MAX}] (cosine similarity; "
                             f"0 = off), got {self.copy_support_margin}")
        if not self.copy_locality >= 0.0:
            raise ValueError(f"copy_locality must be >= 0 (similarity per grid long side; 0 = off), got {self.copy_locality}")
        if not 0.0 <= self.copy_detail_weight <= COPY_DETAIL_WEIGHT_MAX:
            raise ValueError(f"copy_detail_weight must be in [0, {COPY_DETAIL_WEIGHT_MAX}] (0 = off), got {self.copy_detail_weight}")
        if not self.copy_colour_weight >= 0.0:
            raise ValueError(f"copy_colour_weight must be >= 0 (0 = rank by similarity only), got {self.copy_colour_weight}")
        if not (isinstance(self.copy_repeat_radius, int) and self.copy_repeat_radius >= 0):
            raise ValueError(f"copy_repeat_radius must be an int >= 0 (tokens; 0 = off), "
                             f"got {self.copy_repeat_radius!r}")
        if not self.copy_repeat_penalty >= 0.0:
            raise ValueError(f"copy_repeat_penalty must be >= 0 (similarity per repeat; 0 = off), "
                             f"got {self.copy_repeat_penalty}")
        if not (isinstance(self.key_edge_tokens, int) and self.key_edge_tokens >= 0):
            raise ValueError(f"key_edge_tokens must be an int >= 0 (tokens at each image edge; 0 = off), got {self.key_edge_tokens!r}")
        if not isinstance(self.colour_anchor_flat, bool):
            raise ValueError(f"colour_anchor_flat must be a bool, got {self.colour_anchor_flat!r}")
        if self.flat_fill_form not in FLAT_FILL_FORMS:
            raise ValueError(f"flat_fill_form must be one of {FLAT_FILL_FORMS}, got {self.flat_fill_form!r}")
        if not isinstance(self.key_frame_lines, bool):
            raise ValueError(f"key_frame_lines must be a bool, got {self.key_frame_lines!r}")
        if not isinstance(self.hr_fade_reflect, bool):
            raise ValueError(f"hr_fade_reflect must be a bool, got {self.hr_fade_reflect!r}")
        if not (isinstance(self.key_hole_clearance, int) and 0 <= self.key_hole_clearance <= KEY_HOLE_CLEARANCE_MAX):
            raise ValueError(f"key_hole_clearance must be an int in 0..{KEY_HOLE_CLEARANCE_MAX} (tokens between a source and "
                             f"the nearest hole token; 0 = off), got {self.key_hole_clearance!r}")
        if not 0.0 <= self.key_hole_clearance_max_loss <= 1.0:
            raise ValueError(f"key_hole_clearance_max_loss must be in [0, 1] (a share of the sources; 1 = drop the clearance "
                             f"only where it leaves none), got {self.key_hole_clearance_max_loss}")
        if not 0.0 <= self.copy_detail_min_spread <= 1.0:
            raise ValueError(f"copy_detail_min_spread must be in [0, 1] (a share of the known tokens; 0 = every image), "
                             f"got {self.copy_detail_min_spread}")
        if self.hr_topk < 0:
            raise ValueError(f"hr_topk must be >= 0, got {self.hr_topk}")
        if not self.hf_decay >= 0.0:
            raise ValueError(f"hf_decay must be >= 0 (tokens; 0 = no fading), got {self.hf_decay}")
        if self.hf_fine_decay is not None and not self.hf_fine_decay >= 0.0:
            raise ValueError(f"hf_fine_decay must be None (one band) or >= 0 (tokens; 0 = no fading), got {self.hf_fine_decay}")
        if not 0.0 <= self.hf_mid_gain <= 1.0:
            raise ValueError(f"hf_mid_gain must be in [0, 1], got {self.hf_mid_gain}")
        if not (isinstance(self.hr_feather, int) and 0 <= self.hr_feather <= self.patch_size // 2):
            raise ValueError(f"hr_feather must be an int in 0..{self.patch_size // 2} (LR px), got {self.hr_feather!r}")
        if self.hr_feather > 0 and (self.lr_texture != "copy" or self.hf_fine_decay is not None):
            raise ValueError(f"hr_feather > 0 (the default) needs lr_texture='copy' and hf_fine_decay=None (one band), "
                             f"got lr_texture={self.lr_texture!r}, hf_fine_decay={self.hf_fine_decay!r}; pass "
                             f"hr_feather=0 with these, or style='smooth'")
        if not self.seam_sigma >= 0.0:
            raise ValueError(f"seam_sigma must be >= 0 (HR pixels; 0 = off), got {self.seam_sigma}")
        if not self.seam_gain > 0.0:
            raise ValueError(f"seam_gain must be > 0, got {self.seam_gain}")
        if not 0.0 < self.float_mask_threshold <= 1.0:
            raise ValueError(f"float_mask_threshold must be in (0, 1], got {self.float_mask_threshold}")
        if 2 ** (self.feature_stage + 1) != self.patch_size:
            raise ValueError("feature_stage must be the stage at stride patch_size (2 ** (feature_stage + 1))")

    @property
    def grid_multiple(self) -> int:
        """LR sides must be multiples of this (the CNN's total stride of 32)."""
        return 32

    @property
    def token_dim(self) -> int:
        """Values per token: 3 * P * P."""
        return 3 * self.patch_size ** 2

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        raw = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields in weights metadata: {sorted(unknown)}")
        for key in ("widths", "blocks_per_stage", "coherence_dilations"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)
