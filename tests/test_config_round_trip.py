"""Config round trips over every entry of every registry, built with non-default arguments.

A default-built instance cannot reveal an argument that ``to_config`` or
``from_config`` drops, so ``CASES`` holds, per family and registered name, the
keyword arguments of one or more builds that together set every constructor
argument away from its default (``EXEMPT`` names the few that cannot be, with the
reason). The round trip must give identical outputs, not just equal dicts:
``OUTPUTS`` computes what each family produces (marginals, grids, samples, model
outputs, losses, datasets). A newly registered class, a new constructor argument
or a new registry family without an entry here fails ``test_every_entry_has_cases``. Classes that genflow does
not ship (a user's plugin, a documentation example, a test's own class) are not its business.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest
import torch

import genflow as gf
from genflow.registry import registries
from genflow.testing import GaussianMixture, GaussianMixtureScore
from tests.data.test_images import fake_cifar, image_root, trust_fake  # noqa: F401  (fixtures)
from tests.distill.fixtures import TEACHER_MODEL, teacher_run  # noqa: F401  (fixture)
from tests.reflow.test_cli import pair_shards  # noqa: F401  (fixture)

Kwargs = Callable[[dict[str, Any]], dict[str, Any]]  # fixtures -> constructor arguments


def _tiny_ncsn() -> gf.ScoreModel:
    return gf.model.NoiseConditionalScoreNet([1, 4, 4], gf.VEProcess(0.02, 3.0), hidden_size=8, depth=1)


def _bridge_member() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return gf.classify.CifarResNet(num_classes=3, in_chans=1, image_size=4, depth=8, width=4)


def _mixture() -> GaussianMixture:
    return GaussianMixture.isotropic([0.3, 0.7], torch.tensor([[1.0, -0.5], [-1.0, 0.5]]), [0.4, 0.6])


CASES: dict[str, dict[str, list[Kwargs]]] = {
    "process": {
        "vp": [
            lambda f: {"beta_min": 0.05, "beta_max": 12.0},
            lambda f: {"schedule": "cosine", "cosine_offset": 0.02},
            lambda f: {"schedule": "discrete", "betas": torch.linspace(1e-3, 0.05, 40).tolist()},
        ],
        "ve": [lambda f: {"sigma_min": 0.02, "sigma_max": 20.0}],
        "subvp": [lambda f: {"beta_min": 0.2, "beta_max": 12.0}],
        "linear_interpolant": [lambda f: {}],
        "brownian_bridge": [lambda f: {"beta": 0.3}],
    },
    "time grid": {
        "uniform": [lambda f: {}],
        "quadratic": [lambda f: {}],
        "logsnr": [lambda f: {}],
        "karras": [lambda f: {"rho": 3.0}],
        "segments": [lambda f: {"segments": [1.0, 0.3, 0.0]}, lambda f: {"segments": gf.SegmentSpec.uniform(3)}],
    },
    "solver": {
        **{name: [lambda f: {"step_size": 0.07, "adjoint": True}] for name in ("euler", "midpoint", "heun", "rk4")},
        **{
            name: [lambda f: {"rtol": 1e-3, "atol": 1e-4, "adjoint": True, "max_steps": 500, "progress": True}]
            for name in ("dopri5", "bosh3", "adaptive_heun", "dopri8")
        },
        **{name: [lambda f: {}] for name in ("euler_maruyama", "milstein", "srk", "reversible_heun", "ddpm")},
        "ddim": [lambda f: {"eta": 0.5}],
        "dpm_solver_pp": [lambda f: {"order": 3, "lower_order_final": False}],
        "edm_heun": [lambda f: {}],
        **{
            name: [
                lambda f: {"segments": [1.0, 0.4, 0.0], "step_size": 0.1},
                lambda f: {"segments": gf.SegmentSpec.uniform(2)},  # a spec instance is stored as its boundaries
            ]
            for name in ("segment_euler", "segment_heun")
        },
    },
    "model": {
        **{
            name: [
                lambda f: {"image_size": 4, "patch_size": 1, "in_channels": 2, "hidden_size": 8, "depth": 3,
                           "num_heads": 2, "mlp_ratio": 2.0, "num_classes": 3, "class_dropout": 0.25,
                           "parameterization": "v"}  # fmt: skip
            ]
            for name in ("dit", "uvit")
        },
        "mlp": [lambda f: {"dim": 3, "hidden_size": 16, "depth": 2, "parameterization": "x0"}],
        "energy_mlp": [lambda f: {"event_shape": [3], "hidden_size": 16, "depth": 3, "parameterization": "eps"}],
        "ncsn": [lambda f: {"event_shape": [2, 4, 4], "process": gf.VEProcess(0.02, 3.0), "hidden_size": 8,
                            "depth": 2}],  # fmt: skip
        "energy_conv": [lambda f: {"event_shape": [2, 4, 4], "process": gf.VEProcess(0.02, 3.0), "hidden_size": 8,
                                   "depth": 2}],  # fmt: skip
        "gaussian_mixture_score": [
            lambda f: {"mixture": _mixture(), "process": gf.VEProcess(0.02, 20.0), "parameterization": "x0"}
        ],
        "segment_conditioned": [
            lambda f: {"backbone": gf.MLPScoreNet(dim=3, hidden_size=16, depth=1, parameterization="velocity"),
                       "segments": [1.0, 0.4, 0.0], "time_embedding": "time_embed.mlp"}  # fmt: skip
        ],
    },
    "classifier": {
        "cifar_resnet": [lambda f: {"num_classes": 7, "in_chans": 2, "image_size": 12, "depth": 14, "width": 6}],
        "timm": [
            lambda f: {"arch": "resnet10t", "num_classes": 5, "in_chans": 3, "image_size": 20, "feature_index": 2,
                       "model_args": {"drop_rate": 0.0, "stem_width": 8}}  # fmt: skip
        ],
        "batch_ensemble": [
            lambda f: {"base": gf.classify.CifarResNet(num_classes=4, image_size=6, width=4), "members": 3,
                       "init": "normal"}  # fmt: skip
        ],
    },
    "perturbation": {
        "none": [lambda f: {}],
        "gaussian": [lambda f: {"sigma": 0.2}],
        **{name: [lambda f: {"step": 0.2, "temperature": 2.0, "norm": "linf"}] for name in ("ods", "confods")},
    },
    "exit policy": {
        "full": [lambda f: {}],
        "staircase": [lambda f: {"depths": [8, 6, 3]}, lambda f: {"fractions": [1.0, 0.5], "edges": [0.0, 0.7, 1.0]}],
        "linear": [lambda f: {"start": 0.9, "end": 0.25}],
        "table": [lambda f: {"depths": [2, 8, 5], "num_blocks": 8, "edges": [0.0, 0.2, 0.5, 1.0]}],
        "calibrated": [
            lambda f: {"depths": [8, 5, 2], "num_blocks": 8, "edges": [0.0, 0.3, 0.6, 1.0], "budget": 0.6,
                       "errors": torch.linspace(1.0, 0.0, 27).reshape(3, 9).tolist(), "scale": "x0"}  # fmt: skip
        ],
    },
    "held_network": {
        "held_network": [lambda f: {"module": gf.MLPScoreNet(dim=3, hidden_size=8, depth=1)}],
    },
    "bridge": {
        "dbn": [
            lambda f: {"source": _bridge_member(), "process": gf.BrownianBridge(0.02), "steps": 4, "widths": [6, 8],
                       "blocks": 2, "expansion": 3, "embed_dim": 12, "temperature_low": 1.5,
                       "temperature_spread": 0.2, "seed": 3}  # fmt: skip
        ],
    },
    "objective": {
        "dsm": [
            lambda f: {"process": gf.VEProcess(0.02, 20.0), "weighting": "min_snr", "min_snr_gamma": 3.0,
                       "t_min": 0.05, "t_max": 0.9},  # fmt: skip
            lambda f: {"cond_field": "label"},  # class-conditional DSM (named batches)
            lambda f: {"process": gf.VEProcess(0.02, 20.0), "weighting": "sigma2"},
        ],
        "flow_matching": [lambda f: {}, lambda f: {"cond_field": "label"}],
        "early_exit_dsm": [
            lambda f: {"policy": gf.StaircaseExit(fractions=[1.0, 0.5]), "process": gf.VEProcess(0.02, 20.0),
                       "weighting": "min_snr", "min_snr_gamma": 3.0, "t_min": 0.05, "t_max": 0.9},  # fmt: skip
            lambda f: {"policy": "full", "cond_field": "label", "freeze_time_embedding": True},
        ],
        "cross_entropy": [lambda f: {"label_smoothing": 0.1, "pad": 2, "flip": True}],
        "ensemble_distillation": [
            lambda f: {"teachers": f["teacher_run"], "perturbation": gf.distill.ConfODSPerturbation(step=0.3),
                       "alpha": 0.5, "temperature": 2.0, "pad": 2}  # fmt: skip
        ],
        "pgd_at": [
            lambda f: {"epsilon": 0.1, "step_size": 0.04, "steps": 2, "norm": "L2", "clean_weight": 0.3, "pad": 2,
                       "flip": True},  # fmt: skip
        ],
        "reflow": [lambda f: {"distill": True}],
        "bridge_matching": [lambda f: {"random_temperature": False}],
        "bridge_distillation": [lambda f: {"random_temperature": True}],
        "seqrf": [lambda f: {"distill": True}],
    },
    "purifier": {
        "score": [
            lambda f: {"model": _tiny_ncsn(), "process": gf.VEProcess(0.02, 3.0), "sigma_inj": 0.2, "score_sigma": 0.3,
                       "max_steps": 4, "delta": 2e-3, "step_scale": 0.5, "min_step": 1e-4, "max_step": 0.2,
                       "stop_step": 1e-2, "surrogate_steps": 3, "value_range": "generation", "checkpoint": True,
                       "gradient_mode": "surrogate"},  # fmt: skip
        ],
        "diffusion": [
            lambda f: {"model": _tiny_ncsn(), "process": gf.VEProcess(0.02, 3.0), "solver": gf.SOLVERS.create("heun"),
                       "t_star": 0.4, "steps": 3, "surrogate_steps": 2, "t_end": 0.05, "grid": "uniform",
                       "denoise_final": False, "value_range": "generation", "checkpoint": True,
                       "gradient_mode": "surrogate"},  # fmt: skip
        ],
    },
    "dataset": {
        "digits": [lambda f: {"split": "val", "size": 16, "value_range": "classification", "seed": 1}],
        "digits_corrupted": [
            lambda f: {"kind": "blur", "severity": 3, "split": "val", "size": 16, "value_range": "generation"}
        ],
        "toy2d": [lambda f: {"name": "spirals", "n": 11}],
        "cifar10": [lambda f: {"root": f["trust_fake"][0], "train": False, "value_range": "classification"}],
        "image_folder": [lambda f: {"root": f["image_root"], "size": 5, "value_range": "classification",
                                    "grayscale": True}],  # fmt: skip
        "reflow_pairs": [lambda f: {"directory": f["pair_shards"]}],
    },
}

EXEMPT: dict[tuple[str, str], dict[str, str]] = {
    ("dataset", "cifar10"): {"download": "True would fetch 163 MB; tests never download"},
}
FIXTURES = {
    ("dataset", "cifar10"): ["trust_fake"],
    ("dataset", "image_folder"): ["image_root"],
    ("dataset", "reflow_pairs"): ["pair_shards"],
    ("objective", "ensemble_distillation"): ["teacher_run"],
}


def _batch(seed: int, shape: tuple[int, ...] = (2,), n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g), 0.1 + 0.8 * torch.rand(n, generator=g)


def _process_outputs(process: gf.Process) -> list[torch.Tensor]:
    x0, t = _batch(0)
    x1 = _batch(1)[0] if isinstance(process, gf.BrownianBridge) else None
    return list(process.marginal(x0, t, x1=x1))


def _grid_outputs(grid: gf.TimeGrid) -> list[torch.Tensor]:
    return [grid(gf.VPProcess(), 7), grid(gf.VEProcess(), 5)]


def _solver_outputs(solver: gf.Solver) -> list[torch.Tensor]:
    process = gf.VPProcess()
    model = GaussianMixtureScore(_mixture(), process)
    grid = gf.SegmentGrid(solver.segments) if hasattr(solver, "segments") else None  # restarts at its boundaries
    out = gf.Sampler(process, model, solver, grid=grid).sample(
        (8, 2), 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    return [out.samples]


def _model_outputs(model: gf.ScoreModel, clone: gf.ScoreModel) -> list[torch.Tensor]:
    clone.load_state_dict(model.state_dict())  # the weights are not part of the config
    shape = tuple(model.event_shape) if getattr(model, "event_shape", None) else (2,)
    x, t = _batch(4, shape, n=3)
    x = x.to(torch.float64) if isinstance(model, GaussianMixtureScore) else x
    config = model.to_config()
    cond = {"cond": torch.tensor([0, 2, 1])} if config.get("num_classes") else {}
    return [m.eval()(x, t.to(x.dtype), **cond) for m in (model, clone)]


def _classifier_outputs(model: torch.nn.Module, clone: torch.nn.Module) -> list[torch.Tensor]:
    clone.load_state_dict(model.state_dict())  # the weights are not part of the config
    x = torch.rand((3, model.in_chans, model.image_size, model.image_size), generator=torch.Generator().manual_seed(4))
    return [m.eval()(x) for m in (model, clone)]


def _held_outputs(held: Any, clone: Any) -> list[torch.Tensor]:
    clone.module.load_state_dict(held.module.state_dict())  # by value: the weights live in the trainer's checkpoint
    x, t = _batch(4, (3,), n=3)
    return [h(x, t) for h in (held, clone)]


def _purifier_outputs(purifier: Any, clone: Any) -> list[torch.Tensor]:
    clone.load_state_dict(purifier.state_dict())  # the model's weights are not part of the config
    shape = purifier.image_shape or (1, 4, 4)
    x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(4))
    return [p.eval().purify(x, torch.Generator().manual_seed(5)) for p in (purifier, clone)]


def _bridge_outputs(bridge: Any, clone: Any) -> list[torch.Tensor]:
    clone.load_state_dict(bridge.state_dict())  # the bridge network's weights are not part of the config
    clone.source.module.load_state_dict(bridge.source.module.state_dict())  # nor a member held by value
    for p in [*bridge.network.head.parameters(), *clone.network.head.parameters()]:
        torch.nn.init.constant_(p, 0.1)  # a non-zero head, so the bridge network's output shows
    x = torch.rand((3, 1, 4, 4), generator=torch.Generator().manual_seed(4))
    return [b.eval().predict(x, generator=torch.Generator().manual_seed(5)) for b in (bridge, clone)]


def _perturbation_outputs(perturbation: Any) -> list[torch.Tensor]:
    x = torch.rand((4, 1, 4, 4), generator=torch.Generator().manual_seed(8))
    draws = perturbation.draw(4, (1, 4, 4), 2, 3, torch.Generator().manual_seed(9), dtype=x.dtype, device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same teachers for original and clone
        teachers = [gf.classify.CLASSIFIERS.from_config(dict(TEACHER_MODEL)).eval() for _ in range(2)]
    return [perturbation.perturb(x, teachers, draws)]


def _policy_outputs(policy: Any) -> list[torch.Tensor]:
    schedule = policy.schedule(getattr(policy, "num_blocks", 8))
    return [torch.tensor(schedule.depths), torch.tensor(schedule.edges)]


def _objective_model(objective: gf.Objective, conditional: bool) -> torch.nn.Module:
    """A small model of the kind ``objective`` trains (seeded: original and clone see the same weights)."""
    name = type(objective).registry_name
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if name in ("cross_entropy", "ensemble_distillation", "pgd_at"):
            return gf.classify.CifarResNet(num_classes=3, in_chans=1, image_size=4, depth=8, width=4)
        if name.startswith("bridge_"):
            bridge = gf.bridge.DiffusionBridgeNetwork(_bridge_member(), widths=[4], embed_dim=8)
            torch.nn.init.constant_(bridge.network.head.weight, 0.1)
            return bridge
        if conditional or name == "early_exit_dsm":  # a model that takes labels / exits early
            return gf.DiT(image_size=2, patch_size=1, hidden_size=8, depth=2, num_heads=2,
                          num_classes=3 if conditional else 0, parameterization="velocity")  # fmt: skip
        mlp = gf.MLPScoreNet(dim=2, hidden_size=8, depth=2, parameterization="velocity")
        return gf.SegmentConditionedModel(mlp, segments=2) if name == "seqrf" else mlp


def _objective_outputs(objective: gf.Objective) -> list[torch.Tensor]:
    conditional = objective.to_config().get("cond_field") is not None
    model = _objective_model(objective, conditional)
    name = type(objective).registry_name
    x, _ = _batch(5, (1, 2, 2) if conditional or name == "early_exit_dsm" else (2,))
    g = torch.Generator().manual_seed(6)
    if hasattr(type(objective), "fields"):  # the named-batch Objective API
        batch = {"x": x, "label": torch.arange(len(x)) % 3}
        if name in ("cross_entropy", "ensemble_distillation", "pgd_at"):
            batch["x"] = torch.rand((len(x), 1, 4, 4), generator=torch.Generator().manual_seed(5))
        if "cond" in objective.fields:  # bridge pairs: member logits, ensemble log-probabilities, features
            g_pairs = torch.Generator().manual_seed(9)
            batch = {"source": torch.randn(len(x), 3, generator=g_pairs), "target": torch.randn(len(x), 3,
                     generator=g_pairs), "cond": torch.randn(len(x), 4, 4, 4, generator=g_pairs)}  # fmt: skip
        if "start" in objective.fields:  # teacher pairs (reflow): segment ends and times
            segment, bounds = torch.arange(len(x)) % 2, torch.tensor([1.0, 0.5, 0.0])  # the model's 2 segments
            batch = {"start": x, "end": _batch(8)[0], "t_start": bounds[segment], "t_end": bounds[segment + 1],
                     "segment": segment}  # fmt: skip
        draws = objective.draw(len(x), {k: tuple(v.shape[1:]) for k, v in batch.items()}, g, dtype=x.dtype,
                               device="cpu")  # fmt: skip
        return [objective.loss(model, batch, draws)]
    draws = objective.draw(len(x), tuple(x.shape[1:]), g, dtype=x.dtype, device="cpu")
    return [objective.loss(model, x, None, draws)]


def _dataset_outputs(loader: Any) -> list[torch.Tensor]:
    data = loader.load(torch.Generator().manual_seed(7) if loader.takes_generator else None)
    if isinstance(data, torch.Tensor):
        return [data]
    items = [data[i] for i in range(len(data))]
    if isinstance(items[0], dict):  # named fields (reflow pairs)
        return [torch.stack([item[name] for item in items]) for name in items[0]]
    return [torch.stack([item[0] for item in items]), torch.tensor([int(item[1]) for item in items])]


OUTPUTS: dict[str, Callable[..., list[torch.Tensor]]] = {
    "exit policy": _policy_outputs,
    "process": _process_outputs,
    "time grid": _grid_outputs,
    "solver": _solver_outputs,
    "objective": _objective_outputs,
    "perturbation": _perturbation_outputs,
    "dataset": _dataset_outputs,
}

PAIRED: dict[str, Callable[[Any, Any], list[torch.Tensor]]] = {
    "model": _model_outputs,
    "classifier": _classifier_outputs,
    "held_network": _held_outputs,
    "purifier": _purifier_outputs,
    "bridge": _bridge_outputs,
}
"""Families whose weights are not in the config: the clone takes the original's weights, then both run."""


