"""The ``genflow`` command: ``train``, ``sample``, ``evaluate``, ``demo`` and ``reflow pairs``.

Bad input never reaches the user as a traceback: every error genflow raises on
purpose prints one line ``genflow COMMAND: error: ...`` and exits with 2; Ctrl-C
exits with 130 after saying where the last checkpoint is. Everything a command
needs (recipe, solver specs, sample counts, output paths) is checked before it
trains or samples, so no work is lost to a bad argument found at the end.
``--plugin MODULE`` (repeatable) imports user code first, so components it
registers can be named in recipes and on the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genflow.demo import check_fd_sample_count, evaluate_digits, run_demo, save_grid
from genflow.errors import ConfigError, GenflowError
from genflow.outputs import check_writable_file

__all__ = ["main", "build_parser", "EXIT_ERROR", "EXIT_INTERRUPTED"]

EXIT_ERROR = 2  # bad input or a refused action: one line on stderr
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


# ----------------------------------------------------------------------------------------- helpers
def _json_argument(text: str, flag: str, kind: type) -> Any:
    """Parse a JSON command-line value of the given kind (dict or list).

    Raises:
        ConfigError: not JSON, or JSON of another kind.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{flag} is not valid JSON ({err}); got {text!r}") from None
    if not isinstance(value, kind):
        expected = "object {...}" if kind is dict else "list [...]"
        raise ConfigError(f"{flag} must be a JSON {expected}; got {type(value).__name__} {text!r}")
    return value


def _import_run_plugins(checkpoint: str) -> None:
    """Import the plugins the run's saved recipe names (its model may be a plugin's)."""
    from genflow.pipeline import run_recipe
    from genflow.plugins import import_plugins

    recipe = run_recipe(checkpoint)
    if recipe is not None:
        import_plugins(recipe.get("plugins", []))


def _default_solvers(checkpoint: str) -> list[dict[str, Any]]:
    """The solvers of the run's own recipe (saved by ``genflow train``), else the digits_dit recipe's."""
    from genflow.pipeline import run_recipe
    from genflow.recipe import load_recipe

    recipe = run_recipe(checkpoint) or load_recipe("digits_dit").config
    return recipe["sample"]["solvers"]


def _exit_policy(text: str | None, checkpoint: str) -> Any:
    """``--exit`` as a policy, else the run recipe's ``sample.exit``, else ``None`` (all blocks)."""
    from genflow.exit import exit_policy_from
    from genflow.pipeline import run_recipe

    if text is not None:
        return exit_policy_from(text, "--exit")
    spec = (run_recipe(checkpoint) or {}).get("sample", {}).get("exit")
    return None if spec is None else exit_policy_from(spec, "the run recipe's sample.exit")


# -------------------------------------------------------------------------------------- commands
def _is_classifier_run(path: str) -> bool:
    """Whether ``path`` is an ensemble run (``member-<i>/`` folders) or a checkpoint whose model is a classifier."""
    from genflow.classify import CLASSIFIERS, member_dirs
    from genflow.train.checkpoint import STATE, latest_checkpoint

    if member_dirs(path):
        return True
    folder = Path(path) if (Path(path) / STATE).is_file() else latest_checkpoint(path)
    try:
        state = json.loads((folder / STATE).read_text()) if folder is not None else None
    except (OSError, ValueError):
        return False  # not readable: the generator path reports it in one line
    config = state.get("model_config") if isinstance(state, dict) else None
    return isinstance(config, dict) and config.get("name") in CLASSIFIERS


def _prepare_recipe_run(recipe: Any, args: argparse.Namespace) -> None:
    """Before a classifier or bridge recipe trains: its plugins imported, ``--tensorboard`` applied, ``--out``
    checked writable."""
    from genflow.outputs import check_writable_folder
    from genflow.plugins import import_plugins

    import_plugins(recipe.plugins)
    if args.tensorboard:
        recipe.config["trainer"]["tensorboard"] = True
    check_writable_folder(args.run_dir, "--out")


def _train_classifier(recipe: Any, args: argparse.Namespace) -> int:
    from genflow.classify import train_recipe

    _prepare_recipe_run(recipe, args)
    result = train_recipe(recipe, out_dir=args.run_dir, progress=not args.no_progress)
    members = len(result.seconds)
    print(f"trained {members} classifier(s), {recipe.config['trainer'].get('steps', 1000)} steps each, "
          f"{sum(result.seconds):.1f} s; run in {args.run_dir}")  # fmt: skip
    return 0


