"""`inpaint_dataset`: run a manifest through decode -> Engine -> encode, in a plain local loop or on Ray Data.

Both paths call the same stage functions (stages.py); Ray adds only the placement: decode and encode as
Ray tasks on CPUs, the Engine in a fixed pool of actors (`ActorPoolStrategy(size=workers)`, `num_gpus`
per actor), each actor loading its Engine once.
"""
from __future__ import annotations

import functools
import math
from typing import Iterable, Iterator

from .manifest import Manifest, ManifestRow
from .stages import BatchConfig, EngineStage, decode, encode

ROWS_PER_INPUT_BLOCK = 4   # manifest rows per Ray block: small blocks spread over the actors and stream results


def inpaint_local(rows: Iterable[ManifestRow], config: BatchConfig) -> Iterator[dict]:
    """The local loop: one Engine in this process, rows in order; yields each row's result
    (stages.RESULT_FIELDS) as soon as it is written."""
    stage = EngineStage(config)
    for row in rows:
        yield encode(stage.row(decode(row.as_dict(), config)), config)


def _io_task_args(config: BatchConfig) -> dict:
    """Remote arguments of a decode or encode task. Given through ray_remote_args_fn, which also keeps
    Ray Data from fusing the stage into the engine's actors (it fuses stages of equal resources), so
    decoding and encoding run on CPUs of their own."""
    return {"num_cpus": config.cpus_per_io_task}


def ray_dataset(rows: Iterable[ManifestRow], config: BatchConfig):
    """The lazy `ray.data.Dataset` of results (stages.RESULT_FIELDS columns) of rows, in their order
    (sorted by image size in a Manifest). Needs `ray[data]` and a connected or local Ray."""
    import ray.data

    items = [row.as_dict() for row in rows]
    if not items:
        raise ValueError("rows: expected at least one manifest row, got none")
    io_args = functools.partial(_io_task_args, config)
    dataset = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / ROWS_PER_INPUT_BLOCK))
    dataset = dataset.map(decode, fn_kwargs={"config": config}, ray_remote_args_fn=io_args)
    dataset = dataset.map_batches(EngineStage, fn_constructor_kwargs={"config": config},
                                  batch_size=config.rows_per_call, batch_format="numpy",
                                  compute=ray.data.ActorPoolStrategy(size=config.workers),
                                  num_gpus=config.gpus_per_worker, num_cpus=config.cpus_per_worker)
    return dataset.map(encode, fn_kwargs={"config": config}, ray_remote_args_fn=io_args)


def inpaint_dataset(manifest: Manifest, config: BatchConfig = BatchConfig(), use_ray: bool = False) -> Iterator[dict]:
    """Inpaint every row of manifest; yields one result dict per row (image, mask, output, status in
    ok/skipped/error, error message) as rows finish: in manifest order locally, in completion order on
    Ray. use_ray: run on the Ray cluster this process is connected to (ray.init() first; without it Ray
    starts a local one), else in a local loop with one Engine."""
    if not manifest.rows:
        return iter(())
    if use_ray:
        return ray_dataset(manifest.rows, config).iter_rows()
    return inpaint_local(manifest.rows, config)
