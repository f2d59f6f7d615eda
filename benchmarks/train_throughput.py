"""Training throughput of the digits DiT: one process against DDP with two processes (gloo on the CPU).

Runs the `digits_dit` recipe's model and objective through the Trainer for a
fixed number of steps in three configurations, each in a fresh process (so
peak memory is per configuration): one process with batch B; two processes
(torchrun) with batch B/2 each (the same global batch, the configuration whose
results match the single process exactly); two processes with batch B each
(twice the global batch). Throughput is examples per second after a warm-up;
peak memory is each process's maximum resident set size.

Usage::

    .venv/bin/python benchmarks/train_throughput.py          # -> docs/benchmarks/training.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, write_text_atomic  # noqa: E402


def worker(batch: int, steps: int, warmup: int, result: str) -> None:
    """Train `steps` steps (after `warmup`) and write examples/s and peak RSS (rank 0 collects all ranks)."""
    from genflow.pipeline import build
    from genflow.recipe import load_recipe
    from genflow.train import Trainer, init_distributed

    ctx = init_distributed("cpu")
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // ctx.world_size))
    parts = build(load_recipe("digits_dit"))
    trainer = Trainer(parts.model, parts.objective, steps=warmup, batch_size=batch, progress=False, context=ctx,
                      log_every=1000)  # fmt: skip
    trainer.fit(parts.dataset, resume=False)
    trainer.steps = warmup + steps
    start = time.perf_counter()
    trainer.fit(parts.dataset, resume=False)
    seconds = time.perf_counter() - start
    rss = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0])  # MiB on Linux
    if ctx.enabled:
        gathered = [torch.zeros(1) for _ in range(ctx.world_size)]
        torch.distributed.all_gather(gathered, rss)
        rss_all = [float(r) for r in gathered]
    else:
        rss_all = [float(rss)]
    if ctx.is_main:
        examples = steps * batch * ctx.world_size
        record = {"examples_per_s": examples / seconds, "seconds": seconds, "rss_mib": rss_all,
                  "world": ctx.world_size, "batch": batch}  # fmt: skip
        Path(result).write_text(json.dumps(record))
    if ctx.enabled:
        torch.distributed.destroy_process_group()


def run(config: dict, steps: int, warmup: int, tmp: Path) -> dict:
    out = tmp / f"{config['name']}.json"
    cmd = [sys.executable, __file__, "--worker", "--batch", str(config["batch"]), "--steps", str(steps),
           "--warmup", str(warmup), "--result", str(out)]  # fmt: skip
    if config["world"] > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={config['world']}",
            *cmd[1:],
        ]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(2 // config["world"] or 1)})
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=128, help="global batch B of the single process")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    if args.worker:
        worker(args.batch, args.steps, args.warmup, args.result)
        return
    import tempfile

    configs = [
        {"name": "1 process", "world": 1, "batch": args.batch},
        {"name": "DDP 2 processes, same global batch", "world": 2, "batch": args.batch // 2},
        {"name": "DDP 2 processes, doubled global batch", "world": 2, "batch": args.batch},
    ]
    with tempfile.TemporaryDirectory() as tmp:
        results = [(c, run(c, args.steps, args.warmup, Path(tmp))) for c in configs]
    base = results[0][1]["examples_per_s"]
    lines = [
        "# Training throughput: one process against DDP (gloo, CPU)",
        "",
        f"`digits_dit` recipe (DiT, 8x8 digits), {args.steps} timed steps after {args.warmup} warm-up steps; "
        "threads per process = cores / processes. Peak memory is each process's maximum resident set size.",
        "",
        "| configuration | batch per process | global batch | examples/s | ratio to 1 process "
        "| peak RSS per process (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for config, r in results:
        rss = ", ".join(f"{m:.0f}" for m in r["rss_mib"])
        lines.append(f"| {config['name']} | {r['batch']} | {r['batch'] * r['world']} | {r['examples_per_s']:.0f} | "
                     f"{r['examples_per_s'] / base:.2f} | {rss} |")  # fmt: skip
    lines += ["", *machine_lines()]
    write_text_atomic(args.out_dir / "training.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
