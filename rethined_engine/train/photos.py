"""Fetch the photographs we may train and evaluate on: Debian packages and photos bundled in PyPI wheels.

    python -m rethined_engine.train.photos DEST      # -> DEST/train/*, DEST/heldout/*, DEST/train-select, DEST/pilot
    python -m rethined_engine.train.photos photos/train-1024 --pack-from DEST/train   # small copy for a GPU

Needs `apt-get download` (Debian's archive), `dpkg-deb`, `edje_decc` (package libedje-bin) for the
enlightenment backgrounds, and pip (scikit-image, scikit-learn and scipy wheels, read as zip files, never
installed). Training photos: 114 for v0-v2, 123 (+ the wheel photos) for v3-v7, 139 from the next run
on (+ 16 opencv-doc photos). Nothing is committed: several packages are GPL/ShareAlike. The held-out
split (>= 20 photos of >= 2048 px) is never used for training.
"""
from __future__ import annotations

import argparse
import io
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from PIL import Image

Image.MAX_IMAGE_PIXELS = None

ENLIGHTENMENT = "usr/share/enlightenment/data/backgrounds/{}.edj"
LXQT = "usr/share/lxqt/wallpapers/{}"
MATE = "usr/share/backgrounds/mate/nature/{}"
OPENCV = "usr/share/doc/opencv-doc/examples/{}"

# (package, path inside the package); an .edj path means its largest embedded image (img.png).
HELD_OUT = [
    *[("enlightenment-data", ENLIGHTENMENT.format(n)) for n in (
        "Bamboo", "God-Rays", "Green-Maple", "Mountain", "Red-Maple", "Sea-of-Lanterns", "Snow-Trees",
        "Spruce-Needles", "White-Flower")],
    *[("lxqt-themes", LXQT.format(n)) for n in (
        "after-the-rain.jpg", "butterfly.png", "flowers.png", "fog.jpg", "this-is-not-windows.jpg")],
    *[("mate-backgrounds", MATE.format(n)) for n in ("Aqua.jpg", "Garden.jpg", "LadyBird.jpg", "TwoWings.jpg")],
    ("digikam-data", "usr/share/digikam/about/images/body-background.jpg"),
    ("libelementary-data", "usr/share/elementary/images/insanely_huge_test_image.jpg"),
]

TRAIN = [
    *[("enlightenment-data", ENLIGHTENMENT.format(n)) for n in (
        "Foggy-Trees", "Lichen-Branches", "Peaks", "Sunset-Clouds", "Sunset-Hills", "Yellow-Flower")],
    *[("lxqt-themes", LXQT.format(n)) for n in (
        "appleflower.png", "beam.png", "cloud.png", "drop.png", "Butterfly-Kenneth-Wimer.jpg", "Valendas.png")],
    *[("mate-backgrounds", MATE.format(n)) for n in (
        "Wood.jpg", "YellowFlower.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "GreenMeadow.jpg",
        "RainDrops.jpg", "Storm.jpg")],
    *[("palapeli-data", f"usr/share/palapeli/collection/{n}.jpg") for n in (
        "castle-maintenon", "cincinnati-bridge", "citrus-fruits", "european-honey-bee", "panther-chameleon-female")],
    *[("opencv-doc", OPENCV.format(n)) for n in (
        "data/aloeL.jpg", "data/leuvenA.jpg", "data/baboon.jpg", "data/fruits.jpg", "data/home.jpg",
        "data/squirrel_cls.jpg", "alphamat/input_images/plant.jpg",
        *[f"text/scenetext0{i}.jpg" for i in range(1, 7)])],
    # added after v7 (its 123 photos are the lines above, the wheels and gcompris): the remaining colour
    # photographs of opencv-doc's data/ (looked at; left out: drawings, renders, motion-blurred shots, and
    # the second view of a pair: aloeR, leuvenB, right, graf3, rubberwhale2, ela_modified)
    *[("opencv-doc", OPENCV.format(f"data/{n}")) for n in (
        "aero1.jpg", "aero3.jpg", "apple.jpg", "board.jpg", "building.jpg", "butterfly.jpg", "chicky_512.png",
        "ela_original.jpg", "graf1.png", "left.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png",
        "smarties.png", "stuff.jpg", "sudoku.png")],
]

# Photographs bundled in PyPI wheels (DESIGN section 8): (requirement, member inside the wheel). Colour
# photographs only: no grey test images, microscopy, fundus images, renders or the second image of a
# stereo pair. scipy's face.dat is a bz2-compressed 768 x 1024 x 3 uint8 array.
WHEEL_TRAIN = [
    *[("scikit-image==0.25.2", f"skimage/data/{n}") for n in (
        "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")],
    *[("scikit-learn==1.7.2", f"sklearn/datasets/images/{n}") for n in ("china.jpg", "flower.jpg")],
    ("scipy==1.11.4", "scipy/misc/face.dat"),
]
WHEEL_TARGET = ("--python-version", "3.11", "--platform", "manylinux2014_x86_64", "--only-binary=:all:")
FACE_SHAPE = (768, 1024, 3)

