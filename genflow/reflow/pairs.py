"""Teacher couplings for reflow: generated once and stored as safetensors shards (read by ``PairDataset``).

A pair is one teacher ODE solve across one time segment ``[tau_{k+1}, tau_k]``:
``start = x_{tau_k} = (1 - tau_k) x + tau_k z`` (data ``x``, noise ``z``; with
one segment, ``tau_0 = 1`` and ``start = z``) and ``end = x_hat_{tau_{k+1}}``,
the teacher's state at the segment's data-side end (with one segment, the
teacher's sample). Example ``i`` of the run belongs to segment ``i mod K``.

Shard ``j`` holds examples ``j * shard_size ... (j + 1) * shard_size - 1``;
its randomness comes from a generator seeded by ``(seed, j)`` only, so a run
that was killed and started again writes the same shards as one that never
stopped. Shards are written atomically (a temporary file renamed over the
target), carry their settings' fingerprint in the safetensors metadata, and
are never unpickled. ``manifest.json`` (one per rank under ``torchrun``)
records the teacher's cost: ``teacher_nfe`` (batched field calls) and
``teacher_evaluations`` (per-example network evaluations).

References:
    Liu et al. 2023, "Flow Straight and Fast" (rectified flow), reflow couplings (sec. 2);
    Yoon et al. 2024, "Sequential Flow Straightening for Generative Modeling" (SeqRF), sec. 3 (segment pairs).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from genflow.errors import ComponentError, ConfigError, ShapeError
from genflow.io import atomic_path, write_text_atomic
from genflow.model.base import ScoreModel
from genflow.process.gaussian import GaussianProcess
from genflow.process.interpolant import LinearInterpolant
from genflow.random import standard_normal
from genflow.reflow.errors import PairShardError
from genflow.reflow.sampler import SegmentVelocity
from genflow.reflow.segments import SegmentSpec
from genflow.reflow.shards import FORMAT, read_shard_metadata, shard_path
from genflow.sampling import ModelDenoiser
from genflow.solver.base import SOLVERS, Solver
from genflow.solver.ode import Dopri5
from genflow.validation import check_instance

__all__ = ["PairGenerator", "PairManifest"]


def _digest(tensors: Sequence[Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    return h.hexdigest()


def _shard_seed(seed: int, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:8], "little") & (2**63 - 1)


@dataclass
class PairManifest:
    """What a :meth:`PairGenerator.generate` call leaves on disk (also written as JSON to ``path``)."""

    path: Path
    pairs: int
    shards: list[int]
    teacher_nfe: int
    teacher_evaluations: int


class PairGenerator:
    """Integrates a teacher's probability-flow ODE across segments and stores ``(start, end)`` pairs.

    A segment-aware teacher (a SeqRF model, for its distillation) with the same segments is evaluated
    as segment ``k``'s velocity throughout segment ``k``.

    Args:
        teacher: The teacher :class:`ScoreModel` (any parameterisation the process converts to a velocity).
        process: The process it was trained on; default :class:`LinearInterpolant` (rectified flow).
        solver: An ODE solver, its registered name or config (default ``Dopri5(rtol=1e-4, atol=1e-4)``,
            SeqRF's adaptive RK45).
        segments: A :class:`SegmentSpec`, a number ``K`` of uniform segments, or a list of boundaries;
            1 is full-trajectory reflow (noise to data).
        data: Data ``(N, *event_shape)`` the segment starts are drawn from (needed when ``K > 1``).
        event_shape: Shape of one sample, when no ``data`` is given.
        shard_size: Pairs per shard.
        steps: Uniform grid steps per segment solve (output times only for adaptive solvers).
        seed: Seed of every shard's randomness (with the shard index).
        progress: Show a tqdm bar over shards.

    Raises:
        ComponentError: a solver that does not integrate an ODE, or wrong component types.
        ConfigError: missing ``data`` for ``K > 1``, no event shape, or a bad size.
    """

    def __init__(
        self,
        teacher: ScoreModel,
        process: GaussianProcess | None = None,
        solver: Solver | str | dict | None = None,
        *,
        segments: SegmentSpec | int | Sequence[float] = 1,
        data: Tensor | None = None,
        event_shape: Sequence[int] | None = None,
        shard_size: int = 1024,
        steps: int = 1,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.teacher = check_instance(teacher, ScoreModel, "teacher")
        self.process = check_instance(
            process if process is not None else LinearInterpolant(), GaussianProcess, "process"
        )
        if isinstance(solver, str):
            solver = SOLVERS.create(solver)
        elif isinstance(solver, dict):
            solver = SOLVERS.from_config(solver)
        self.solver = check_instance(solver if solver is not None else Dopri5(rtol=1e-4, atol=1e-4), Solver, "solver")
        if getattr(self.solver, "kind", None) != "ode":
            raise ComponentError(
                f"pairs come from an ODE solve; {type(self.solver).__name__} is a {self.solver.kind} solver"
            )
        self.segments = SegmentSpec.of(segments)
        for name, value in (("shard_size", shard_size), ("steps", steps)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1; got {value!r}")
        if data is not None and (not isinstance(data, Tensor) or data.ndim < 2 or not data.is_floating_point()):
            raise ConfigError(f"data must be a floating tensor (N, *event_shape); got {getattr(data, 'shape', data)!r}")
        if self.segments.num_segments > 1 and data is None:
            raise ConfigError(
                f"{self.segments.num_segments} segments start from noised data: pass data=(N, ...) tensor"
            )
        shape = tuple(data.shape[1:]) if data is not None else (tuple(event_shape) if event_shape else None)
        if not shape:
            raise ConfigError("give data (N, *event_shape) or event_shape")
        if data is not None and event_shape is not None and tuple(event_shape) != shape:
            raise ShapeError(f"event_shape {tuple(event_shape)} differs from the data's {shape}")
        self.data, self.event_shape = data, shape
        self.shard_size, self.steps, self.seed, self.progress = shard_size, steps, int(seed), bool(progress)
        params = list(teacher.state_dict().values())
        self.settings = {
            "format": FORMAT,
            "seed": self.seed,
            "shard_size": shard_size,
            "steps": steps,
            "segments": list(self.segments.boundaries),
            "event_shape": list(shape),
            "solver": self.solver.to_config(),
            "process": self.process.to_config(),
            "teacher": _digest(params),
            "data": None if data is None else _digest([data]),
        }
        self.fingerprint = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()

    def _field(self, k: int) -> Any:
        """The teacher's velocity over segment ``k``; pinned to segment ``k`` for a teacher with the same segments."""
        denoiser = ModelDenoiser(self.process, self.teacher)
        if getattr(self.teacher, "segments", None) == self.segments:
            return SegmentVelocity(denoiser).on_segment(k)
        return denoiser.velocity

    def make_shard(self, index: int) -> tuple[dict[str, Tensor], int, int]:
        """Shard ``index``'s tensors, and its teacher cost ``(nfe, evaluations)`` (nothing is written)."""
        g = torch.Generator().manual_seed(_shard_seed(self.seed, index))
        n, spec = self.shard_size, self.segments
        param = next(iter(self.teacher.parameters()), None)
        dtype = param.dtype if param is not None else torch.float32
        device = param.device if param is not None else torch.device("cpu")
        z = standard_normal((n, *self.event_shape), g, dtype=torch.float64, device="cpu", where="PairGenerator")
        segment = torch.arange(index * n, (index + 1) * n) % spec.num_segments
        bounds = torch.tensor(spec.boundaries, dtype=torch.float64)
        t_start, t_end = bounds[segment], bounds[segment + 1]
        if self.data is None:
            start = z  # one segment: tau_0 = 1, x_1 = z
        else:
            x = self.data[torch.randint(self.data.shape[0], (n,), generator=g)].to(torch.float64)
            tau = t_start.reshape(-1, *([1] * len(self.event_shape)))
            start = (1.0 - tau) * x + tau * z
        end, nfe, evaluations = torch.empty_like(start), 0, 0
        for k in segment.unique().tolist():
            mask = segment == k
            hi, lo = spec.interval(k)
            ts = torch.linspace(hi, lo, self.steps + 1, dtype=torch.float64)
            ts[0], ts[-1] = hi, lo
            with torch.no_grad():
                sol = self.solver.solve(self._field(k), start[mask].to(device, dtype), ts.to(device, dtype))
            end[mask] = sol.x.to("cpu", torch.float64)
            nfe, evaluations = nfe + sol.nfe, evaluations + sol.nfe * int(mask.sum())
        tensors = {
            "start": start.float(), "end": end.float(), "t_start": t_start.float(), "t_end": t_end.float(),
            "segment": segment,
        }  # fmt: skip
        return tensors, nfe, evaluations

    def _existing(self, path: Path, index: int) -> dict[str, str] | None:
        if not path.exists():
            return None
        meta = read_shard_metadata(path)
        if meta.get("fingerprint") != self.fingerprint or meta.get("index") != str(index):
            raise PairShardError(
                f"{path} was made with other settings (fingerprint {meta.get('fingerprint', '?')[:12]}, "
                f"expected {self.fingerprint[:12]}: another teacher, data, solver, seed or size); "
                "write to a new folder or delete the old shards"
            )
        return meta

    def generate(
        self, directory: str | os.PathLike[str], shards: int, *, rank: int = 0, world_size: int = 1
    ) -> PairManifest:
        """Write shards ``0 .. shards - 1`` (this rank's share: index ``mod world_size == rank``) to ``directory``.

        Shards already there with this generator's settings are kept, so calling it again after an
        interruption, or with a larger ``shards``, continues the run.

        Returns:
            The manifest, also written to ``directory/manifest.json`` (``manifest-rank{r}.json`` when
            ``world_size > 1``).

        Raises:
            ConfigError: bad ``shards``, ``rank`` or ``world_size``.
            PairShardError: a shard in ``directory`` made with other settings.
        """
        if not isinstance(shards, int) or shards < 1:
            raise ConfigError(f"shards must be an int >= 1; got {shards!r}")
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
            raise ConfigError(f"need 0 <= rank < world_size; got rank={rank!r}, world_size={world_size!r}")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        mine = list(range(rank, shards, world_size))
        done: dict[int, tuple[int, int]] = {}
        for index in tqdm(mine, desc="reflow pairs", unit="shard", disable=not self.progress):
            path = shard_path(directory, index)
            meta = self._existing(path, index)
            if meta is None:
                tensors, nfe, evaluations = self.make_shard(index)
                meta = {"format": FORMAT, "fingerprint": self.fingerprint, "index": str(index), "nfe": str(nfe),
                        "evaluations": str(evaluations), "settings": json.dumps(self.settings)}  # fmt: skip
                with atomic_path(path) as tmp:
                    save_file(tensors, str(tmp), metadata=meta)
            done[index] = (int(meta["nfe"]), int(meta["evaluations"]))
        manifest = PairManifest(
            path=directory / ("manifest.json" if world_size == 1 else f"manifest-rank{rank}.json"),
            pairs=len(mine) * self.shard_size,
            shards=mine,
            teacher_nfe=sum(v[0] for v in done.values()),
            teacher_evaluations=sum(v[1] for v in done.values()),
        )
        record = {k: v for k, v in vars(manifest).items() if k != "path"}
        write_text_atomic(manifest.path, json.dumps({**record, "settings": self.settings}, indent=2) + "\n")
        return manifest
