"""One training loop for every objective.

The :class:`Trainer` owns the optimiser (AdamW), learning-rate schedule, EMA,
gradient clipping, optional mixed precision on CUDA, the progress bar, a JSON
lines metric log and checkpoints. Its randomness is a pure function of
``(seed, step)``: the data order of each epoch and the objective's draws for
each step come from generators seeded from them, so a run resumed from a
checkpoint reproduces the uninterrupted run exactly, and ``N`` processes with
batch ``B`` see the same global batch, split by rank, as one process with
batch ``N * B``.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from genflow.errors import ConfigError, ShapeError
from genflow.io import write_text_atomic
from genflow.objectives.base import Objective
from genflow.train.batches import check_fields, fetch_batch, field_shapes, to_device
from genflow.train.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint, prune, save_checkpoint
from genflow.train.distributed import DistributedContext, init_distributed
from genflow.train.errors import UnknownTrainerArgumentError
from genflow.validation import check_instance

__all__ = ["Trainer", "TrainResult"]

SCHEDULES = ("constant", "cosine")
ORDER_SETTINGS = ("batch_size", "world_size", "seed")  # resuming with other values would not continue the run
Callback = Callable[["Trainer", int, float], None]


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns: the final step, the logged training records and validation records."""

    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)


def _seeded(*parts: int) -> torch.Generator:
    seed = 0
    for p in parts:  # a fixed mixing of the parts into one 63-bit seed
        seed = (seed * 6364136223846793005 + int(p) + 1442695040888963407) % (2**63)
    return torch.Generator().manual_seed(seed)


def _unknown_message(unknown: dict[str, Any]) -> str:
    accepted = [p for p in inspect.signature(Trainer.__init__).parameters if p not in ("self", "unknown")]
    hint = (
        "; class-conditional training is DenoisingScoreMatching(..., cond_field='label') now"
        if "conditional" in unknown
        else ""
    )
    return f"Trainer() got unknown arguments {sorted(unknown)}{hint}; accepted: {', '.join(accepted)}"