# gcompris-qt-data: lossy WEBP photos carved out of Qt .rcc bundles (>= 256 px); these bundles hold
# drawings or paintings rather than photographs and are skipped.
GCOMPRIS_RCC = "usr/share/gcompris-qt/rcc"
GCOMPRIS_SKIP = {"babyshapes"}
GCOMPRIS_SKIP_BLOBS = {"details_002", "details_004", "details_007", "details_008", "details_010", "details_014",
                       "details_018"}  # paintings
GCOMPRIS_MIN_SIDE = 256


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def unpack_package(name: str, cache: Path) -> Path:
    """apt-get download + dpkg-deb -x into cache/NAME (skipped when already there)."""
    root = cache / name
    if root.exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    _run(["apt-get", "download", name], cache)
    deb = sorted(cache.glob(f"{name}_*.deb"))[-1]
    tmp = cache / f"{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    _run(["dpkg-deb", "-x", str(deb), str(tmp)], cache)
    tmp.rename(root)
    return root


def wheel_member(requirement: str, member: str, cache: Path) -> bytes:
    """`pip download` the wheel (cached under cache/wheels; a fixed CPython 3.11 manylinux build, so the
    same file whatever runs this) and read one file out of it."""
    import zipfile

    folder = cache / "wheels"
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    wheels = sorted(folder.glob(pattern))
    if not wheels:
        folder.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "pip", "download", "--no-deps", *WHEEL_TARGET, requirement, "-d", str(folder)],
             folder)
        wheels = sorted(folder.glob(pattern))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return wheel.read(member)


def wheel_photo(requirement: str, member: str, cache: Path) -> tuple[str, bytes]:
    """(file name, encoded image) of a photo in a wheel; scipy's raw face.dat becomes a PNG."""
    import bz2

    import numpy as np

    data = wheel_member(requirement, member, cache)
    package = requirement.split("==")[0]
    if member.endswith(".dat"):
        pixels = np.frombuffer(bz2.decompress(data), dtype=np.uint8).reshape(FACE_SHAPE)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="PNG")
        return f"{package}__{Path(member).stem}.png", out.getvalue()
    return f"{package}__{Path(member).name}", data


def _edj_image(edj: Path, work: Path) -> Path:
    out = work / edj.stem
    if not (out / "img.png").exists():
        out.mkdir(parents=True, exist_ok=True)
        _run(["edje_decc", str(edj.resolve()), "-no-build-sh", "-current-dir"], out)
    return out / "img.png"


def carve_gcompris(root: Path):
    """Yield (name, webp bytes) of lossy WEBP photos inside gcompris' .rcc bundles."""
    for rcc in sorted((root / GCOMPRIS_RCC).glob("*.rcc")):
        if rcc.stem in GCOMPRIS_SKIP:
            continue
        data, start, index = rcc.read_bytes(), 0, 0
        while (start := data.find(b"RIFF", start)) >= 0:
            size = struct.unpack("<I", data[start + 4:start + 8])[0]
            if data[start + 8:start + 16] == b"WEBPVP8 ":
                blob, name = data[start:start + 8 + size], f"{rcc.stem}_{index:03d}"
                index += 1
                try:
                    size_ok = min(Image.open(io.BytesIO(blob)).size) >= GCOMPRIS_MIN_SIDE
                except OSError:
                    size_ok = False
                if size_ok and name not in GCOMPRIS_SKIP_BLOBS:
                    yield name, blob
            start += 4


def fetch(dest: Path, cache: Path) -> dict[str, list[Path]]:
    """Write DEST/train and DEST/heldout; returns the files per split."""
    cache = cache.resolve()   # apt-get, dpkg-deb and pip run inside it: a relative path would resolve twice
    written: dict[str, list[Path]] = {"train": [], "heldout": []}
    for split, entries in (("heldout", HELD_OUT), ("train", TRAIN)):
        (dest / split).mkdir(parents=True, exist_ok=True)
        for package, member in entries:
            root = unpack_package(package, cache)
            src = root / member
            if src.suffix == ".edj":
                src = _edj_image(src, cache / "edj")
                name = f"{package}__{Path(member).stem}.png"
            else:
                name = f"{package}__{src.name}"
            target = dest / split / name
            if not target.exists():
                shutil.copyfile(src, target)
            written[split].append(target)
    for requirement, member in WHEEL_TRAIN:
        name, data = wheel_photo(requirement, member, cache)
        target = dest / "train" / name
        if not target.exists():
            target.write_bytes(data)
        written["train"].append(target)
    root = unpack_package("gcompris-qt-data", cache)
    for name, blob in carve_gcompris(root):
        target = dest / "train" / f"gcompris-qt-data__{name}.webp"
        target.write_bytes(blob)
        written["train"].append(target)
    return written


