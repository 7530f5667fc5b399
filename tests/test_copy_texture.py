"""lr_texture="copy" (the "realistic" style): source choice, every backend against the torch reference,
the exported graph in onnxruntime, and the style presets."""
import numpy as np
import pytest
import torch

from rethined_engine import Engine, ModelConfig
from rethined_engine.backends.native_backend import native_module
from rethined_engine.config import STYLES
from rethined_engine.deploy.host import prepare_lr
from rethined_engine.deploy.onnx_export import LRNetwork, example_inputs
from rethined_engine.geometry import plan
from rethined_engine.model.patchmatch import (LOOKALIKE_RADIUS, NEIGHBOURS, allowed_keys, border_lookalikes,
                                              choose_sources, hole_spread, propagate_sources, start_sources,
                                              token_mask)
from rethined_engine.train.masks import random_mask
from rethined_engine.weights import load_model, save_inference_weights

from conftest import make_model

COPY = dict(lr_texture="copy", copy_feather=2, hr_topk=1, hf_decay=0.0, hf_fine_decay=None, hf_mid_gain=1.0)


@pytest.fixture(scope="module", params=[{}, dict(copy_pool=64, copy_colour_weight=1.0, key_hole_clearance=1,
                                             copy_detail_weight=0.06),
                                        dict(copy_sweeps=4, copy_continuity=0.3, copy_match_sweeps=8, copy_consensus=0.5,
                                             copy_repeat_radius=2, copy_repeat_penalty=0.05, key_edge_tokens=1,
                                             colour_anchor=0.7, copy_border_continuity=1.0, copy_support_margin=0.15)],
                ids=["similarity", "colour", "propagated"])
def copy_weights(tmp_path_factory, request):
    """Weights with copies chosen by similarity alone, ranked by colour and detail level (sources clear of the
    hole), and grown by propagation sweeps (from the border's look-alikes too; only supported copies credited) with
    their colours matched and moved half-way to their candidates' consensus, nearby repeats of a source penalised,
    the image's outermost tokens no sources and the fill's low band anchored to the nearest known colours."""
    path = tmp_path_factory.mktemp("weights") / "copy.safetensors"
    save_inference_weights(make_model(cfg=ModelConfig(**COPY, **request.param)), path)
    return path


def sample(h, w):
    from PIL import Image
    from rethined_engine.cli import SAMPLE_IMAGE

    return np.array(Image.open(SAMPLE_IMAGE).convert("RGB").resize((w, h)))


