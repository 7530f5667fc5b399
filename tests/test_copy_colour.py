"""Copy sources ranked by colour: `harmonic_fill` and `poisson_fill` against an exact sparse solve,
`copy_candidates` compact against dense and the colour term's effect."""
import numpy as np
import pytest
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
import torch
import torch.nn.functional as F

from rethined_engine.model.patchmatch import (COPY_CANDIDATES, copy_candidates, harmonic_fill, poisson_fill,
                                             token_distance)

NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def exact_membrane(values: np.ndarray, fixed: np.ndarray, laplacian: np.ndarray | None = None) -> np.ndarray:
    """values (C, h, w), fixed (h, w) bool -> Laplace's equation on the free cells (each the mean of its
    in-grid neighbours), the fixed cells as boundary: one sparse solve; with laplacian (C, h, w), Poisson's (each
    free cell's in-grid neighbours' sum less their count times it equals its laplacian)."""
    h, w = fixed.shape
    index = np.arange(h * w).reshape(h, w)
    rows, cols, data = [], [], []
    rhs = np.zeros((h * w, values.shape[0]))
    for y in range(h):
        for x in range(w):
            i = index[y, x]
            if fixed[y, x]:
                rows.append(i), cols.append(i), data.append(1.0)
                rhs[i] = values[:, y, x]
                continue
            inside = [(y + dy, x + dx) for dy, dx in NEIGHBOURS if 0 <= y + dy < h and 0 <= x + dx < w]
            rows.append(i), cols.append(i), data.append(float(len(inside)))
            if laplacian is not None:
                rhs[i] = -laplacian[:, y, x]
            for yy, xx in inside:
                rows.append(i), cols.append(index[yy, xx]), data.append(-1.0)
    matrix = sparse.csr_matrix((data, (rows, cols)), shape=(h * w, h * w))
    return sparse_linalg.spsolve(matrix, rhs).T.reshape(values.shape)


