"""The ComfyUI node classes as ComfyUI drives them: INPUT_TYPES / RETURN_TYPES / FUNCTION read off the class,
the class made without arguments, the function called by name with IMAGE (B, H, W, 3) float32 and MASK tensors
cut from the shipped photo. References: `Engine().inpaint` (image node, bit for bit) and `VideoInpainter` on the
frames quantised to uint8 (video node: hole pixels = its output / 255 exactly in float32, known pixels the
input's)."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rethined_engine import Engine
from rethined_engine.cli import SAMPLE_IMAGE, SAMPLE_MASK
from rethined_engine.integrations import comfyui
from rethined_engine.integrations.comfyui import nodes
from rethined_engine.video import VideoInpainter

FRAMES, HEIGHT, WIDTH = 5, 96, 128
PAN_STEP = (2, 3)  # px per frame, down and right


@pytest.fixture(scope="module")
def shipped_engine():
    engine = Engine()
    nodes.default_engine.cache_clear()
    yield engine
    nodes.default_engine.cache_clear()


def photo() -> np.ndarray:
    return np.asarray(Image.open(SAMPLE_IMAGE).convert("RGB"))


def pan_tensor() -> torch.Tensor:
    """FRAMES crops of the photo moving PAN_STEP per frame, as a ComfyUI IMAGE."""
    image = photo()
    crops = [image[300 + i * PAN_STEP[0]:300 + i * PAN_STEP[0] + HEIGHT,
                   500 + i * PAN_STEP[1]:500 + i * PAN_STEP[1] + WIDTH] for i in range(FRAMES)]
    return torch.from_numpy(np.stack(crops).astype(np.float32) / 255)


def box_mask(batch: int) -> torch.Tensor:
    mask = torch.zeros(batch, HEIGHT, WIDTH)
    mask[:, 30:60, 40:80] = 1.0
    return mask


def run_node(name: str, **inputs):
    """Instantiate and call a node the way ComfyUI does: the class from NODE_CLASS_MAPPINGS, no constructor
    arguments, the method named by FUNCTION."""
    cls = comfyui.NODE_CLASS_MAPPINGS[name]
    return getattr(cls(), cls.FUNCTION)(**inputs)


def test_node_declarations():
    assert set(comfyui.NODE_CLASS_MAPPINGS) == set(comfyui.NODE_DISPLAY_NAME_MAPPINGS)
    image_node = comfyui.NODE_CLASS_MAPPINGS["RethinedInpaint"]
    assert image_node.INPUT_TYPES() == {"required": {"image": ("IMAGE",), "mask": ("MASK",)},
                                        "optional": {"exclude": ("MASK",)}}
    video_node = comfyui.NODE_CLASS_MAPPINGS["RethinedVideoInpaint"]
    required = video_node.INPUT_TYPES()["required"]
    assert required["frames"] == ("IMAGE",) and required["mask"] == ("MASK",)
    assert video_node.INPUT_TYPES()["optional"] == {"exclude": ("MASK",)}
    assert set(required["temporal"][0]) == {"on", "off"} and required["temporal"][1]["default"] == "on"
    for cls in (image_node, video_node):
        assert cls.RETURN_TYPES == ("IMAGE",) and callable(getattr(cls, cls.FUNCTION))


def test_image_node_equals_engine_inpaint_on_the_shipped_photo(shipped_engine):
    image = torch.from_numpy(photo()[None].astype(np.float32) / 255)
    mask = torch.from_numpy(np.asarray(Image.open(SAMPLE_MASK).convert("L")) / np.float32(255))[None]
    (out,) = run_node("RethinedInpaint", image=image, mask=mask)
    assert out.dtype == torch.float32 and out.shape == image.shape
    expected = shipped_engine.inpaint(image[0].numpy(), mask[0].numpy())
    np.testing.assert_array_equal(out[0].numpy(), expected)
    hole = mask[0].numpy() >= 0.5
    np.testing.assert_array_equal(out[0].numpy()[~hole], image[0].numpy()[~hole])
    assert np.abs(out[0].numpy()[hole] - image[0].numpy()[hole]).mean() > 0  # the hole was filled


def test_image_node_on_a_batch_with_one_shared_mask(shipped_engine):
    images = pan_tensor()[:2]
    (out,) = run_node("RethinedInpaint", image=images, mask=box_mask(1))
    for i in range(2):
        np.testing.assert_array_equal(out[i].numpy(), shipped_engine.inpaint(images[i].numpy(), box_mask(1)[0].numpy()))


def test_image_node_passes_exclude_on(shipped_engine):
    """The optional exclude MASK reaches `Engine.inpaint`, image by image (one MASK may serve the batch)."""
    images = torch.from_numpy(np.stack([photo()[200:392, 300:556], photo()[250:442, 350:606]]).astype(np.float32) / 255)
    mask = torch.zeros(1, 192, 256)
    mask[:, 60:130, 90:170] = 1.0
    exclude = torch.zeros(1, 192, 256)
    exclude[:, :, 170:] = 1.0
    (out,) = run_node("RethinedInpaint", image=images, mask=mask, exclude=exclude)
    for i in range(2):
        want = shipped_engine.inpaint(images[i].numpy(), mask[0].numpy(), exclude[0].numpy())
        np.testing.assert_array_equal(out[i].numpy(), want)
    assert not np.array_equal(out[0].numpy(), shipped_engine.inpaint(images[0].numpy(), mask[0].numpy()))
    with pytest.raises(ValueError, match="exclude: expected"):
        run_node("RethinedInpaint", image=images, mask=mask, exclude=torch.zeros(3, 192, 256))


@pytest.mark.parametrize("temporal", ["on", "off"])
def test_video_node_equals_the_video_inpainter_on_quantised_frames(shipped_engine, temporal):
    frames = pan_tensor()
    mask = box_mask(FRAMES)
    (out,) = run_node("RethinedVideoInpaint", frames=frames, mask=mask, temporal=temporal)
    assert out.dtype == torch.float32 and out.shape == frames.shape
    inpainter = VideoInpainter(shipped_engine, temporal)
    hole = mask[0].numpy() >= 0.5
    for i in range(FRAMES):
        quantised = np.rint(frames[i].numpy() * 255).astype(np.uint8)
        expected = inpainter.process(quantised, hole)
        np.testing.assert_array_equal(out[i].numpy()[hole], expected[hole].astype(np.float32) / 255)
        np.testing.assert_array_equal(out[i].numpy()[~hole], frames[i].numpy()[~hole])


def test_video_node_passes_exclude_on(shipped_engine):
    frames = pan_tensor()
    mask, exclude = box_mask(1), torch.zeros(1, *frames.shape[1:3])
    exclude[:, :, frames.shape[2] // 2:] = 1.0
    (out,) = run_node("RethinedVideoInpaint", frames=frames, mask=mask, temporal="on", exclude=exclude)
    inpainter = VideoInpainter(shipped_engine, "on")
    hole, barred = mask[0].numpy() >= 0.5, exclude[0].numpy() >= 0.5
    for i in range(FRAMES):
        expected = inpainter.process(np.rint(frames[i].numpy() * 255).astype(np.uint8), hole, barred)
        np.testing.assert_array_equal(out[i].numpy()[hole], expected[hole].astype(np.float32) / 255)
    with pytest.raises(ValueError, match="exclude: expected"):
        run_node("RethinedVideoInpaint", frames=frames, mask=mask, exclude=torch.zeros(2, 8, 8))


def test_masks_of_the_wrong_shape_are_refused_by_name():
    with pytest.raises(ValueError, match="mask: expected"):
        nodes.RethinedInpaint(engine=object()).inpaint(pan_tensor()[:2], box_mask(3))
    with pytest.raises(ValueError, match="image: expected IMAGE"):
        nodes.RethinedVideoInpaint(engine=object()).inpaint(pan_tensor()[0], box_mask(1))


def test_the_documented_link_loads_as_a_custom_node_folder(tmp_path):
    """docs/integrations.md's `ln -s` line run as written (`python` = this interpreter), then the folder loaded
    the way ComfyUI loads custom_nodes/<name>: its __init__.py as a top-level package named after the folder."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "integrations.md").read_text()
    command = text.split("\n## ComfyUI", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    (tmp_path / "ComfyUI" / "custom_nodes").mkdir(parents=True)
    subprocess.run(["bash", "-c", command.replace("python -c", f"{sys.executable} -c")], cwd=tmp_path, check=True)
    folder = tmp_path / "ComfyUI" / "custom_nodes" / "rethined"
    spec = importlib.util.spec_from_file_location("rethined", folder / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["rethined"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        for name in [name for name in sys.modules if name == "rethined" or name.startswith("rethined.")]:
            del sys.modules[name]
    assert set(module.NODE_CLASS_MAPPINGS) == {"RethinedInpaint", "RethinedVideoInpaint"}
    assert module.NODE_CLASS_MAPPINGS["RethinedInpaint"].INPUT_TYPES() == nodes.RethinedInpaint.INPUT_TYPES()