@pytest.mark.parametrize("sweeps", [1, 2, 5])
def test_choose_sources_never_repeats_a_hole_neighbours_source_when_it_has_a_choice(sweeps):
    g = torch.Generator().manual_seed(0)
    grid_h, grid_w, dim = 6, 7, 16
    n = grid_h * grid_w
    q = torch.nn.functional.normalize(torch.randn(1, n, dim, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(1, n, dim, generator=g), dim=-1)
    hole = torch.zeros(grid_h, grid_w, dtype=torch.bool)
    hole[1:5, 1:6] = True
    query_masked = hole.flatten()[None]
    key_ok = ~query_masked
    # every hole token's strongest key is the same token: plain argmax copying stamps it everywhere
    keys = key_ok[0].nonzero()[:, 0]
    candidates = torch.stack([keys[torch.randperm(len(keys), generator=g)[:8]] for _ in range(n)])[None]
    candidates[..., 0] = keys[0]
    no_colour = torch.zeros(1, n, 3)
    source = choose_sources(q, k, candidates, query_masked, key_ok, grid_w, no_colour, no_colour, 0.0, sweeps)
    source = source[0].reshape(grid_h, grid_w)
    assert bool(key_ok[0][source[hole]].all())                       # holes copy known tokens only
    for dy, dx in NEIGHBOURS:
        for y, x in hole.nonzero().tolist():
            if hole[y + dy, x + dx]:
                assert source[y, x] != source[y + dy, x + dx]
    assert torch.equal(source[~hole], torch.arange(n).reshape(grid_h, grid_w)[~hole])


@pytest.mark.parametrize("holes", [0, 1])
def test_choose_sources_with_no_row_to_update(holes):
    """No hole token, or one (a colour of the checkerboard without any), in both forms."""
    g = torch.Generator().manual_seed(1)
    n, grid_w = 20, 5
    q = torch.nn.functional.normalize(torch.randn(1, n, 8, generator=g), dim=-1)
    query_masked = torch.zeros(1, n, dtype=torch.bool)
    query_masked[0, 7:7 + holes] = True
    colours = torch.rand(1, n, 3, generator=g)
    from rethined_engine.model.patchmatch import copy_candidates
    candidates = copy_candidates(q, q, colours, colours, query_masked, ~query_masked, 8, 0.5, compact=True)
    for compact in (False, True):
        source = choose_sources(q, q, candidates, query_masked, ~query_masked, grid_w, colours, colours, 0.5, 4, 0.5,
                                compact)
        assert bool((source[0, 7:7 + holes] != 7).all()) and source[0, 0] == 0


def lookalike_loop(k: torch.Tensor, has_key: torch.Tensor, key_ok: torch.Tensor, grid_w: int) -> torch.Tensor:
    """`border_lookalikes` of one image as a plain loop: (N,) int64, -1 where a token keeps its start."""
    n = has_key.shape[0]
    grid_h = n // grid_w
    hole = has_key.reshape(grid_h, grid_w)
    want = torch.full((n,), -1, dtype=torch.int64)
    for i in range(n):
        y, x = divmod(i, grid_w)
        beside = any(0 <= y + dy < grid_h and 0 <= x + dx < grid_w and hole[y + dy, x + dx] for dy, dx in NEIGHBOURS)
        if not (key_ok[i] and beside):
            continue
        far = [j for j in range(n) if key_ok[j] and max(abs(j // grid_w - y), abs(j % grid_w - x)) > LOOKALIKE_RADIUS]
        if far:
            want[i] = max(far, key=lambda j: float(k[i] @ k[j]))
    return want


@pytest.mark.parametrize("compact", [False, True])
def test_border_lookalikes_match_a_plain_loop(compact):
    """Each allowed key beside a hole token that copies takes its most similar allowed key outside the radius;
    every other token keeps its start, as does a border token with no key far enough."""
    g = torch.Generator().manual_seed(3)
    grid_h, grid_w, dim = 7, 9, 12
    n = grid_h * grid_w
    k = torch.nn.functional.normalize(torch.randn(2, n, dim, generator=g), dim=-1)
    has_key = torch.rand(2, n, generator=g) < 0.3
    key_ok = ~has_key & (torch.rand(2, n, generator=g) < 0.8)
    key_ok[1] = False                                       # the second image: no key has a look-alike
    key_ok[1, 0] = True
    has_key[1, 1] = True
    start = torch.randint(0, n, (2, n), generator=g)
    got = border_lookalikes(k, has_key, key_ok, start, grid_w, compact)
    for b in range(2):
        want = lookalike_loop(k[b], has_key[b], key_ok[b], grid_w)
        assert torch.equal(got[b], torch.where(want >= 0, want, start[b]))
    assert (got[0] != start[0]).sum() >= 10


def test_border_continuity_continues_a_known_neighbours_lookalike():
    """A hole row under a known row whose look-alikes lie elsewhere: with the border credit each hole token copies
    the token below its known neighbour's look-alike (the border continued), without it its strongest candidate;
    either way known tokens keep themselves."""
    g = torch.Generator().manual_seed(4)
    grid_h, grid_w, dim = 8, 8, 32
    n = grid_h * grid_w
    k = torch.nn.functional.normalize(torch.randn(1, n, dim, generator=g), dim=-1)
    # row 1 (known) looks like row 5 (known), so row 6 continues what lies under row 1: row 2, the hole
    k[0, 5 * grid_w:6 * grid_w] = torch.nn.functional.normalize(k[0, grid_w:2 * grid_w] +
                                                                0.05 * torch.randn(grid_w, dim, generator=g), dim=-1)
    hole = torch.zeros(grid_h, grid_w, dtype=torch.bool)
    hole[2] = True
    query_masked, key_ok = hole.flatten()[None], ~hole.flatten()[None]
    q = torch.nn.functional.normalize(torch.randn(1, n, dim, generator=g), dim=-1)
    no_colour = torch.zeros(1, n, 3)
    from rethined_engine.model.patchmatch import copy_candidates
    candidates = copy_candidates(q, k, no_colour, no_colour, query_masked, key_ok, 8, 0.0, compact=True)
    own = torch.arange(n)
    for compact in (False, True):
        plain = choose_sources(q, k, candidates, query_masked, key_ok, grid_w, no_colour, no_colour, 0.0, 8, 0.5,
                               compact)
        border = choose_sources(q, k, candidates, query_masked, key_ok, grid_w, no_colour, no_colour, 0.0, 8, 0.5,
                                compact, border_continuity=2.0)
        row = slice(2 * grid_w, 3 * grid_w)
        assert torch.equal(border[0, row], own[6 * grid_w:7 * grid_w])   # under row 5, the look-alike of row 1
        assert not torch.equal(plain[0, row], own[6 * grid_w:7 * grid_w])
        for source in (plain, border):
            assert torch.equal(source[0, ~hole.flatten()], own[~hole.flatten()])


@pytest.mark.parametrize("compact", [False, True])
def test_support_margin_dissolves_a_cluster_that_only_its_continuations_hold(compact):
    """A 3 x 3 hole copies a 3 x 3 known block that none of its queries resembles (cosine ~0), one continued copy;
    each hole token's own candidate scores 0.35. With the continuation credit (0.5 per neighbour) the block holds
    itself in place; with a support margin of 0.1 no copy of it is supported, and every token leaves it."""
    g = torch.Generator().manual_seed(5)
    grid_h = grid_w = 8
    n, dim = grid_h * grid_w, 64
    hole = torch.zeros(grid_h, grid_w, dtype=torch.bool)
    hole[3:6, 3:6] = True
    cells = hole.flatten().nonzero()[:, 0]
    block = torch.tensor([(r - 3) * grid_w + (c - 3) for r, c in zip(cells // grid_w, cells % grid_w)])
    own_keys = torch.arange(6 * grid_w, 6 * grid_w + len(cells))        # in rows 6-7
    q = torch.nn.functional.normalize(torch.randn(1, n, dim, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(1, n, dim, generator=g), dim=-1)
    noise = torch.randn(len(cells), dim, generator=g)
    noise = torch.nn.functional.normalize(noise - (noise * q[0, cells]).sum(-1, keepdim=True) * q[0, cells], dim=-1)
    k[0, own_keys] = 0.35 * q[0, cells] + (1 - 0.35 ** 2) ** 0.5 * noise   # cosine 0.35 to its token's query
    query_masked, key_ok = hole.flatten()[None], ~hole.flatten()[None]
    candidates = torch.arange(n)[None, :, None].clone()
    candidates[0, cells, 0] = own_keys
    colours = torch.zeros(1, n, 3)
    source, own_score, valid, has_key = start_sources(q, k, candidates, query_masked, key_ok, colours, colours, 0.0,
                                                      compact)
    source[0, cells] = block                                             # the cluster
    block_scores = (q[0, cells] * k[0, block]).sum(-1)
    assert block_scores.abs().max() < 0.25 < own_score[0, cells, 0].min()

    def chosen(margin):
        return propagate_sources(q, k, candidates, own_score, valid, has_key, key_ok, source, grid_w, colours,
                                 colours, 0.0, 8, 0.5, compact=compact, support_margin=margin)[0, cells]

    assert torch.equal(chosen(0.0), block)
    assert not (chosen(0.1) == block).any()
    assert torch.equal(chosen(2.0), block)                              # every copy supported


def continued_share(source: torch.Tensor, hole: torch.Tensor, grid_w: int) -> float:
    """Share of horizontally or vertically adjacent hole-token pairs whose copies continue each other (the
    source of one is the other's source shifted by their offset: no seam between them)."""
    grid = source.reshape(hole.shape)
    row, col = grid // grid_w, grid % grid_w
    pairs = continued = 0
    for dy, dx in ((0, 1), (1, 0)):
        both = hole[:hole.shape[0] - dy, :hole.shape[1] - dx] & hole[dy:, dx:]
        same_shift = ((row[dy:, dx:] - row[:row.shape[0] - dy, :row.shape[1] - dx] == dy) &
                      (col[dy:, dx:] - col[:col.shape[0] - dy, :col.shape[1] - dx] == dx))
        pairs, continued = pairs + int(both.sum()), continued + int((both & same_shift).sum())
    return continued / pairs


def test_more_sweeps_and_continuity_grow_coherent_copies():
    """On a real image's tokens, propagation sweeps with a continuity credit continue neighbours' copies more
    often than the single checkerboard update."""
    image = torch.from_numpy(sample(96, 128)).permute(2, 0, 1)[None].float() / 255
    tokens = torch.nn.functional.pixel_unshuffle(image, 8).flatten(2).transpose(1, 2) - 0.5
    unit = torch.nn.functional.normalize(tokens, dim=-1)
    grid_h, grid_w = 12, 16
    hole = torch.zeros(grid_h, grid_w, dtype=torch.bool)
    hole[3:9, 4:12] = True
    query_masked = hole.flatten()[None]
    key_ok = ~query_masked
    colours = torch.zeros(1, grid_h * grid_w, 3)
    from rethined_engine.model.patchmatch import copy_candidates
    candidates = copy_candidates(unit, unit, colours, colours, query_masked, key_ok, 8, 0.0, compact=False)
    shares = [continued_share(choose_sources(unit, unit, candidates, query_masked, key_ok, grid_w, colours, colours,
                                             0.0, sweeps, continuity)[0], hole, grid_w)
              for sweeps, continuity in ((1, 0.02), (4, 0.2))]
    assert shares[1] > shares[0] + 0.15


@pytest.mark.parametrize("compact", [False, True])
def test_repeat_penalty_stops_one_source_being_stamped_over_a_hole(compact):
    """Every hole token's strongest key is one source token (a salient region): without the penalty the
    checkerboard rule still lets every other token copy it (23 of 48 here); with it, nearby repeats give way."""
    g = torch.Generator().manual_seed(2)
    grid_h, grid_w, dim = 10, 12, 16
    n = grid_h * grid_w
    hole = torch.zeros(grid_h, grid_w, dtype=torch.bool)
    hole[2:8, 2:10] = True
    k = torch.nn.functional.normalize(torch.randn(1, n, dim, generator=g), dim=-1)
    hub = int((~hole).flatten().nonzero()[0])
    q = torch.nn.functional.normalize(k[:, hub:hub + 1] * 3 + 0.3 * torch.randn(1, n, dim, generator=g), dim=-1)
    query_masked = hole.flatten()[None]
    key_ok = ~query_masked
    colours = torch.zeros(1, n, 3)
    from rethined_engine.model.patchmatch import copy_candidates
    candidates = copy_candidates(q, k, colours, colours, query_masked, key_ok, 8, 0.0, compact=compact)
    assert bool((candidates[0][hole.flatten()][:, 0] == hub).all())
    counts = [int((choose_sources(q, k, candidates, query_masked, key_ok, grid_w, colours, colours, 0.0, 8, 0.5,
                                  compact, radius, penalty)[0] == hub).sum())
              for radius, penalty in ((0, 0.0), (2, 0.5))]
    assert counts[0] >= 16 and counts[1] <= counts[0] // 2, counts


@pytest.mark.parametrize("lr_size", [(64, 96), (96, 160)])
def test_compact_and_dense_copy_agree(copy_weights, lr_size):
    model = load_model(copy_weights)
    inputs = example_inputs(*lr_size, 8, seed=lr_size[1])
    with torch.inference_mode():
        dense = LRNetwork(model, 1)(*inputs)
        compact = LRNetwork(model, 1, compact=True)(*inputs)
    torch.testing.assert_close(compact[0], dense[0], rtol=0, atol=1e-5)
    assert torch.equal(compact[3], dense[3]) and torch.equal(compact[1], dense[1])


def test_exported_copy_graph_matches_torch(tmp_path, copy_weights):
    ort = pytest.importorskip("onnxruntime")
    from rethined_engine.deploy.onnx_export import export_onnx
    from rethined_engine.deploy.tensorrt_ops import check_graph

    path, geom = export_onnx(tmp_path / "copy.onnx", 300, 500, dynamic=True, weights=copy_weights)
    assert check_graph(path) == []
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = example_inputs(96, 160, 8, seed=3)
    got = session.run(None, {name: t.numpy() for name, t in zip(("image", "mask", "key_inside"), inputs)})
    with torch.inference_mode():
        want = LRNetwork(load_model(copy_weights), 1)(*inputs)
    np.testing.assert_allclose(got[0], want[0].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(got[3], want[3].numpy())


def test_native_backend_matches_torch_backend_with_copies(copy_weights, rng):
    """Equal to 1 everywhere but, at most, one token's copy: the random fixture's keys lie within ~1e-6 of one
    another in cosine, so the native steps' float rounding may reorder two of a token's candidates (a near-tie that
    the exact tests of each step exclude by construction)."""
    image, mask = sample(300, 420), random_mask(300, 420, rng)
    native_engine = Engine(copy_weights, backend="native", device="cpu")
    native = native_engine.inpaint(image, mask)
    reference = Engine(copy_weights, backend="torch", device="cpu").inpaint(image, mask)
    diff = np.abs(native.astype(np.int16) - reference.astype(np.int16))
    geom = plan(300, 420, native_engine.config)
    ys, xs = np.nonzero(diff.max(axis=-1) > 1)
    footprint = 2 * geom.patch * geom.scale          # a token and the cross-fades on either side of it
    assert len(ys) == 0 or (np.ptp(ys) < footprint and np.ptp(xs) < footprint)
    assert (diff > 0).mean() <= 5e-3


def test_triton_backend_matches_torch_backend_with_copies(copy_weights, rng):
    pytest.importorskip("triton")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    image, mask = sample(90, 130), random_mask(90, 130, rng)
    settings = dict(lr_long_side=64, dtype="float32", device=device)
    got = Engine(copy_weights, backend="triton", **settings).inpaint(image, mask)
    ref = Engine(copy_weights, backend="torch", **settings).inpaint(image, mask)
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    assert (diff > 1).mean() <= 1e-3 and (diff > 0).mean() <= 2e-3


def copied_sources(model, image, mask):
    """The LR network's copies on the image: (geom, the sources of the hole tokens that copy (M,) int64, the LR
    mask (1, 1, h, w))."""
    geom = plan(image.shape[0], image.shape[1], model.cfg)
    inputs = [torch.from_numpy(x) for x in prepare_lr(image, mask, geom)]
    with torch.inference_mode():
        _, weight, _, index = LRNetwork(model, 1)(*inputs)
    return geom, index[0, weight[0, :, 0] != 0, 0].long(), inputs[1]


@pytest.mark.parametrize("edge", [0, 1, 2])
def test_copies_never_come_from_the_edge_tokens_left_out(copy_weights, rng, edge):
    """key_edge_tokens = e: no hole token copies one of the e outermost tokens inside the image along any side
    (a frame line or vignetting there would be carried into the hole), through the propagation sweeps too;
    with e = 0 some copies do come from there, so the check can fail."""
    image, mask = sample(300, 420), random_mask(300, 420, rng)
    geom, sources, _ = copied_sources(load_model(copy_weights, key_edge_tokens=edge), image, mask)
    edge_tokens = torch.from_numpy((geom.inside_grid() & ~plan(300, 420, ModelConfig(key_edge_tokens=max(edge, 1)))
                                    .key_inside_grid()).reshape(-1))
    assert sources.numel() > 100
    assert edge_tokens[sources].any() == (edge == 0)


@pytest.mark.parametrize("clearance", [1, 2])
def test_allowed_keys_keep_clear_of_the_hole(rng, clearance):
    """allowed_keys against a plain loop: known, inside tokens whose 4-neighbour distance to every hole token is at
    least the clearance; an image where none is left keeps its known, inside tokens."""
    grid_h, grid_w = 7, 9
    query_masked = torch.from_numpy(rng.random((3, grid_h * grid_w)) < 0.15)
    query_masked[2] = True
    query_masked[2, 0] = False                         # one known token, next to holes: the clearance would leave none
    key_inside = torch.from_numpy(rng.random((3, grid_h * grid_w)) < 0.9)
    key_inside[2, 0] = True
    got = allowed_keys(query_masked, key_inside, grid_w, clearance)
    for b in range(3):
        holes = [(i // grid_w, i % grid_w) for i in range(grid_h * grid_w) if query_masked[b, i]]
        clear = [not query_masked[b, i] and bool(key_inside[b, i])
                 and all(abs(i // grid_w - y) + abs(i % grid_w - x) > clearance for y, x in holes)
                 for i in range(grid_h * grid_w)]
        if not any(clear):
            clear = [not query_masked[b, i] and bool(key_inside[b, i]) for i in range(grid_h * grid_w)]
        assert got[b].tolist() == clear
    assert got[2].sum() == 1 and bool(got[2, 0])
    assert torch.equal(allowed_keys(query_masked, key_inside, grid_w, 0), ~query_masked & key_inside)


def plain_spread(hole: list[bool], keys: list[bool], grid_w: int) -> float:
    """hole_spread by a loop: the share of keys 4-adjacent to a hole token."""
    def near(i):
        y, x = divmod(i, grid_w)
        return any(hole[j] for j in range(len(hole)) if abs(j // grid_w - y) + abs(j % grid_w - x) == 1)
    n_keys = sum(keys)
    return sum(1 for i in range(len(keys)) if keys[i] and near(i)) / max(n_keys, 1)


def test_hole_spread_is_the_share_of_keys_beside_the_hole(rng):
    grid_h, grid_w = 8, 10
    query_masked = torch.from_numpy(rng.random((4, grid_h * grid_w)) < 0.2)
    query_masked[1] = False                          # no hole: nothing beside it
    query_masked[3] = True                           # no key at all
    key_ok = ~query_masked & torch.from_numpy(rng.random((4, grid_h * grid_w)) < 0.9)
    got = hole_spread(query_masked, key_ok, grid_w)
    assert got.shape == (4, 1) and got.dtype == torch.float32
    want = [plain_spread(query_masked[b].tolist(), key_ok[b].tolist(), grid_w) for b in range(4)]
    assert got[:, 0].tolist() == pytest.approx(want)
    assert got[1, 0] == 0.0 and got[3, 0] == 0.0 and 0.0 < got[0, 0] < 1.0


@pytest.mark.parametrize("max_loss", [0.0, 0.3, 1.0])
def test_clearance_is_dropped_where_it_would_cut_too_many_sources(rng, max_loss):
    """An image whose clear keys are fewer than (1 - max_loss) of its known, inside ones keeps those; the others
    keep only the clear ones. Image 0 has one small hole (few keys lost), image 1 holes all over (most lost)."""
    grid_h, grid_w = 9, 12
    query_masked = torch.zeros(2, grid_h * grid_w, dtype=torch.bool)
    query_masked[0, 4 * grid_w + 5] = True
    query_masked[1] = torch.from_numpy(rng.random(grid_h * grid_w) < 0.3)
    key_inside = torch.ones_like(query_masked)
    got = allowed_keys(query_masked, key_inside, grid_w, 1, max_loss)
    for b in range(2):
        known = ~query_masked[b]
        clear = allowed_keys(query_masked[b:b + 1], key_inside[b:b + 1], grid_w, 1)[0]
        lost = 1.0 - clear.sum().item() / known.sum().item()
        assert torch.equal(got[b], known if lost > max_loss else clear), (b, lost)
    lost = [1.0 - allowed_keys(query_masked[b:b + 1], key_inside[b:b + 1], grid_w, 1)[0].sum().item()
            / (~query_masked[b]).sum().item() for b in range(2)]
    assert lost[0] < 0.1 < 0.5 < lost[1]               # the two images sit either side of 0.3


@pytest.mark.parametrize("clearance", [0, 1])
def test_copies_keep_clear_of_the_hole(rng, clearance):
    """key_hole_clearance = 1: no hole token copies a token beside a hole token (through the propagation sweeps
    too); with 0 some do, so the check can fail. The native backend follows the torch reference."""
    image, mask = sample(300, 420), random_mask(300, 420, rng)
    geom, sources, lr_mask = copied_sources(load_model(None, key_hole_clearance=clearance), image, mask)
    query_masked = token_mask(lr_mask, geom.patch)[0]
    hole = query_masked.reshape(1, 1, geom.grid_h, geom.grid_w).float()
    pool = torch.nn.functional.max_pool2d
    next_to_hole = ((pool(hole, (3, 1), 1, (1, 0)) + pool(hole, (1, 3), 1, (0, 1))) > 0).reshape(-1) & ~query_masked
    assert sources.numel() > 100
    assert next_to_hole[sources].any() == (clearance == 0)
    if clearance and native_module() is not None:
        out = Engine(backend="native", key_hole_clearance=clearance).inpaint(image, mask)
        ref = Engine(backend="torch", key_hole_clearance=clearance).inpaint(image, mask)
        assert (np.abs(out.astype(np.int16) - ref.astype(np.int16)) > 1).mean() <= 1e-3


def test_copies_carry_more_texture_than_mixing(copy_weights, rng):
    """The copied fill keeps the sources' contrast: its hole variance exceeds the attention-weighted mix's."""
    image, mask = sample(256, 384), random_mask(256, 384, rng)
    copied = Engine(copy_weights, backend="torch", device="cpu").inpaint(image, mask)
    mixed = Engine(copy_weights, backend="torch", device="cpu", lr_texture="mix").inpaint(image, mask)
    lap = lambda x: np.abs(np.diff(x.astype(np.float32), axis=1))[mask[:, 1:]].mean()   # noqa: E731
    assert lap(copied) > 1.2 * lap(mixed)


def test_styles_set_their_settings_and_overrides_win():
    engine = Engine(backend="torch", device="cpu", style="smooth", seam_sigma=0.0)
    for name, value in STYLES["smooth"].items():
        assert getattr(engine.config, name) == (0.0 if name == "seam_sigma" else value)
    assert Engine(backend="torch", device="cpu", style="realistic").config.lr_texture == "copy"
    with pytest.raises(ValueError, match="style"):
        Engine(backend="torch", device="cpu", style="glossy")
    with pytest.raises(ValueError, match="copy_feather"):
        ModelConfig(copy_feather=5)
    with pytest.raises(ValueError, match="lr_texture"):
        ModelConfig(lr_texture="blend")


def uniform_copy(step: float, sweeps: int) -> torch.Tensor:
    """`copy_colour_offsets` of a hole (rows 2-5, columns 2-5 of an 8 x 16 grid of 0.5 grey) copied as one
    continued block from rows 2-5, columns 11-14 of a region 0.5 + step bright (rows 1-6, columns 10-15)."""
    from rethined_engine.model.patchmatch import copy_colour_offsets

    grid_h, grid_w = 8, 16
    colours = torch.full((1, grid_h, grid_w, 3), 0.5)
    colours[0, 1:7, 10:16] = 0.5 + step
    hole = torch.zeros(grid_h, grid_w, dtype=torch.bool)
    hole[2:6, 2:6] = True
    own = torch.arange(grid_h * grid_w).reshape(grid_h, grid_w)
    source = own.clone()
    source[2:6, 2:6] = own[2:6, 11:15]
    copies = (hole & (source != own)).flatten()[None]
    return copy_colour_offsets(colours.reshape(1, -1, 3), source.flatten()[None], copies, ~hole.flatten()[None],
                               grid_w, sweeps).reshape(grid_h, grid_w, 3)


def test_copy_colour_offsets_even_out_a_small_step_and_keep_a_large_one():
    small = uniform_copy(0.02, 200)
    assert torch.allclose(small[2:6, 2:6], torch.full_like(small[2:6, 2:6], -0.02), atol=1e-4)
    assert bool((small[:2] == 0).all()) and bool((small[:, 6:] == 0).all())        # tokens that do not copy
    large = uniform_copy(0.2, 200)                                                 # an edge, not a seam
    assert bool((large == 0).all())
    assert bool((uniform_copy(0.02, 0) == 0).all())


def test_the_default_is_the_realistic_style_and_fast_drops_its_seam_settings():
    """The shipped file's own settings are the realistic style's (seamless: its former name); fast is realistic
    without the two-band copies (and with their narrower detail fade) and the border match, with a narrower
    full-resolution texture fade and the continued flat fill, and keeps known pixels exact like every style."""
    default = Engine(backend="torch", device="cpu").config
    assert default == Engine(backend="torch", device="cpu", style="realistic").config
    assert default == Engine(backend="torch", device="cpu", style="seamless").config
    assert default.copy_base_feather > 0 and default.copy_border_sigma > 0
    fast = Engine(backend="torch", device="cpu", style="fast")
    assert fast.config.copy_base_feather == 0 and fast.config.copy_border_sigma == 0.0
    assert fast.config.replace(copy_feather=default.copy_feather, copy_base_feather=default.copy_base_feather,
                               copy_base_sigma=default.copy_base_sigma, copy_border_sigma=default.copy_border_sigma,
                               hr_feather=default.hr_feather, flat_fill_form=default.flat_fill_form) == default
    assert fast.config.hr_feather < default.hr_feather
    assert (default.flat_fill_form, fast.config.flat_fill_form) == ("membrane", "continued")
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    mask = np.zeros((200, 300), bool)
    mask[60:140, 100:220] = True
    out = fast.inpaint(image, mask)
    np.testing.assert_array_equal(out[~mask], image[~mask])


@pytest.mark.parametrize("strength", [0.25, 1.0])
def test_consensus_offsets_match_a_plain_loop(rng, strength):
    from rethined_engine.model.patchmatch import consensus_offsets

    grid_h, grid_w, patch, dim, width = 3, 4, 4, 5, 3
    n = grid_h * grid_w
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    q = torch.nn.functional.normalize(torch.randn(1, n, dim, generator=gen), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(1, n, dim, generator=gen), dim=-1)
    candidates = torch.randint(0, n, (1, n, width), generator=gen)
    key_ok = torch.rand(1, n, generator=gen) > 0.3
    copies = torch.rand(1, n, generator=gen) > 0.4
    colours = torch.rand(1, n, 3, generator=gen)
    copied = torch.rand(1, 3, grid_h * patch, grid_w * patch, generator=gen)
    mask = (torch.rand(1, 1, grid_h * patch, grid_w * patch, generator=gen) > 0.3).float()
    scale = torch.tensor(7.0)
    got = consensus_offsets(q, k, candidates, key_ok, copies, colours, copied, mask, patch, scale, strength)
    want = torch.zeros(1, n, 3)
    for i in range(n):
        allowed = [int(c) for c in candidates[0, i] if key_ok[0, c]]
        if not copies[0, i] or not allowed:
            continue
        logits = torch.stack([scale * (q[0, i] @ k[0, c]) for c in allowed])
        consensus = (torch.softmax(logits, 0)[:, None] * colours[0, allowed]).sum(0)
        y, x = divmod(i, grid_w)
        cell = (slice(None), slice(y * patch, (y + 1) * patch), slice(x * patch, (x + 1) * patch))
        hole = mask[0][cell]
        share, hole_mean_sum = hole.mean(), (copied[0][cell] * hole).mean(dim=(1, 2))
        want[0, i] = strength * (share * consensus - hole_mean_sum)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_consensus_moves_a_stray_copy_towards_its_candidates_colour():
    """A hole token that copies a red source while its other candidates, as similar, are green: with strength s
    its hole pixels move s of the way from red towards the candidates' mean colour; tokens that copy nothing
    stay."""
    from rethined_engine.model.patchmatch import add_token_offsets, consensus_offsets

    patch, grid_w = 4, 3
    red, green = torch.tensor([0.8, 0.1, 0.1]), torch.tensor([0.1, 0.7, 0.1])
    colours = torch.stack([red, green, green])[None]                   # token 0 red, 1 and 2 green
    q = k = torch.nn.functional.normalize(torch.ones(1, 3, 4), dim=-1)   # equal similarities
    candidates = torch.tensor([[[0, 1, 2]] * 3])
    key_ok, copies = torch.tensor([[True, True, False]]), torch.tensor([[False, False, True]])
    mask = torch.zeros(1, 1, patch, 3 * patch)
    mask[..., 2 * patch:] = 1.0                                        # token 2 is the hole; it copied red
    copied = torch.cat([red[:, None, None].expand(3, patch, patch), green[:, None, None].expand(3, patch, patch),
                        red[:, None, None].expand(3, patch, patch)], dim=2)[None]
    offsets = consensus_offsets(q, k, candidates, key_ok, copies, colours, copied, mask, patch, torch.tensor(10.0), 0.5)
    consensus = (red + green) / 2                                      # token 2 is not an allowed key
    torch.testing.assert_close(offsets[0, 2], 0.5 * (consensus - red))
    assert offsets[0, :2].abs().max() == 0
    moved = add_token_offsets(copied, mask, offsets, grid_w, patch)
    assert torch.equal(moved[..., :2 * patch], copied[..., :2 * patch])  # known pixels kept
    torch.testing.assert_close(moved[0, :, 2, 3 * patch - 2], red + 0.5 * (consensus - red))   # token centre
