"""`num_gpus` placement of the engine actors on a two-node Ray cluster in this process (`ray.cluster_utils.Cluster`):
a CPU-only head and a worker node that declares one GPU. The engine itself runs on the CPU (no GPU here); what is
checked is where Ray puts it and what it reserves."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rethined_engine import Engine
from rethined_engine.distributed import OK, BatchConfig, build_manifest, inpaint_dataset
from rethined_engine.train.masks import random_mask


def ancestors(pid: int) -> set[int] | None:
    """Process ids above pid (Linux /proc); None when pid has exited (Ray stops an actor pool once its work is
    done, so a worker may be gone before the driver reads its parent)."""
    found = set()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError):
            return None
        found.add(pid)
    return found


@pytest.fixture(scope="module")
def gpu_cluster():
    ray = pytest.importorskip("ray")
    from ray import ray_constants
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
    ray.init(address=cluster.address, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    raylet = gpu_node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    yield raylet
    ray.shutdown()
    cluster.shutdown()


def test_engine_actors_land_on_the_gpu_node_and_reserve_its_gpu(gpu_cluster, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for stem in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{stem}.png")
        Image.fromarray(random_mask(48, 64, rng).astype(np.uint8) * 255).save(tmp_path / "masks" / f"{stem}.png")
    config = BatchConfig(engine={"device": "cpu"}, workers=1, gpus_per_worker=1, cpus_per_worker=0.5,
                         cpus_per_io_task=0.25, actor_start_timeout_s=120)
    manifest = build_manifest(tmp_path / "images", tmp_path / "masks", tmp_path / "out")
    results, lineage = [], None
    for result in inpaint_dataset(manifest, config, use_ray=True):
        if not results:         # read the worker's parents at once, while its pool may still run
            lineage = ancestors(int(result["worker"].rsplit(":", 1)[1]))
        results.append(result)
    assert [r["status"] for r in results] == [OK] * 3
    pids = {int(r["worker"].rsplit(":", 1)[1]) for r in results}
    assert len(pids) == 1
    engine = Engine(device="cpu")
    for r in results:
        image, hole = np.asarray(Image.open(r["image"])), np.asarray(Image.open(r["mask"]))
        assert np.array_equal(np.asarray(Image.open(r["output"])), engine.inpaint(image, hole)), Path(r["image"]).stem
    if lineage is None:
        pytest.skip("the engine's worker exited before its parent process could be read")
    assert gpu_cluster in lineage   # a worker process of the GPU node's raylet


def test_a_gpu_reservation_no_node_can_meet_times_out(gpu_cluster, tmp_path):
    import ray

    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "images" / "x.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "mask.png")
    config = BatchConfig(engine={"device": "cpu"}, gpus_per_worker=2, actor_start_timeout_s=5)
    manifest = build_manifest(tmp_path / "images", tmp_path / "mask.png", tmp_path / "out")
    with pytest.raises(ray.exceptions.GetTimeoutError):
        list(inpaint_dataset(manifest, config, use_ray=True))