def _params(family: str, name: str) -> list[str]:
    return list(inspect.signature(registries()[family].get(name).__init__).parameters)[1:]


def test_every_entry_has_cases():
    missing = []
    for family, registry in registries().items():
        if family not in CASES or (family not in OUTPUTS and family not in PAIRED):
            missing.append(f"family {family!r}: add it to CASES and OUTPUTS")
            continue
        for name in registry.names():
            if not registry.get(name).__module__.startswith("genflow."):
                continue  # not shipped with genflow
            cases = CASES[family].get(name)
            if not cases:
                missing.append(f"{family} {name!r}: add non-default arguments to CASES")
                continue
            fixtures = {k: None for k in FIXTURES.get((family, name), [])}
            covered = {key for case in cases for key in case(dict.fromkeys(fixtures, (None,)))}
            uncovered = set(_params(family, name)) - covered - set(EXEMPT.get((family, name), {}))
            if uncovered:
                missing.append(f"{family} {name!r}: no case sets {sorted(uncovered)}")
    assert not missing, "; ".join(missing)


ENTRIES = [
    pytest.param(family, name, i, id=f"{family}-{name}-{i}")
    for family, entries in CASES.items()
    for name, cases in entries.items()
    for i in range(len(cases))
]


@pytest.mark.parametrize("family, name, index", ENTRIES)
def test_round_trip_gives_identical_outputs(family, name, index, request):
    registry = registries()[family]
    if name not in registry:
        pytest.skip(f"{name!r} is not registered in this build")
    fixtures = {f: request.getfixturevalue(f) for f in FIXTURES.get((family, name), [])}
    kwargs = CASES[family][name][index](fixtures)
    if set(kwargs) - set(_params(family, name)):
        pytest.skip(f"{name!r} takes no {sorted(set(kwargs) - set(_params(family, name)))} in this build")
    defaults = {p: inspect.signature(registry.get(name).__init__).parameters[p].default for p in kwargs}
    assert all(not _same(kwargs[p], defaults[p]) for p in kwargs), "every argument of a case must be non-default"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(index)
        original = registry.create(name, **kwargs)
    config = original.to_config()
    clone = registry.from_config(json.loads(json.dumps(config)))  # through JSON, as a checkpoint stores it
    assert type(clone) is type(original) and clone.to_config() == config
    if family in PAIRED:
        a, b = PAIRED[family](original, clone)
        assert torch.equal(a, b)
        return
    for a, b in zip(OUTPUTS[family](original), OUTPUTS[family](clone), strict=True):
        assert torch.equal(a, b)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (RuntimeError, TypeError):
        return False