# The training photos the setting rules score (`bench/results/training/README.md`): its first RULE_PHOTOS choose
# settings; the rest, the pilot photos, are tried first and choose nothing. Sorted, as `data.list_images` lists them.
TRAIN_SELECT = [
    "enlightenment-data__Foggy-Trees.png", "enlightenment-data__Sunset-Hills.png", "gcompris-qt-data__erase_000.webp",
    "gcompris-qt-data__erase_004.webp", "gcompris-qt-data__explore_farm_animals_002.webp",
    "gcompris-qt-data__explore_farm_animals_006.webp", "gcompris-qt-data__explore_monuments_003.webp",
    "gcompris-qt-data__explore_monuments_007.webp", "gcompris-qt-data__explore_monuments_011.webp",
    "gcompris-qt-data__explore_monuments_015.webp", "gcompris-qt-data__explore_monuments_019.webp",
    "gcompris-qt-data__explore_monuments_023.webp", "gcompris-qt-data__explore_monuments_027.webp",
    "gcompris-qt-data__explore_monuments_031.webp", "gcompris-qt-data__explore_world_animals_002.webp",
    "gcompris-qt-data__explore_world_animals_006.webp", "gcompris-qt-data__explore_world_music_002.webp",
    "lxqt-themes__appleflower.png", "mate-backgrounds__Blinds.jpg", "mate-backgrounds__RainDrops.jpg",
    "opencv-doc__aloeL.jpg", "palapeli-data__castle-maintenon.jpg", "palapeli-data__panther-chameleon-female.jpg",
]
RULE_PHOTOS = 12


def select(dest: Path) -> dict[str, list[Path]]:
    """DEST/train-select (TRAIN_SELECT) and DEST/pilot (all but its first RULE_PHOTOS) as links into DEST/train;
    FileNotFoundError naming the first photo DEST/train lacks."""
    missing = [name for name in TRAIN_SELECT if not (dest / "train" / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{dest / 'train'}: no {missing[0]}: the training photos are fetched first")
    written: dict[str, list[Path]] = {}
    for folder, names in (("train-select", TRAIN_SELECT), ("pilot", TRAIN_SELECT[RULE_PHOTOS:])):
        (dest / folder).mkdir(parents=True, exist_ok=True)
        written[folder] = []
        for name in names:
            link = dest / folder / name
            if not link.exists():
                link.symlink_to(Path("..") / "train" / name)
            written[folder].append(link)
    return written


PACK_JPEG_QUALITY = 95


def pack(source: Path, dest: Path, long_side: int, quality: int = PACK_JPEG_QUALITY) -> list[Path]:
    """Copy every photo of `source` into `dest` as JPEG with max(H, W) <= long_side (Lanczos). Training
    never looks at more than `data.CACHE_LONG_SIDE` px, so a pack at that size is all a remote training
    run needs (the 114 training photos: ~70 MB as shipped, a few tens of MB packed)."""
    from .data import list_images, load_rgb

    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in list_images(source):
        out = dest / f"{path.stem}.jpg"
        Image.fromarray(load_rgb(path, long_side)).save(out, quality=quality)
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    from .data import CACHE_LONG_SIDE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="output folder (gets train/, heldout/, train-select/ and pilot/)")
    parser.add_argument("--cache", type=Path, default=None, help="where .deb files are unpacked (default DEST/.debs)")
    parser.add_argument("--pack-from", type=Path, default=None,
                        help=f"instead of fetching: copy this folder's photos into DEST as JPEG q{PACK_JPEG_QUALITY} "
                             f"at long side <= {CACHE_LONG_SIDE} (what training reads)")
    args = parser.parse_args(argv)
    if args.pack_from is not None:
        files = pack(args.pack_from, args.dest, CACHE_LONG_SIDE)
        size = sum(f.stat().st_size for f in files) / 2**20
        print(f"packed {len(files)} photos into {args.dest} ({size:.1f} MiB)")
        return 0
    for tool in ("apt-get", "dpkg-deb", "edje_decc"):
        if shutil.which(tool) is None:
            hint = " (apt-get install libedje-bin)" if tool == "edje_decc" else ""
            print(f"error: '{tool}' not found{hint}", file=sys.stderr)
            return 2
    written = fetch(args.dest, args.cache or args.dest / ".debs")
    written |= select(args.dest)
    for split, files in written.items():
        print(f"{split}: {len(files)} photos in {args.dest / split}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