def _train_bridge(recipe: Any, args: argparse.Namespace) -> int:
    from genflow.bridge.recipe import train_bridge_recipe

    _prepare_recipe_run(recipe, args)
    results = train_bridge_recipe(recipe, out_dir=args.run_dir, progress=not args.no_progress)
    students = sum(r.one_step is not None for r in results)
    print(f"trained {len(results)} bridge(s) and {students} one-step student(s), "
          f"{sum(sum(r.seconds) for r in results):.1f} s; run in {args.run_dir}")  # fmt: skip
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from genflow.pipeline import train
    from genflow.recipe import is_bridge_recipe, is_classifier_recipe, load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    args.run_dir = Path(args.out if args.out is not None else recipe.config.get("out_dir", "runs/train"))
    if is_classifier_recipe(recipe.config):
        return _train_classifier(recipe, args)
    if is_bridge_recipe(recipe.config):
        return _train_bridge(recipe, args)
    trainer = train(
        recipe, out_dir=args.run_dir, progress=not args.no_progress, tensorboard=True if args.tensorboard else None
    )
    print(f"trained {trainer.step} steps; checkpoints in {trainer.out_dir}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from genflow.io import atomic_path
    from genflow.pipeline import checkpoint_step, load_trained, sample_with, solver_from

    extra = _json_argument(args.solver_args, "--solver-args", dict)
    for key in ("name", "steps"):
        if key in extra:
            raise ConfigError(f"--solver-args must not set {key!r}; use --{'solver' if key == 'name' else key}")
    spec = {"name": args.solver, "steps": args.steps, **extra}
    solver_from(spec)  # an unknown solver or argument is refused before any work
    if args.n < 1:
        raise ConfigError(f"--n must be >= 1; got {args.n}")
    for flag, path in (("--out", args.out), ("--save", args.save)):
        if path:
            check_writable_file(path, flag)
    _import_run_plugins(args.checkpoint)
    checkpoint_step(args.checkpoint)
    policy = _exit_policy(args.exit, args.checkpoint)
    process, model = load_trained(args.checkpoint)
    out = sample_with(process, model, spec, args.n, seed=args.seed, batch_size=args.batch_size, exit_policy=policy)
    exited = "" if policy is None else f", exit {policy.registry_name}"
    print(f"{args.n} samples, NFE {out.nfe}, {out.seconds:.2f} s, {out.flops / 1e9:.3g} GFLOPs{exited}")
    failures = []
    if args.save:  # each output is written on its own: one failing does not lose the other
        try:
            from safetensors.torch import save_file

            with atomic_path(args.save) as tmp:
                save_file({"samples": out.samples.contiguous()}, str(tmp))
            print(f"samples written to {args.save}")
        except OSError as err:
            failures.append(f"--save {args.save}: {err}")
    if args.out:
        try:
            save_grid(out.samples, Path(args.out))
            print(f"grid written to {args.out}")
        except OSError as err:
            failures.append(f"--out {args.out}: {err}")
    if failures:
        raise ConfigError("could not write " + "; ".join(failures))
    return 0


def _evaluate_classifier(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from genflow.classify import evaluate_run
    from genflow.io import write_text_atomic
    from genflow.outputs import check_writable_folder

    if args.solvers:
        raise ConfigError(f"{args.checkpoint} is a classifier run: it samples nothing, so --solvers does not apply")
    if args.robustness:
        return _evaluate_robustness(args)
    report_dir = Path(args.report_dir) if args.report_dir else Path(args.checkpoint) / "eval"
    check_writable_folder(report_dir, "--report-dir")
    if args.out:
        check_writable_file(args.out, "--out")
    report = evaluate_run(args.checkpoint, out_dir=report_dir)
    print(report.markdown())
    print(f"report written to {report_dir}")
    if args.out:
        write_text_atomic(args.out, json.dumps(asdict(report), indent=1))
        print(f"results written to {args.out}")
    return 0


def _evaluate_bridge(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from genflow.bridge.recipe import evaluate_bridge_run
    from genflow.io import write_text_atomic
    from genflow.outputs import check_writable_folder

    if args.solvers:
        raise ConfigError(f"{args.checkpoint} is a bridge run: it samples no images, so --solvers does not apply")
    report_dir = Path(args.report_dir) if args.report_dir else Path(args.checkpoint) / "eval"
    check_writable_folder(report_dir, "--report-dir")
    if args.out:
        check_writable_file(args.out, "--out")
    reports = evaluate_bridge_run(args.checkpoint, out_dir=report_dir)
    for kind, report in reports.items():
        print(f"## {kind.replace('_', '-')} bridges\n\n{report.markdown()}\n")
    print(f"report written to {report_dir}")
    if args.out:
        write_text_atomic(args.out, json.dumps({k: asdict(r) for k, r in reports.items()}, indent=1))
        print(f"results written to {args.out}")
    return 0


def _evaluate_robustness(args: argparse.Namespace) -> int:
    from genflow.io import write_text_atomic
    from genflow.outputs import check_writable_folder
    from genflow.robustness.run import evaluate_run_robustness, parse_budgets

    report_dir = Path(args.report_dir) if args.report_dir else Path(args.checkpoint) / "robustness"
    check_writable_folder(report_dir, "--report-dir")
    if args.out:
        check_writable_file(args.out, "--out")
    attacks = [a.strip() for a in args.attacks.split(",")]
    settings = _json_argument(args.attack_settings, "--attack-settings", dict)
    report = evaluate_run_robustness(
        args.checkpoint, epsilons=parse_budgets(args.epsilons), norm=args.norm, attacks=attacks,
        images=args.images, repeats=args.repeats, draws=args.draws, settings=settings, seed=args.seed,
        out_dir=report_dir,
    )  # fmt: skip
    print(report.markdown())
    print(f"report written to {report_dir}")
    if args.out:
        write_text_atomic(args.out, json.dumps({"protocol": report.protocol, **report.summary()}, indent=1))
        print(f"results written to {args.out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from genflow.io import write_text_atomic
    from genflow.metrics import digits_fd_floor
    from genflow.pipeline import checkpoint_step, load_trained, solver_from
    from genflow.recipe import check_solver_spec

    _import_run_plugins(args.checkpoint)  # a plugin's classifier is known before the run's kind is read
    if _is_classifier_run(args.checkpoint):
        return _evaluate_classifier(args)
    from genflow.bridge.recipe import is_bridge_run

    if is_bridge_run(args.checkpoint):
        return _evaluate_bridge(args)

    if args.robustness:
        checkpoint_step(args.checkpoint)  # a missing checkpoint is named as such (CheckpointError), not as a wrong kind
        raise ConfigError(f"--robustness attacks a classifier or ensemble run; {args.checkpoint} is not one")
    check_fd_sample_count(args.n, "--n")
    if args.solvers:
        solvers = _json_argument(args.solvers, "--solvers", list)
        for i, spec in enumerate(solvers):
            check_solver_spec(spec, f"--solvers[{i}]")
    else:
        solvers = _default_solvers(args.checkpoint)
    for spec in solvers:
        solver_from(spec)
    if args.out:
        check_writable_file(args.out, "--out")
    step = checkpoint_step(args.checkpoint)
    policy = _exit_policy(args.exit, args.checkpoint)
    process, model = load_trained(args.checkpoint)
    rows = evaluate_digits(process, model, solvers, args.n, args.seed, args.batch_size, exit_policy=policy)
    floor = digits_fd_floor(args.n, generator=torch.Generator().manual_seed(args.seed))
    print(f"real-vs-real floor (train vs test, {args.n} images): {floor:.2f}")
    result = {"checkpoint_step": step, "n": args.n, "floor": floor,
              "exit": None if policy is None else policy.to_config(),
              "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]}  # fmt: skip
    if args.out:
        write_text_atomic(args.out, json.dumps(result, indent=1))
        print(f"results written to {args.out}")
    return 0


# ---------------------------------------------------------------------------------------- parser
EXIT_HELP = (
    "early exit: a registered exit policy, with arguments as a JSON object (e.g. 'linear:{\"start\": 1, "
    "\"end\": 0.5}'), or a .json file holding a policy config (default: the run recipe's sample.exit, else every block)"
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``genflow`` command."""
    parser = argparse.ArgumentParser(
        prog="genflow",
        description="genflow: fast generative-model inference on one ODE/SDE layer. Exit status: 0 success, "
        "2 bad input or a refused action (one line on stderr), 130 interrupted (Ctrl-C).",
    )
    plugin_help = "import this module (a name on PYTHONPATH, or a .py file) first, so its registered components " \
        "can be named (repeatable)"  # fmt: skip
    parser.add_argument("--plugin", action="append", default=None, metavar="MODULE", help=plugin_help)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--plugin", action="append", default=None, dest="command_plugins", metavar="MODULE",
                        help=plugin_help)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="train a small DiT on the bundled digits, sample it with four solvers, write a report",
        description="Train a DiT with denoising score matching on scikit-learn's 8x8 digits, sample it with DDPM, "
        "DDIM, DPM-Solver++ and dopri5, measure digits FD, and write OUT/report.md with a sample grid "
        "and one report section a method: early exit, reflow, bridges, distillation, purification "
        "(about 4.5 minutes on 2 idle CPU cores; --quick under a minute).",
    )
    demo.add_argument("--quick", action="store_true", help="600 training steps instead of 4000 (the recipe has 12000)")
    demo.add_argument("--seed", type=int, default=0, help="seed of training and sampling (default 0)")
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--resume", action="store_true", help="continue the run in OUT/train")
    demo.add_argument("--fresh", action="store_true", help="delete a previous run in OUT/train and start afresh")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE",
        help="override a key of the digits_dit recipe, e.g. --override trainer.steps=2000 (repeatable)",
    )  # fmt: skip
    demo.add_argument(
        "--sections", default="all", metavar="NAMES",
        help="method sections of the report: 'all' (default), 'none', or a comma-separated list of "
        "genflow.demo_sections names",
    )  # fmt: skip
    demo.set_defaults(func=run_demo)

    tr = sub.add_parser(
        "train",
        parents=[common],
        help="train a model (or a classifier, or a deep ensemble) from a recipe",
        description="Train from RECIPE (a shipped recipe name such as digits_dit, or a YAML file). Override any "
        "key as section.key=value (parsed as YAML), e.g. trainer.steps=200 model.depth=2. Resumes from the "
        "latest checkpoint in the output folder. A classifier recipe (digits_classifier, digits_ensemble) "
        "trains through genflow.classify.train_recipe, a bridge recipe (dbn_digits) through "
        "genflow.bridge.train_bridge_recipe.",
    )
    tr.add_argument("recipe", help="shipped recipe name (digits_dit, digits_flow, digits_classifier, ...) or path "
                    "to a YAML file")  # fmt: skip
    tr.add_argument("overrides", nargs="*", help="section.key=value overrides")
    tr.add_argument("--out", default=None, help="output folder (default: the recipe's out_dir)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--tensorboard", action="store_true", help="also write TensorBoard scalars (OUT/tensorboard)")
    tr.set_defaults(func=_cmd_train)

    sa = sub.add_parser(
        "sample",
        parents=[common],
        help="sample a trained checkpoint with any solver",
        description="Load CHECKPOINT (a step-XXXXXXXX folder or a run folder: its latest), sample it with the "
        "registered solver NAME (EMA weights), and write a PNG grid and/or the samples as safetensors.",
    )
    sa.add_argument("checkpoint")
    sa.add_argument("--solver", default="dpm_solver_pp", help="registered solver name (default dpm_solver_pp)")
    sa.add_argument("--solver-args", default="{}", help="solver arguments as JSON, e.g. '{\"order\": 3}'")
    sa.add_argument("--steps", type=int, default=20, help="grid steps (default 20)")
    sa.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    sa.add_argument("--batch-size", type=int, default=None, help="generate in chunks of this size")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--out", default="samples.png", help="PNG grid to write ('' for none)")
    sa.add_argument("--save", default=None, help="also write the samples to this .safetensors file")
    sa.add_argument("--exit", default=None, metavar="POLICY[:ARGS]", help=EXIT_HELP)
    sa.set_defaults(func=_cmd_sample)

    ev = sub.add_parser(
        "evaluate",
        parents=[common],
        help="digits FD of a trained digits checkpoint per solver, with the real-vs-real floor; or a classifier "
        "run's uncertainty metrics",
        description="Sample CHECKPOINT with each solver (default: the digits_dit recipe's list) and report digits "
        "FD against the real test split, next to the train-vs-test floor at the same sample count. A classifier "
        "or ensemble run (genflow train digits_classifier / digits_ensemble) is evaluated on the digits "
        "uncertainty protocol instead (genflow.classify.evaluate_run): accuracy, NLL, Brier and ECE, clean "
        "and shifted, printed as a markdown table; so is a bridge run (genflow train dbn_digits; "
        "genflow.bridge.evaluate_bridge_run).",
    )
    ev.add_argument("checkpoint")
    ev.add_argument(
        "--solvers", default=None, help='JSON list of solver specs, e.g. \'[{"name": "ddim", "steps": 50}]\''
    )
    ev.add_argument("--n", type=int, default=368, help="samples per solver (default 368, the test split size)")
    ev.add_argument("--batch-size", type=int, default=512)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", default=None, help="write the results as JSON here")
    ev.add_argument("--report-dir", default=None, help="classifier runs: folder for metrics.md, metrics.json and "
                    "the reliability diagrams (default RUN/eval)")  # fmt: skip
    ev.add_argument("--exit", default=None, metavar="POLICY[:ARGS]", help=EXIT_HELP)
    rob = ev.add_argument_group("robustness (classifier runs; genflow.robustness, see docs/robustness.md)")
    rob.add_argument("--robustness", action="store_true", help="attack the classifier or ensemble run with "
                     "torchattacks presets and report clean and robust accuracy (a table, robustness.json and an "
                     "accuracy-vs-budget plot in --report-dir, default RUN/robustness)")  # fmt: skip
    rob.add_argument("--attacks", default="blind_pgd,pgd_eot,apgd_eot,square",
                     help="comma-separated presets (blind_pgd, bpda_eot, pgd_eot, apgd_eot, autoattack, "
                     "autoattack_rand, square); default blind_pgd,pgd_eot,apgd_eot,square")  # fmt: skip
    rob.add_argument("--norm", default="Linf", choices=["Linf", "L2"])
    rob.add_argument("--epsilons", default="8/255,16/255,32/255", help="comma-separated budgets, fractions allowed "
                     "(default 8/255,16/255,32/255)")  # fmt: skip
    rob.add_argument("--images", type=int, default=100, help="balanced digits test images (multiple of 10)")
    rob.add_argument("--repeats", type=int, default=1, help="re-evaluations with fresh defence noise (default 1)")
    rob.add_argument("--draws", type=int, default=1, help="defence draws averaged per re-evaluation (default 1)")
    rob.add_argument("--attack-settings", default="{}", help='per-preset overrides as JSON, e.g. '
                     '\'{"apgd_eot": {"steps": 20}, "*": {"eot_draws": 4}}\'')  # fmt: skip
    ev.set_defaults(func=_cmd_evaluate)

    from genflow.reflow.command import add_reflow_parser

    add_reflow_parser(sub, common)  # genflow reflow pairs
    return parser


def _interrupted(args: argparse.Namespace) -> str:
    """Where an interrupted command leaves its run."""
    from genflow.classify import member_dirs
    from genflow.train.checkpoint import latest_checkpoint

    run_dir = getattr(args, "run_dir", None)
    if run_dir is None:
        return "interrupted"
    members = member_dirs(run_dir)  # an ensemble: the member trained last
    run_dir = next((m for m in reversed(members) if latest_checkpoint(m) is not None), run_dir)
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return f"interrupted; no checkpoint was saved in {run_dir}"
    return f"interrupted; the last checkpoint is {latest} (run the same command again to resume from it)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genflow`` console script.

    Returns:
        The exit status: 0, ``EXIT_ERROR`` (2) for bad input, ``EXIT_INTERRUPTED`` (130) for Ctrl-C.
    """
    from genflow.plugins import import_plugins

    args = build_parser().parse_args(argv)
    try:
        import_plugins([*(args.plugin or []), *(args.command_plugins or [])])
        return args.func(args)
    except GenflowError as err:  # bad input: a short message, not a traceback
        message = " ".join(str(err).split())  # one line, whatever the message holds (e.g. a YAML error's context)
        print(f"genflow {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"genflow {args.command}: {_interrupted(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
