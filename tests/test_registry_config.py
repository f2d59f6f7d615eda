"""Registries, configs and boundary validation."""

from __future__ import annotations

import pytest
import torch

import genflow as gf
from genflow.errors import (
    ComponentError,
    ConfigError,
    DTypeError,
    GeneratorRequiredError,
    RegistryError,
    ShapeError,
    TimeGridError,
    TimeRangeError,
    UnknownComponentError,
)
from genflow.testing import GaussianMixture, GaussianMixtureScore


def test_registry_lists_and_creates():
    assert {"euler", "rk4", "dopri5", "euler_maruyama", "srk", "ddpm", "ddim", "dpm_solver_pp"} <= set(
        gf.SOLVERS.names()
    )
    assert gf.SOLVERS.names("dpm*") == ["dpm_solver_pp"]
    solver = gf.SOLVERS.create("dopri5", rtol=1e-6, atol=1e-8)
    assert isinstance(solver, gf.Dopri5) and solver.rtol == 1e-6
    assert "dopri5" in gf.SOLVERS and len(gf.SOLVERS) >= 15


def test_unknown_name_lists_known_ones():
    with pytest.raises(UnknownComponentError, match="unknown solver 'rk45'.*dopri5"):
        gf.SOLVERS.create("rk45")


def test_unknown_keyword_lists_accepted_ones():
    with pytest.raises(TypeError, match=r"Dopri5\(\): .*accepted arguments: rtol, atol, adjoint"):
        gf.SOLVERS.create("dopri5", tol=1e-3)


def test_registering_twice_or_abstract_fails():
    with pytest.raises(RegistryError, match="already registered"):
        gf.SOLVERS.register("rk4")(gf.Euler)
    with pytest.raises(RegistryError, match="abstract"):
        gf.SOLVERS.register("abstract_solver")(gf.Solver)
    with pytest.raises(RegistryError, match="subclasses of Solver"):
        gf.SOLVERS.register("not_a_solver")(int)

    class NoKind(gf.Solver):
        def field_from(self, denoiser):
            return denoiser.velocity

        def _solve(self, field, x, ts, *, generator):
            return x, None, 0

    with pytest.raises(RegistryError, match="must declare kind, a short family name such as 'ode'; got None"):
        gf.SOLVERS.register("no_kind")(NoKind)
    assert "no_kind" not in gf.SOLVERS


def test_randomness_needs_an_explicit_generator():
    x, ts = torch.zeros(2, 2), torch.linspace(1.0, 0.0, 3)
    from genflow.testing import OrnsteinUhlenbeck

    with pytest.raises(GeneratorRequiredError, match="EulerMaruyama.solve"):
        gf.EulerMaruyama().solve(OrnsteinUhlenbeck(), x, ts)
    with pytest.raises(GeneratorRequiredError, match="VPProcess.prior"):
        gf.VPProcess().prior((2, 2), None)
    with pytest.raises(GeneratorRequiredError, match="GaussianMixture.sample"):
        GaussianMixture.isotropic([1.0], torch.zeros(1, 2), 1.0).sample(3, None)
    # deterministic solvers need none
    assert gf.RK4().solve(lambda x, t: -x, x, ts).nfe == 8


def test_from_config_checks_the_name():
    with pytest.raises(ConfigError, match="'dopri5'"):
        gf.Dopri5.from_config({"name": "rk4"})
    with pytest.raises(ConfigError, match="'name' key"):
        gf.SOLVERS.from_config({"rtol": 1.0})


@pytest.mark.parametrize("name", gf.TIME_GRIDS.names())
def test_grid_config_round_trip(name):
    grid = gf.TIME_GRIDS.create(name)
    clone = gf.TIME_GRIDS.from_config(grid.to_config())
    assert torch.equal(grid(gf.VPProcess(), 10), clone(gf.VPProcess(), 10))


