"""Triton variational refinement (`kernels.flow_refinement`) vs its torch reference (`video.flow_refinement.refine`,
itself checked against OpenCV's VariationalRefinement in tests/test_video_flow_refinement.py). CPU: the Triton
interpreter; CUDA: also TorchDIS with the kernel against TorchDIS with the reference."""
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.kernels import flow_refinement as flow_refinement_kernels  # noqa: E402
from rethined_engine.kernels.flow_refinement import refine, refine_reference  # noqa: E402
from rethined_engine.video import dis_torch  # noqa: E402
from rethined_engine.video.flow_refinement import RefinementParams  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ATOL = 1e-4               # px: float32 sums in another order over 5 x (1 + 10) passes


def case(b, h, w, seed):
    """A blurred-noise target, the source that target moved by (2, 1) px plus noise, and a start flow near
    (-2, -1) px."""
    g = torch.Generator().manual_seed(seed)
    target = torch.nn.functional.avg_pool2d(torch.rand(b, 1, h + 4, w + 4, generator=g) * 255, 5, 1)
    source = torch.roll(target, shifts=(1, 2), dims=(-2, -1)) + torch.rand(b, 1, h, w, generator=g)
    flow = torch.randn(b, 2, h, w, generator=g) * 0.4 + torch.tensor([-2.0, -1.0])[None, :, None, None]
    return [t.to(DEVICE) for t in (source, target, flow)]


@pytest.fixture(params=["fused", "launches"])
def path(request, monkeypatch):
    """Both ways the kernels run: every iteration in one launch per image (images up to FUSED_MAX_PIXELS, here in
    chunks of 64 pixels), and three launches per fixed-point iteration and SOR half-sweep."""
    if request.param == "fused":
        monkeypatch.setattr(flow_refinement_kernels, "FUSED_BLOCK", 64)
    else:
        monkeypatch.setattr(flow_refinement_kernels, "FUSED_MAX_PIXELS", 0)
    return request.param


@pytest.mark.parametrize("shape", [(1, 17, 23), (2, 24, 32)])
@pytest.mark.parametrize("iterations", [1, 5])
def test_matches_reference(shape, iterations, path):
    source, target, flow = case(*shape, seed=sum(shape) + iterations)
    params = RefinementParams(fixed_point_iterations=iterations)
    got = refine(source, target, flow, params)
    want = refine_reference(source, target, flow, params)
    torch.testing.assert_close(got, want, rtol=0, atol=ATOL)
    assert (got - flow).abs().mean() > 0.05            # the refinement moved the flow


@pytest.mark.parametrize("shape", [(1, 17, 23), (2, 5, 6)])
def test_image_terms_match_reference(shape, monkeypatch):
    """The image derivatives alone (`terms_kernel`): reads past every edge, a flow that points out of the image, an
    image a few pixels across; blocks of 64 pixels, so rows split across programs."""
    monkeypatch.setattr(flow_refinement_kernels, "BLOCK", 64)
    source, target, flow = case(*shape, seed=5)
    flow = flow * 3
    h, w = shape[1:]
    terms = torch.empty(shape[0], 8, h, w, device=DEVICE)
    flow_refinement_kernels.terms_kernel[(-(-h * w // 64), shape[0])](source.contiguous(), target.contiguous(),
                                                                      flow.contiguous(), terms, h, w, BLOCK=64)
    want = flow_refinement_kernels.flow_refinement.image_terms(source, target, flow)
    torch.testing.assert_close(terms, want, rtol=0, atol=2e-3)      # levels: second differences of 0..255 reads


def test_bad_flow_shape_is_named():
    source = torch.zeros(1, 1, 8, 8, device=DEVICE)
    with pytest.raises(ValueError, match="flow"):
        refine(source, source, torch.zeros(1, 2, 8, 9, device=DEVICE))


def test_matches_reference_over_many_programs(monkeypatch):
    """Blocks of 64 pixels: program offsets, rows split across programs and a partial last block, two images."""
    monkeypatch.setattr(flow_refinement_kernels, "BLOCK", 64)
    monkeypatch.setattr(flow_refinement_kernels, "FUSED_MAX_PIXELS", 0)
    source, target, flow = case(2, 21, 30, seed=11)
    params = RefinementParams(fixed_point_iterations=2)
    torch.testing.assert_close(refine(source, target, flow, params), refine_reference(source, target, flow, params),
                               rtol=0, atol=ATOL)


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.parametrize("shape", [(2, 68, 120), (1, 270, 480)])   # the video working size's scales
def test_matches_reference_at_the_working_size_on_cuda(shape, path):
    source, target, flow = case(*shape, seed=13)
    torch.testing.assert_close(refine(source, target, flow), refine_reference(source, target, flow), rtol=0,
                               atol=ATOL)


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="TorchDIS picks the kernel on CUDA only")
def test_torch_dis_with_the_kernel_matches_the_torch_refinement(monkeypatch, flows_close):
    assert dis_torch.refine_function(torch.device("cuda")) is refine
    source, target, _ = case(2, 120, 200, seed=3)
    params = dis_torch.TORCH_DIS_PRESETS["fast"]
    fused = dis_torch.dis_flow(source[:, 0], target[:, 0], params)
    monkeypatch.setattr(dis_torch, "refine_function", lambda device: refine_reference)
    plain = dis_torch.dis_flow(source[:, 0], target[:, 0], params)
    flows_close(fused, plain)
