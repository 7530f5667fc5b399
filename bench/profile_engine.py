"""Where the time of one `Engine.inpaint` call goes on CUDA: torch.profiler over a few calls.

    python -m bench.profile_engine --backend triton --sizes 2048 4096 [--calls 5]

Same input as bench.latency (shipped sample photo resized to size², 40 % free-form mask, GPU-resident
uint8). Reports per call: wall time, the sum of GPU kernel time ("busy"; wall >> busy means the call is
bound by launches / host work, not by the GPU), kernel launches, and the kernels by GPU time.
Appends a run to bench/results/profile-<gpu>.json: its rows and where it ran (device, commit, `dirty`,
versions, threads; `bench.env.run_environment`).
"""
from __future__ import annotations

import argparse
import json
import time

from .env import RESULTS, run_environment
from .latency import bench_input, make_engine

TOP_KERNELS = 15


def profile(backend: str, size: int, calls: int, warmup: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile

    engine = make_engine(backend, "cuda")
    img, mask = bench_input(size)
    img = torch.from_numpy(img).cuda().permute(2, 0, 1).contiguous()
    mask = torch.from_numpy(mask).cuda()
    for _ in range(warmup):
        engine.inpaint(img, mask)
    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(calls):
            engine.inpaint(img, mask)
        torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - t0) * 1e3 / calls
    kernels = {}
    for event in prof.events():
        if event.device_type.name == "CUDA":
            entry = kernels.setdefault(event.name, [0.0, 0])
            entry[0] += event.time_range.elapsed_us() / 1e3 / calls   # us -> ms per call
            entry[1] += 1
    busy = sum(ms for ms, _ in kernels.values())
    launches = sum(n for _, n in kernels.values()) / calls
    top = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:TOP_KERNELS]
    return {"backend": backend, "size": size, "calls": calls, "wall_ms_per_call": wall_ms,
            "gpu_busy_ms_per_call": busy, "kernels_per_call": launches,
            "top_kernels": [{"name": name[:120], "ms_per_call": ms, "count_per_call": n / calls}
                            for name, (ms, n) in top]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", nargs="+", default=["triton"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("error: bench.profile_engine profiles CUDA; no CUDA device here")
    env = run_environment("cuda")     # before any measuring: exits if the commit is unknown
    out = RESULTS / f"profile-{env['device'].replace(' ', '_')}.json"
    runs = json.loads(out.read_text())["runs"] if out.is_file() else []
    rows = []
    runs.append(env | {"rows": rows})
    out.parent.mkdir(parents=True, exist_ok=True)
    for backend in args.backend:
        for size in args.sizes:
            row = profile(backend, size, args.calls, args.warmup)
            rows.append(row)
            print(f"{backend} {size}^2: wall {row['wall_ms_per_call']:.2f} ms/call, GPU busy "
                  f"{row['gpu_busy_ms_per_call']:.2f} ms, {row['kernels_per_call']:.0f} kernels/call", flush=True)
            for k in row["top_kernels"]:
                print(f"   {k['ms_per_call']:8.3f} ms  x{k['count_per_call']:<4.0f} {k['name'][:100]}")
            out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")   # after every row: a cut run keeps its rows
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