@pytest.mark.parametrize("size", [(64, 64), (36, 64), (16, 24)])
def test_harmonic_fill_approximates_the_exact_membrane(size, rng):
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    values = np.stack([np.sin(xx / 7.0) + 0.1 * rng.standard_normal((h, w)), np.cos(yy / 5.0), xx / w])
    fixed = np.ones((h, w), bool)
    fixed[h // 5:h * 4 // 5, w // 6:w * 3 // 4] = False
    fixed[2:4, 2:9] = False
    want = exact_membrane(values, fixed)
    got = harmonic_fill(torch.tensor(values, dtype=torch.float32)[None],
                        torch.tensor(fixed, dtype=torch.float32)[None, None], 2)[0].numpy()
    np.testing.assert_array_equal(got[:, fixed], values[:, fixed].astype(np.float32))   # fixed cells untouched
    error = np.abs(got - want)[:, ~fixed]
    # a multigrid of 24 + 8 + 8 sweeps, not a converged solve: within 0.06 on average, 0.25 at worst, of a
    # membrane whose free cells average 0.4 in magnitude
    assert error.mean() < 0.06 and error.max() < 0.25


@pytest.mark.parametrize("size", [(64, 64), (36, 64)])
def test_poisson_fill_approximates_the_exact_solution(size, rng):
    """The free cells' grid Laplacian given (a smooth field with some noise): the same multigrid as the membrane's,
    within the same bounds of the exact solve, fixed cells untouched."""
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    values = np.stack([np.sin(xx / 7.0), yy / h])
    laplacian = np.stack([0.002 * np.cos(yy / 6.0) + 0.0005 * rng.standard_normal((h, w)), np.full((h, w), -0.001)])
    fixed = np.ones((h, w), bool)
    fixed[h // 5:h * 4 // 5, w // 6:w * 3 // 4] = False
    want = exact_membrane(values, fixed, laplacian)
    got = poisson_fill(torch.tensor(values, dtype=torch.float32)[None],
                       torch.tensor(fixed, dtype=torch.float32)[None, None],
                       torch.tensor(laplacian, dtype=torch.float32)[None], 2)[0].numpy()
    np.testing.assert_array_equal(got[:, fixed], values[:, fixed].astype(np.float32))
    error = np.abs(got - want)[:, ~fixed]
    assert error.mean() < 0.06 and error.max() < 0.25
    assert np.abs(exact_membrane(values, fixed) - want)[:, ~fixed].mean() > 0.02   # the rhs matters here


def test_poisson_fill_with_zero_rhs_is_harmonic_fill():
    fixed = torch.ones(1, 1, 32, 48)
    fixed[..., 4:28, 8:40] = 0
    values = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(poisson_fill(values, fixed, torch.zeros_like(values), 2),
                               harmonic_fill(values, fixed, 2), rtol=0, atol=1e-6)


def test_harmonic_fill_is_exact_for_a_constant_boundary():
    fixed = torch.ones(1, 1, 32, 48)
    fixed[..., 4:28, 8:40] = 0
    values = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(1, 3, 32, 48) * fixed   # holes hold 0
    got = harmonic_fill(values, fixed, 2)
    torch.testing.assert_close(got, torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand_as(got), rtol=0, atol=1e-6)


def random_tokens(batch, n, dim, seed):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(batch, n, dim, generator=g), dim=-1)
    k = F.normalize(torch.randn(batch, n, dim, generator=g), dim=-1)
    colours, expected = torch.rand(batch, n, 3, generator=g), torch.rand(batch, n, 3, generator=g)
    hole = torch.rand(batch, n, generator=g) < 0.4
    key_ok = ~hole & (torch.rand(batch, n, generator=g) < 0.9)
    return q, k, colours, expected, hole, key_ok


@pytest.mark.parametrize("pool, weight, locality", [(8, 0.0, 0.0), (16, 1.0, 0.0), (64, 0.5, 0.0), (8, 0.0, 1.0),
                                                     (16, 0.5, 0.3)])
def test_copy_candidates_compact_equals_dense(pool, weight, locality):
    q, k, colours, expected, hole, key_ok = random_tokens(2, 120, 16, seed=pool)
    dense = copy_candidates(q, k, colours, expected, hole, key_ok, pool, weight, False, 12, locality)
    compact = copy_candidates(q, k, colours, expected, hole, key_ok, pool, weight, True, 12, locality)
    assert dense.shape == compact.shape == (2, 120, COPY_CANDIDATES)
    assert torch.equal(dense[hole], compact[hole])
    assert bool(torch.gather(key_ok, 1, compact.flatten(1)).reshape(compact.shape)[hole].all())


def test_copy_candidates_without_colour_are_the_most_similar_keys():
    q, k, colours, expected, hole, key_ok = random_tokens(1, 90, 16, seed=1)
    got = copy_candidates(q, k, colours, expected, hole, key_ok, 32, 0.0, compact=True)[0]
    similarity = (q[0] @ k[0].T).masked_fill(~key_ok[0][None], -2.0)
    want = similarity.topk(COPY_CANDIDATES, dim=-1).indices
    assert torch.equal(got[hole[0]], want[hole[0]])


def test_colour_weight_prefers_the_key_of_the_expected_colour():
    n, dim = 12, 8
    q = F.normalize(torch.ones(1, n, dim), dim=-1)
    k = q.clone()
    k[0, 1] = F.normalize(torch.ones(dim) + 0.3 * torch.arange(dim), dim=0)   # a little less similar
    hole = torch.zeros(1, n, dtype=torch.bool)
    hole[0, 0] = True
    key_ok = ~hole
    colours = torch.full((1, n, 3), 0.9)        # every key bright ...
    colours[0, 1] = 0.1                         # ... but key 1, dark
    expected = torch.full((1, n, 3), 0.1)       # the hole's surroundings are dark
    k[0, 2:] = F.normalize(torch.ones(dim) + 0.05 * torch.arange(dim), dim=0)
    similar_first = copy_candidates(q, k, colours, expected, hole, key_ok, n, 0.0, compact=True)[0, 0, 0]
    colour_first = copy_candidates(q, k, colours, expected, hole, key_ok, n, 1.0, compact=True)[0, 0, 0]
    assert similar_first != 1 and colour_first == 1


def test_token_distance_in_grid_long_sides():
    """(0, 0) to (3, 4) on a 10 x 20 grid: 5 tokens, a quarter of the long side; symmetric, 0 on itself."""
    rows, keys = torch.tensor([0, 3 * 20 + 4]), torch.tensor([3 * 20 + 4, 0])
    torch.testing.assert_close(token_distance(rows, keys, 10, 20), torch.tensor([[0.25, 0.0], [0.0, 0.25]]))


def test_locality_prefers_the_nearer_of_two_look_alikes():
    """Two keys as similar as each other to a hole token, one beside it and one across the grid: with locality the
    near one ranks first whichever is a hair more similar."""
    grid_w, n, dim = 16, 16 * 4, 8
    q = F.normalize(torch.ones(1, n, dim), dim=-1)
    k = F.normalize(torch.randn(1, n, dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    hole = torch.zeros(1, n, dtype=torch.bool)
    hole[0, 1] = True
    far, near = n - 1, 2
    k[0, far] = q[0, 0]                                          # the most similar key: far away
    k[0, near] = F.normalize(q[0, 0] + 0.01 * torch.arange(dim), dim=0)   # nearly as similar: beside the hole
    colours = torch.zeros(1, n, 3)
    for locality, first in ((0.0, far), (0.1, near)):
        got = copy_candidates(q, k, colours, colours, hole, ~hole, 8, 0.0, True, grid_w, locality)[0, 1, 0]
        assert got == first, (locality, int(got))