class Trainer:
    """Trains ``model`` on ``objective`` (dependency injection; nothing is built from names here).

    Args:
        model: A ``ScoreModel`` (or any module declaring ``parameterization``).
        objective: An :class:`Objective` instance.
        out_dir: Folder for checkpoints and ``metrics.jsonl`` (None: keep nothing on disk).
        steps: Total optimiser steps.
        batch_size: Examples per step per process.
        lr / weight_decay / betas: AdamW settings.
        lr_schedule: ``constant`` or ``cosine`` (to 0 at ``steps``), after ``warmup_steps`` of linear warm-up.
        ema_decay: EMA decay per step (0 disables the EMA), warmed up as
            ``min(ema_decay, (1 + step) / (10 + step))`` so short runs are not dominated by the initial weights.
        grad_clip: Max gradient norm (0 disables clipping).
        mixed_precision: bfloat16 autocast on CUDA (ignored on the CPU).
        checkpoint_every: Steps between checkpoints (0: only the final one).
        keep_last: Checkpoints kept on disk.
        log_every: Steps between metric records.
        seed: Seed of the data order and of the objective's draws.
        validation: A dataset on which the objective's :meth:`~Objective.metrics` are averaged
            (EMA model if any, eval mode, no grad) and logged as ``val_<name>``.
        validate_every: Steps between validations (0: only at the end); needs ``validation``.
        progress: Show a tqdm progress bar (main process only).
        context: Distributed context; default from the environment (:func:`init_distributed`).

    Raises:
        ConfigError: invalid settings.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        *,
        out_dir: str | Path | None = None,
        steps: int = 1000,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: Sequence[float] = (0.9, 0.999),
        lr_schedule: str = "constant",
        warmup_steps: int = 0,
        ema_decay: float = 0.999,
        grad_clip: float = 1.0,
        mixed_precision: bool = False,
        checkpoint_every: int = 0,
        keep_last: int = 3,
        log_every: int = 10,
        seed: int = 0,
        validation: Dataset | None = None,
        validate_every: int = 0,
        progress: bool = True,
        context: DistributedContext | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise UnknownTrainerArgumentError(_unknown_message(unknown))
        self.objective = check_instance(objective, Objective, "objective")
        check_instance(model, nn.Module, "model")
        if lr_schedule not in SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(SCHEDULES)}; got {lr_schedule!r}")
        for name, value in (
            ("steps", steps),
            ("batch_size", batch_size),
            ("log_every", log_every),
            ("keep_last", keep_last),
        ):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1; got {value!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1); got {ema_decay}")
        self.ctx = context or init_distributed()
        self.model = model.to(self.ctx.device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.steps, self.batch_size, self.seed = steps, batch_size, int(seed)
        self.warmup_steps, self.lr_schedule = int(warmup_steps), lr_schedule
        self.ema_decay, self.grad_clip = float(ema_decay), float(grad_clip)
        self.mixed_precision = bool(mixed_precision) and self.ctx.device.type == "cuda"
        self.checkpoint_every, self.keep_last, self.log_every = int(checkpoint_every), keep_last, log_every
        self.progress = progress
        self.validation, self.validate_every = validation, int(validate_every)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False) if self.ema_decay > 0 else None
        self.step = 0
        self._saved_step: int | None = None
        self._epoch_order: tuple[tuple[int, int] | None, Tensor | None] = (None, None)
        self.settings = {
            "steps": steps, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "betas": list(betas),
            "lr_schedule": lr_schedule, "warmup_steps": warmup_steps, "ema_decay": ema_decay, "grad_clip": grad_clip,
            "seed": seed, "world_size": self.ctx.world_size,
        }  # fmt: skip

    # ------------------------------------------------------------------ schedule
    def _lr_factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return 1.0
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    # ---------------------------------------------------------------------- data
    def _global_indices(self, n: int, step: int) -> Tensor:
        """Indices of the global batch of ``step``: epochs are seeded permutations, the last partial batch dropped."""
        global_batch = self.batch_size * self.ctx.world_size
        per_epoch = n // global_batch
        if per_epoch < 1:
            raise ConfigError(f"dataset of {n} examples is smaller than one global batch of {global_batch}")
        epoch, j = divmod(step, per_epoch)
        if self._epoch_order[0] != (epoch, n):
            self._epoch_order = ((epoch, n), torch.randperm(n, generator=_seeded(self.seed, 1, epoch)))
        return self._epoch_order[1][j * global_batch : (j + 1) * global_batch]

    def _dtype(self) -> torch.dtype:
        return self.params[0].dtype if self.params else torch.get_default_dtype()

    def _check_dataset(self, dataset: Dataset, name: str) -> dict[str, tuple[int, ...]]:
        """The per-example shape of every field of ``dataset``, after checking it gives the objective's fields."""
        first = fetch_batch(dataset, torch.arange(1))
        check_fields(self.objective.fields, tuple(first), f"{type(self.objective).__name__} ({name})")
        return field_shapes(first)

    @torch.no_grad()
    def _validate(self, result: TrainResult) -> None:
        """Average the objective's per-example metrics over the validation set and log them (main process)."""
        if not self.ctx.is_main:
            return
        model = self.ema if self.ema is not None else self.model
        was_training = model.training
        model.eval()
        sums: dict[str, Tensor] = {}
        n = len(self.validation)
        for start in range(0, n, self.batch_size):
            batch = fetch_batch(self.validation, torch.arange(start, min(n, start + self.batch_size)))
            batch = to_device(batch, self.ctx.device, self._dtype())
            size = len(next(iter(batch.values())))
            for key, value in self.objective.metrics(model, batch).items():
                if not isinstance(value, Tensor) or tuple(value.shape) != (size,):
                    got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                    where = f"{type(self.objective).__name__}.metrics()[{key!r}]"
                    raise ShapeError(f"{where} must have shape ({size},), one value per example; got {got}")
                sums[key] = sums.get(key, 0.0) + value.detach().to(torch.float64).sum()
        model.train(was_training)
        record = {"step": self.step, **{f"val_{k}": float(v) / n for k, v in sums.items()}}
        if len(record) > 1:
            result.validation.append(record)
            self._log(record)

    # ---------------------------------------------------------------- checkpoint
    def _restore(self) -> None:
        if self.out_dir is None or latest_checkpoint(self.out_dir) is None:
            return
        ckpt = load_checkpoint(self.out_dir)
        saved = ckpt.state.get("trainer", {})
        changed = {
            k: (saved[k], self.settings[k]) for k in ORDER_SETTINGS if k in saved and saved[k] != self.settings[k]
        }
        if changed:
            details = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in changed.items())
            raise ConfigError(
                f"cannot resume {self.out_dir}: the data order depends on settings that changed ({details}); "
                "use the saved settings or another out_dir"
            )
        self.model.load_state_dict(ckpt.model)
        if self.ema is not None and ckpt.ema:
            self.ema.load_state_dict(ckpt.ema)
        if ckpt.optimizer is not None:
            self.optimizer.load_state_dict(ckpt.optimizer)
        self.scheduler.load_state_dict(ckpt.state["scheduler"])
        self.step = self._saved_step = ckpt.step

    def _save(self) -> None:
        if self.out_dir is None or not self.ctx.is_main or self.step == self._saved_step:
            return
        model_config = self.model.to_config() if hasattr(self.model, "to_config") else None
        state = {
            "scheduler": self.scheduler.state_dict(),
            "trainer": self.settings,
            "model_config": model_config,
            "objective_config": self.objective.to_config(),
            "process_config": process.to_config() if (process := getattr(self.objective, "process", None)) else None,
        }
        ema = self.ema.state_dict() if self.ema is not None else {}
        save_checkpoint(
            self.out_dir, Checkpoint(self.step, self.model.state_dict(), ema, self.optimizer.state_dict(), state)
        )
        self._saved_step = self.step
        prune(self.out_dir, self.keep_last)

    def _log(self, record: dict[str, float]) -> None:
        if self.out_dir is None or not self.ctx.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def _truncate_log(self) -> None:
        """Drop records past the resumed step (written after the last checkpoint of a crashed run)."""
        path = self.out_dir / "metrics.jsonl" if self.out_dir is not None else None
        if path is None or not path.exists() or not self.ctx.is_main:
            return
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= self.step]
        write_text_atomic(path, "".join(line + "\n" for line in kept))

    # ----------------------------------------------------------------------- fit
    def fit(self, dataset: Dataset, *, resume: bool = True, callbacks: Sequence[Callback] = ()) -> TrainResult:
        """Train until ``steps``, resuming from the latest checkpoint in ``out_dir`` if ``resume``."""
        if resume:
            self._restore()
            self._truncate_log()
        elif self.out_dir is not None and self.ctx.is_main and latest_checkpoint(self.out_dir) is not None:
            raise ConfigError(
                f"{self.out_dir} already holds checkpoints of another run; resume it (resume=True) or use a new out_dir"
            )
        shapes = self._check_dataset(dataset, "dataset")
        if self.validation is not None:
            self._check_dataset(self.validation, "validation")
        train_model = self.model
        if self.ctx.enabled:
            ddp_args = {"device_ids": [self.ctx.device.index]} if self.ctx.device.type == "cuda" else {}
            train_model = nn.parallel.DistributedDataParallel(self.model, **ddp_args)
            train_model.parameterization = getattr(self.model, "parameterization", None)
        self.model.train()
        result, first_step = TrainResult(step=self.step), self.step
        bar = tqdm(total=self.steps, initial=self.step, disable=not (self.progress and self.ctx.is_main), desc="train")
        start = time.perf_counter()
        while self.step < self.steps:
            lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
            loss, grad_norm = self._train_step(train_model, dataset, shapes)
            self.step += 1
            bar.update(1)
            if self.step % self.log_every == 0 or self.step == self.steps:
                record = {
                    "step": self.step, "loss": self._mean_over_ranks(loss), "grad_norm": float(grad_norm),
                    "lr": lr, "seconds": time.perf_counter() - start,
                }  # fmt: skip
                result.history.append(record)
                self._log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            if self.validate_every and self.step % self.validate_every == 0 and self.step != self.steps:
                self._validate(result)
            if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                self._save()
            for callback in callbacks:
                callback(self, self.step, float(loss))
        bar.close()
        if self.validation is not None and self.step > first_step:
            self._validate(result)
        self._save()  # a no-op when this step was just saved
        result.step = self.step
        return result

    def _train_step(
        self, train_model: nn.Module, dataset: Dataset, shapes: Mapping[str, tuple[int, ...]]
    ) -> tuple[Tensor, Tensor]:
        # layers that draw from the global RNG (dropout, label dropout) see a per-(seed, step, rank) seed, so
        # resume stays exact; fork_rng restores the caller's RNG state afterwards
        devices = [self.ctx.device] if self.ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            seed = int(_seeded(self.seed, 3, self.step, self.ctx.rank).initial_seed())
            torch.random.default_generator.manual_seed(seed)  # this process's CPU generator ...
            if devices:
                torch.cuda.manual_seed(seed)  # ... and its own GPU only: other devices keep their state
            return self._train_step_seeded(train_model, dataset, shapes)

    def _train_step_seeded(
        self, train_model: nn.Module, dataset: Dataset, shapes: Mapping[str, tuple[int, ...]]
    ) -> tuple[Tensor, Tensor]:
        indices = self._global_indices(len(dataset), self.step)
        part = slice(self.ctx.rank * self.batch_size, (self.ctx.rank + 1) * self.batch_size)
        batch = fetch_batch(dataset, indices[part])  # this rank's share of the global batch, every field
        dtype = self._dtype()
        draws = self.objective.draw(len(indices), shapes, _seeded(self.seed, 2, self.step), dtype=dtype, device="cpu")
        batch = to_device(batch, self.ctx.device, dtype)
        draws = {k: v[part].to(self.ctx.device) for k, v in draws.items()}
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            loss = self.objective.loss(train_model, batch, draws)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:  # the norm stays a tensor: no host sync unless a record is logged
            grad_norm = nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        else:
            grad_norm = torch.norm(torch.stack([p.grad.norm() for p in self.params if p.grad is not None]))
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            decay = min(self.ema_decay, (1.0 + self.step) / (10.0 + self.step))
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                    e.lerp_(p, 1.0 - decay)
                for e, b in zip(self.ema.buffers(), self.model.buffers(), strict=True):
                    e.copy_(b)
        return loss.detach(), grad_norm

    def _mean_over_ranks(self, loss: Tensor) -> float:
        if self.ctx.enabled:
            loss = loss.clone()
            torch.distributed.all_reduce(loss)
            loss /= self.ctx.world_size
        return float(loss)
