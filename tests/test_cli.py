"""The `rethined` command line."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rethined_engine import Engine
from rethined_engine.cli import main


def test_help():
    result = subprocess.run([sys.executable, "-m", "rethined_engine.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "inpaint" in result.stdout


def test_inpaint_png_and_jpeg(tmp_path, weights_path, capsys):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    mask = np.zeros((60, 90), np.uint8)
    mask[20:40, 30:60] = 255
    Image.fromarray(img).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    for name in ("out.png", "out.jpg"):
        assert main(["inpaint", str(tmp_path / "in.png"), str(tmp_path / "mask.png"), "-o", str(tmp_path / name),
                     "--device", "cpu", "--weights", str(weights_path)]) == 0
        out = np.asarray(Image.open(tmp_path / name))
        assert out.shape == img.shape
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png"))[mask == 0], img[mask == 0])
    assert "inpainted in" in capsys.readouterr().out


def test_demo_uses_shipped_sample(tmp_path):
    assert main(["demo", "-o", str(tmp_path / "demo.png"), "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "demo.png").size == Image.open(
        __import__("rethined_engine.cli", fromlist=["SAMPLE_IMAGE"]).SAMPLE_IMAGE).size


@pytest.mark.parametrize("case,match", [
    ("missing", "not found"),
    ("not_image", "cannot read"),
    ("size", "does not match"),
    ("suffix", r"-o: expected a suffix in .*\.webp.*got o\.gif"),
])
def test_errors(tmp_path, case, match):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "in.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "mask.png")
    Image.fromarray(np.zeros((21, 20), np.uint8)).save(tmp_path / "mask21.png")
    (tmp_path / "bad.png").write_text("hello")
    args = {"missing": ["nope.png", "mask.png", "o.png"], "not_image": ["bad.png", "mask.png", "o.png"],
            "size": ["in.png", "mask21.png", "o.png"], "suffix": ["in.png", "mask.png", "o.gif"]}[case]
    with pytest.raises(SystemExit, match=match):
        main(["inpaint", str(tmp_path / args[0]), str(tmp_path / args[1]), "-o", str(tmp_path / args[2]),
              "--device", "cpu"])


def test_style_and_settings_reach_the_engine(tmp_path):
    """inpaint and batch take --style and repeatable --set KEY=VALUE (typed by ModelConfig)."""
    rng = np.random.default_rng(4)
    image = (rng.random((60, 90, 3)) * 255).astype(np.uint8)
    mask = np.zeros((60, 90), np.uint8)
    mask[20:40, 30:60] = 255
    (tmp_path / "images").mkdir(), (tmp_path / "masks").mkdir()
    Image.fromarray(image).save(tmp_path / "images" / "in.png")
    Image.fromarray(mask).save(tmp_path / "masks" / "in.png")
    settings = ["--style", "fast", "--set", "copy_detail_weight=0.03", "--set", "hr_fade_reflect=false"]
    assert main(["inpaint", str(tmp_path / "images" / "in.png"), str(tmp_path / "masks" / "in.png"),
                 "-o", str(tmp_path / "one.png"), "--device", "cpu", *settings]) == 0
    assert main(["batch", str(tmp_path / "images"), str(tmp_path / "masks"), "-o", str(tmp_path / "out"),
                 "--device", "cpu", *settings]) == 0
    want = Engine(device="cpu", style="fast", copy_detail_weight=0.03, hr_fade_reflect=False).inpaint(image, mask)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one.png")), want)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "in.png")), want)
    assert not np.array_equal(want, Engine(device="cpu").inpaint(image, mask))


@pytest.mark.parametrize("setting,match", [("nope=1", "KEY one of lr_long_side"), ("hr_feather=x", "hr_feather takes int"),
                                           ("copy_detail_weight=5", "copy_detail_weight must be in")])
def test_bad_settings_name_the_setting(tmp_path, setting, match):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "in.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "mask.png")
    with pytest.raises(SystemExit, match=match):
        main(["inpaint", str(tmp_path / "in.png"), str(tmp_path / "mask.png"), "-o", str(tmp_path / "o.png"),
              "--device", "cpu", "--set", setting])


def test_exclude_reaches_the_engine(tmp_path, capsys):
    """--exclude: a mask image whose nonzero pixels are never copied; one of another size names the argument."""
    from rethined_engine.cli import SAMPLE_IMAGE

    image = np.asarray(Image.open(SAMPLE_IMAGE).convert("RGB").resize((240, 160)))
    mask = np.zeros((160, 240), np.uint8)
    mask[60:110, 90:160] = 255
    exclude = np.zeros((160, 240), np.uint8)
    exclude[:, 160:] = 255
    for name, array in (("in.png", image), ("mask.png", mask), ("exclude.png", exclude),
                        ("small.png", exclude[:100])):
        Image.fromarray(array).save(tmp_path / name)
    assert main(["inpaint", str(tmp_path / "in.png"), str(tmp_path / "mask.png"), "-o", str(tmp_path / "o.png"),
                 "--device", "cpu", "--exclude", str(tmp_path / "exclude.png")]) == 0
    assert "excluded as sources" in capsys.readouterr().out
    engine = Engine(device="cpu")
    want = engine.inpaint(image, mask, exclude)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), want)
    assert not np.array_equal(want, engine.inpaint(image, mask))
    with pytest.raises(SystemExit, match="exclude: shape"):
        main(["inpaint", str(tmp_path / "in.png"), str(tmp_path / "mask.png"), "-o", str(tmp_path / "o.png"),
              "--device", "cpu", "--exclude", str(tmp_path / "small.png")])