def test_model_config_round_trip():
    mixture = GaussianMixture.isotropic([0.5, 0.5], torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), 0.3)
    model = GaussianMixtureScore(mixture, gf.VEProcess(), "v")
    clone = gf.MODELS.from_config(model.to_config())
    x, t = torch.randn(4, 2, dtype=torch.float64), torch.full((4,), 0.5, dtype=torch.float64)
    assert torch.equal(model(x, t), clone(x, t))


def test_class_instead_of_instance_is_caught():
    process = gf.VPProcess()
    model = GaussianMixtureScore(GaussianMixture.isotropic([1.0], torch.zeros(1, 2), 1.0), process)
    with pytest.raises(ComponentError, match=r"got the class DDIM itself \(did you mean DDIM\(\)\?\)"):
        gf.Sampler(process, model, gf.DDIM)
    with pytest.raises(ComponentError, match="class VPProcess"):
        gf.Sampler(gf.VPProcess, model, gf.DDIM())
    with pytest.raises(ComponentError, match="GaussianProcess; got BrownianBridge"):
        gf.Sampler(gf.BrownianBridge(), model, gf.DDIM())


@pytest.mark.parametrize(
    "ts,error,match",
    [
        ([[0.0, 1.0]], TimeGridError, "1-D"),
        ([], TimeGridError, "non-empty"),
        ([0.0, 0.5, 0.3], TimeGridError, "strictly increasing or strictly decreasing"),
        ([0.0, 0.5, 0.5], TimeGridError, "strictly"),
        ([0.0, float("nan")], TimeGridError, "finite"),
        ([0.0, 1.5], TimeRangeError, r"\[0, 1\]"),
        ([-0.1, 0.5], TimeRangeError, r"got values in \[-0.1, 0.5\]"),
    ],
)
@pytest.mark.parametrize("name", ["rk4", "euler_maruyama", "ddim"])
def test_bad_time_grids(ts, error, match, name):
    with pytest.raises(error, match=match):
        gf.SOLVERS.create(name).solve(lambda x, t: x, torch.zeros(2, 2), ts)


@pytest.mark.parametrize("name", ["rk4", "euler_maruyama", "ddim"])
def test_bad_states(name):
    solver = gf.SOLVERS.create(name)
    with pytest.raises(DTypeError, match="floating-point.*torch.int64"):
        solver.solve(lambda x, t: x, torch.zeros(2, 2, dtype=torch.long), [0.0, 1.0])
    with pytest.raises(DTypeError, match="got list"):
        solver.solve(lambda x, t: x, [1.0, 2.0], [0.0, 1.0])
    with pytest.raises(ShapeError, match=r"got shape \(\)"):
        solver.solve(lambda x, t: x, torch.tensor(1.0), [0.0, 1.0])


def test_errors_are_builtin_subclasses():
    assert issubclass(ShapeError, ValueError) and issubclass(ComponentError, TypeError)
    assert issubclass(UnknownComponentError, LookupError)


# ------------------------------------------------------------------ unknown keywords and nested configs
def test_unknown_keyword_is_a_typed_error_naming_it_and_the_accepted_ones():
    from genflow.errors import UnknownArgumentError

    with pytest.raises(UnknownArgumentError) as info:
        gf.SOLVERS.create("dopri5", tolerance_typo=1e-3)
    message = str(info.value)
    assert "'tolerance_typo'" in message and "accepted arguments: rtol, atol, adjoint" in message
    assert isinstance(info.value, TypeError) and isinstance(info.value, ConfigError)
    cases = [(gf.PROCESSES, "vp", {"beta_mim": 1.0}), (gf.MODELS, "mlp", {"width": 3}),
             (gf.OBJECTIVES, "dsm", {"proces": "vp"}), (gf.TIME_GRIDS, "karras", {"r": 2})]  # fmt: skip
    for registry, name, bad in cases:
        with pytest.raises(UnknownArgumentError, match=repr(next(iter(bad)))):
            registry.create(name, **bad)
        with pytest.raises(UnknownArgumentError, match=repr(next(iter(bad)))):
            registry.from_config({"name": name, **bad})
    with pytest.raises(UnknownArgumentError, match=r"takes 5 positional argument\(s\); got 6"):
        gf.Dopri5(1e-3, 1e-3, False, 100, False, 4)
    for name in gf.SOLVERS.names():  # families dispatching to a leaf in __new__ (ddim, dpm_solver_pp) too
        with pytest.raises(UnknownArgumentError, match="'tolerance_typo'"):
            gf.SOLVERS.create(name, tolerance_typo=1e-3)
    with pytest.raises(UnknownArgumentError, match=r"DDIM\(\) takes 1 positional argument\(s\); got 2"):
        gf.DDIM(0.5, 1)


