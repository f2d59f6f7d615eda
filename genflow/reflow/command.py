"""``genflow reflow pairs``: teacher pairs of a trained run, written as shards by :class:`PairGenerator`.

``genflow reflow pairs CKPT --segments K --n N --out DIR`` loads the run (or
checkpoint) ``CKPT`` (EMA weights), integrates its ODE across ``K`` segments
with a registered solver (dopri5, rtol = atol = 1e-4, by default) and writes
``ceil(N / batch)`` shards of ``batch`` pairs to ``DIR``. Running the same
command again continues an interrupted run (finished shards are kept, the
rest are made as an uninterrupted run would have made them). Under ``torchrun``
every process writes its own shards (``RANK``, ``WORLD_SIZE`` from the
environment) on its own device (``cuda:LOCAL_RANK`` where CUDA is available).

With ``K > 1`` the segment starts are noised data: the data section of the run's
saved recipe, or, for a run that trained on pairs (``reflow_pairs`` data), of
the run it was initialised from (following ``init_from`` back), or of the recipe
given with ``--data``.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

import torch

from genflow.errors import ConfigError

__all__ = ["add_reflow_parser", "training_data", "run_pairs"]

PAIRS_LOADER = "reflow_pairs"


def _examples(dataset: Any) -> torch.Tensor:
    """The examples (first field) of a loaded dataset, as one floating tensor."""
    if isinstance(dataset, torch.Tensor):
        return dataset
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        return tensors[0]
    return torch.stack([item[0] if isinstance(item, (tuple, list)) else item for item in dataset])


def training_data(checkpoint: str | os.PathLike[str], data_recipe: str | None = None) -> torch.Tensor:
    """The data a run's segment starts are drawn from (see the module docstring).

    Raises:
        ConfigError: no recipe saved with the run (and no ``data_recipe``), or an ``init_from`` chain that
            never reaches a run trained on data.
    """
    from genflow.pipeline import _dataset, run_recipe
    from genflow.recipe import load_recipe

    if data_recipe is not None:
        recipe = load_recipe(data_recipe)
        return _examples(_dataset(recipe.config["data"], recipe.seed))
    seen: list[str] = []
    path: str | os.PathLike[str] | None = checkpoint
    while path is not None and str(path) not in seen:
        seen.append(str(path))
        config = run_recipe(path)
        if config is None:
            raise ConfigError(
                f"{path} has no saved recipe.yaml to take the data from; pass --data RECIPE (e.g. --data digits_flow)"
            )
        if config["data"].get("name") != PAIRS_LOADER:
            return _examples(_dataset(config["data"], int(config.get("seed", 0))))
        init = config.get("init_from")
        path = init if isinstance(init, (str, type(None))) else init.get("path")
    raise ConfigError(
        f"the runs {seen} trained on pairs and none was initialised from a run trained on data; pass --data RECIPE"
    )


def _device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return torch.device("cpu")


def _rank() -> tuple[int, int]:
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(
            f"RANK and WORLD_SIZE must be integers; got {os.environ.get('RANK')!r}, {os.environ.get('WORLD_SIZE')!r}"
        ) from None
    return rank, world


def run_pairs(args: argparse.Namespace) -> int:
    """The ``genflow reflow pairs`` command."""
    from genflow.cli import _json_argument
    from genflow.outputs import check_writable_folder
    from genflow.pipeline import load_trained
    from genflow.reflow.pairs import PairGenerator

    for flag, value, low in (("--n", args.n, 1), ("--segments", args.segments, 1), ("--batch-size", args.batch_size, 1),
                             ("--steps", args.steps, 1)):  # fmt: skip
        if value < low:
            raise ConfigError(f"{flag} must be >= {low}; got {value}")
    solver = None
    if args.solver is not None:
        solver = {"name": args.solver, **_json_argument(args.solver_args, "--solver-args", dict)}
    elif args.solver_args != "{}":
        raise ConfigError("--solver-args needs --solver (the default solver is dopri5 with rtol = atol = 1e-4)")
    check_writable_folder(args.out, "--out")
    rank, world = _rank()
    process, teacher = load_trained(args.checkpoint)
    teacher = teacher.to(_device(args.device))
    data = training_data(args.checkpoint, args.data) if args.segments > 1 else None
    generator = PairGenerator(
        teacher,
        process,
        solver,
        segments=args.segments,
        data=data,
        event_shape=None if data is not None else getattr(teacher, "event_shape", None),
        shard_size=args.batch_size,
        steps=args.steps,
        seed=args.seed,
        progress=not args.no_progress and rank == 0,
    )
    shards = math.ceil(args.n / args.batch_size)
    manifest = generator.generate(Path(args.out), shards, rank=rank, world_size=world)
    where = f" (rank {rank} of {world})" if world > 1 else ""
    print(
        f"{manifest.pairs} pairs in {len(manifest.shards)} shard(s){where} in {args.out}; teacher NFE "
        f"{manifest.teacher_nfe}, per-example evaluations {manifest.teacher_evaluations}; manifest {manifest.path}"
    )
    return 0


def add_reflow_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``genflow reflow pairs`` to the command's subparsers."""
    reflow = sub.add_parser(
        "reflow",
        parents=[common],
        help="reflow and sequential reflow: teacher pairs of a trained flow",
        description="Reflow (2-rectified flow), sequential reflow (SeqRF) and their distillation train on teacher "
        "pairs; 'genflow reflow pairs' makes them. Training is 'genflow train' with the toy_*/digits_* reflow "
        "recipes (docs/reflow.md).",
    )
    actions = reflow.add_subparsers(dest="reflow_command", required=True)
    pairs = actions.add_parser(
        "pairs",
        parents=[common],
        help="integrate a trained run's ODE across K segments and write the pairs as safetensors shards",
        description="Load CHECKPOINT (a run folder or step folder; EMA weights), integrate its probability-flow "
        "ODE across K segments (tau_k = 1 - k/K) and write ceil(N / batch size) shards of pairs (start, end, "
        "t_start, t_end, segment) to OUT, with the teacher's NFE in OUT/manifest.json. Rerunning the same "
        "command resumes an interrupted run and gives the same shards. Under torchrun each process writes its "
        "own shards (RANK, WORLD_SIZE).",
    )
    pairs.add_argument("checkpoint", help="the teacher: a run folder or a step-XXXXXXXX folder")
    pairs.add_argument("--segments", type=int, default=1, help="K segments (default 1: full-trajectory reflow pairs)")
    pairs.add_argument("--n", type=int, required=True, help="number of pairs (rounded up to whole shards)")
    pairs.add_argument("--out", required=True, help="output folder for the shards")
    pairs.add_argument("--solver", default=None, help="registered ODE solver (default dopri5, rtol = atol = 1e-4)")
    pairs.add_argument("--solver-args", default="{}", help="solver arguments as JSON, e.g. '{\"rtol\": 1e-5}'")
    pairs.add_argument("--steps", type=int, default=1, help="grid steps per segment (fixed-step solvers; default 1)")
    pairs.add_argument("--batch-size", type=int, default=1024, help="pairs per shard, solved as one batch (1024)")
    pairs.add_argument("--seed", type=int, default=0, help="seed of the noise and data draws (default 0)")
    pairs.add_argument("--data", default=None, metavar="RECIPE",
                       help="take the data of the segment starts from this recipe's data section (K > 1)")  # fmt: skip
    pairs.add_argument("--device", default="auto", help="'auto' (cuda:LOCAL_RANK if available, else cpu) or a device")
    pairs.add_argument("--no-progress", action="store_true", help="no progress bar")
    pairs.set_defaults(func=run_pairs)
