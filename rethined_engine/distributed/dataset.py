"""`inpaint_dataset`: run a manifest through decode -> Engine -> encode, in a plain local loop or on Ray Data.

Both paths call the same stage functions (stages.py); Ray adds only the placement: decode and encode as
Ray tasks on CPUs of their own (never fused into the actors), the Engine in a fixed pool of actors
(`ActorPoolStrategy(size=workers)`, `num_gpus` per actor, one engine call in flight per actor), each actor
loading its Engine once. Rows start once every actor has loaded its Engine (up to
`BatchConfig.actor_start_timeout_s`), so the first actor up does not take every row of a short run.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from .manifest import Manifest, ManifestRow
from .stages import BatchConfig, EngineStage, decode, encode

IO_TASK_MEMORY = 512 * 2 ** 20  # bytes Ray reserves per decode/encode task (an 8K RGB image is 100 MB decoded, its
                                # encoder a few times that); the actors reserve none, so Ray Data (2.60) never fuses
                                # decode into them: file work keeps CPUs of its own
MAX_INPUT_BLOCKS = 10_000   # Ray blocks of manifest rows: one row per block up to this many rows (spread over
                            # the actors, results stream), then several rows per block


def inpaint_local(rows: Iterable[ManifestRow], config: BatchConfig) -> Iterator[dict]:
    """The local loop: one Engine in this process, rows in order; yields each row's result
    (stages.RESULT_FIELDS) as soon as it is written."""
    stage = EngineStage(config)
    for row in rows:
        yield encode(stage.row(decode(row.as_dict(), config)), config)


def ray_dataset(rows: Iterable[ManifestRow], config: BatchConfig):
    """The lazy `ray.data.Dataset` of results (stages.RESULT_FIELDS columns) of rows, in their order
    (sorted by image size in a Manifest). Needs `ray[data]` and a connected or local Ray."""
    import ray.data

    items = [row.as_dict() for row in rows]
    if not items:
        raise ValueError("rows: expected at least one manifest row, got none")
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_INPUT_BLOCKS))
    io_task = {"num_cpus": config.cpus_per_io_task, "memory": IO_TASK_MEMORY}
    dataset = dataset.map(decode, fn_kwargs={"config": config}, **io_task)
    dataset = dataset.map_batches(EngineStage, fn_constructor_kwargs={"config": config},
                                  batch_size=config.rows_per_call, batch_format="numpy",
                                  compute=ray.data.ActorPoolStrategy(size=config.workers,
                                                                     max_tasks_in_flight_per_actor=1),
                                  num_gpus=config.gpus_per_worker, num_cpus=config.cpus_per_worker)
    dataset = dataset.map(encode, fn_kwargs={"config": config}, **io_task)
    dataset.context.wait_for_min_actors_s = config.actor_start_timeout_s
    return dataset


def inpaint_dataset(manifest: Manifest, config: BatchConfig | None = None, use_ray: bool = False) -> Iterator[dict]:
    """Inpaint every row of manifest; yields one result dict per row (stages.RESULT_FIELDS: image,
    mask, output, status ok/skipped/error, error message, worker) as rows finish: in manifest order locally, in completion order on
    Ray. use_ray: run on the Ray cluster this process is connected to (ray.init() first; without it Ray
    starts a local one), else in a local loop with one Engine. config: BatchConfig() when None."""
    config = BatchConfig() if config is None else config
    if not manifest.rows:
        return iter(())
    if use_ray:
        return ray_dataset(manifest.rows, config).iter_rows()
    return inpaint_local(manifest.rows, config)