def test_missing_argument_is_named():
    from genflow.errors import MissingArgumentError

    with pytest.raises(MissingArgumentError, match="'mixture', 'process'"):
        GaussianMixtureScore()


def test_nested_components_are_rebuilt_by_registry_name_at_any_depth():
    from genflow.config import Configurable

    class Pair(gf.Objective):  # an objective holding an objective (that holds a process): depth 2
        config_components = {"inner": "objective", "others": "process"}

        def __init__(self, inner: gf.Objective, others: list[gf.Process] = (), scale: float = 1.0) -> None:
            self.inner, self.others, self.scale = inner, list(others), scale

        def draw(self, *args, **kwargs):
            return self.inner.draw(*args, **kwargs)

        def loss(self, *args, **kwargs):
            return self.scale * self.inner.loss(*args, **kwargs)

    gf.OBJECTIVES.register("test_pair")(Pair)
    try:
        pair = Pair(gf.DenoisingScoreMatching(gf.VEProcess(0.02, 30.0), weighting="min_snr"), [gf.SubVPProcess(0.2)])
        config = pair.to_config()
        assert config["inner"]["process"] == {"name": "ve", "sigma_min": 0.02, "sigma_max": 30.0}
        clone = gf.OBJECTIVES.from_config(config)
        assert isinstance(clone.inner.process, gf.VEProcess) and clone.inner.process.sigma_max == 30.0
        assert isinstance(clone.others[0], gf.SubVPProcess) and clone.to_config() == config
        by_name = gf.OBJECTIVES.from_config({"name": "test_pair", "inner": "flow_matching", "others": ["ve"]})
        assert isinstance(by_name.inner, gf.FlowMatching) and isinstance(by_name.others[0], gf.VEProcess)
        with pytest.raises(ConfigError, match="expected a process config dict or name; got int"):
            gf.OBJECTIVES.from_config({"name": "test_pair", "inner": "flow_matching", "others": [3]})
    finally:
        gf.OBJECTIVES._entries.pop("test_pair")

    class Undeclared(Configurable):
        def __init__(self, process: gf.Process) -> None:
            self.process = process

    with pytest.raises(ConfigError, match="does not declare the argument in config_components"):
        Undeclared(gf.VPProcess()).to_config()


def test_registry_families_are_reachable_by_name():
    from genflow.registry import registries, registry_for

    assert registry_for("process") is gf.PROCESSES and registry_for("solver") is gf.SOLVERS
    assert {"process", "solver", "time grid", "model", "objective", "dataset"} <= set(registries())
    with pytest.raises(UnknownComponentError, match="unknown registry family 'procss'"):
        registry_for("procss")
    with pytest.raises(RegistryError, match="already exists"):
        gf.Registry("process", gf.Process)


def test_importing_genflow_testing_registers_nothing():
    import subprocess
    import sys

    code = "import genflow, genflow.testing as t; print('gaussian_mixture_score' in genflow.MODELS)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert gf.MODELS.get("gaussian_mixture_score") is GaussianMixtureScore  # tests/conftest.py asks for it
