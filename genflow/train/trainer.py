"""One training loop for every objective.

The :class:`Trainer` owns the optimiser (AdamW), learning-rate schedule, EMA,
gradient clipping, optional mixed precision on CUDA, the progress bar, the
metric log (JSON lines, optionally TensorBoard), validation and checkpoints.
Its randomness is a pure function of ``(seed, step)``: the data order of each
epoch and the objective's draws for each step come from generators seeded from
them, so a run resumed from a checkpoint reproduces the uninterrupted run
exactly, and ``N`` processes with batch ``B`` see the same global batch, every
field split by rank, as one process with batch ``N * B``.

A run stops, saving nothing more, at the first non-finite loss or gradient
(:class:`~genflow.train.errors.NonFiniteLossError`), on Ctrl-C
(:class:`~genflow.train.errors.TrainingInterrupted`), and when another training
holds its folder (:class:`~genflow.train.errors.RunLockedError`).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from genflow.errors import ConfigError
from genflow.objectives.base import Objective
from genflow.train.batches import average_metrics, check_fields, fetch_batch, field_shapes, to_device
from genflow.train.checkpoint import latest_checkpoint
from genflow.train.distributed import DistributedContext, init_distributed
from genflow.train.errors import TrainingInterrupted, UnknownTrainerArgumentError
from genflow.train.held import find_held_networks
from genflow.train.nonfinite import FiniteGuard, nonfinite_error
from genflow.train.runlock import RunLock
from genflow.train.runlog import MetricLog, require_tensorboard
from genflow.train.runstate import RunState
from genflow.train.settings import check_betas, check_bool, check_float, check_int, check_run_info
from genflow.validation import check_instance

__all__ = ["Trainer", "TrainResult"]

SCHEDULES = ("constant", "cosine")
Callback = Callable[["Trainer", int, float], None]


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns: the final step, the logged training records and validation records."""

    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)
    skipped_steps: int = 0


def _seeded(*parts: int) -> torch.Generator:
    seed = 0
    for p in parts:  # a fixed mixing of the parts into one 63-bit seed
        seed = (seed * 6364136223846793005 + int(p) + 1442695040888963407) % (2**63)
    return torch.Generator().manual_seed(seed)


def _unknown_message(unknown: dict[str, Any]) -> str:
    accepted = [p for p in inspect.signature(Trainer.__init__).parameters if p not in ("self", "unknown")]
    hint = "; class-conditional training is DenoisingScoreMatching(..., cond_field='label') now" * (
        "conditional" in unknown
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
        tensorboard: Also write TensorBoard scalars under ``out_dir/tensorboard`` (needs ``out_dir`` and
            the ``tensorboard`` package).
        skip_nonfinite: Skip (no optimiser or EMA update) steps whose loss or gradient is not finite and
            count them, instead of stopping; costs one host sync per step.
        run_info: Extra JSON saved in every checkpoint's ``state.json`` under ``"run"``.
        progress: Show a tqdm progress bar (main process only).
        context: Distributed context; default from the environment (:func:`init_distributed`).

    Raises:
        ConfigError: an argument of the wrong type or out of range (the message names it).
        UnknownTrainerArgumentError: an unknown keyword (the message lists the accepted ones).
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
        tensorboard: bool = False,
        skip_nonfinite: bool = False,
        run_info: dict[str, Any] | None = None,
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
        if out_dir is not None and not isinstance(out_dir, (str, Path)):
            raise ConfigError(f"out_dir must be a path (str or Path) or None; got {type(out_dir).__name__}")
        if validation is not None and not isinstance(validation, Dataset):
            raise ConfigError(f"validation must be a torch Dataset or None; got {type(validation).__name__}")
        if context is not None and not isinstance(context, DistributedContext):
            raise ConfigError(f"context must be a DistributedContext or None; got {type(context).__name__}")
        self.steps, self.batch_size = check_int("steps", steps, 1), check_int("batch_size", batch_size, 1)
        self.log_every, self.keep_last = check_int("log_every", log_every, 1), check_int("keep_last", keep_last, 1)
        self.checkpoint_every = check_int("checkpoint_every", checkpoint_every, 0)
        self.warmup_steps, self.seed = check_int("warmup_steps", warmup_steps, 0), check_int("seed", seed, 0)
        self.validate_every = check_int("validate_every", validate_every, 0)
        if self.validate_every and validation is None:
            raise ConfigError(f"validate_every={validate_every} needs a validation dataset; got validation=None")
        lr = check_float("lr", lr, 0.0, float("inf"), low_open=True)
        weight_decay = check_float("weight_decay", weight_decay, 0.0, float("inf"))
        betas = check_betas(betas)
        self.ema_decay = check_float("ema_decay", ema_decay, 0.0, 1.0)
        self.grad_clip = check_float("grad_clip", grad_clip, 0.0, float("inf"))
        self.mixed_precision = check_bool("mixed_precision", mixed_precision)
        self.progress = check_bool("progress", progress)
        self.skip_nonfinite = check_bool("skip_nonfinite", skip_nonfinite)
        if check_bool("tensorboard", tensorboard):
            if out_dir is None:
                raise ConfigError("tensorboard=True writes under out_dir; got out_dir=None")
            require_tensorboard()
        self.ctx = context or init_distributed()
        self.mixed_precision = self.mixed_precision and self.ctx.device.type == "cuda"
        self.model = model.to(self.ctx.device)
        self.held = find_held_networks(model=self.model, objective=self.objective)
        for network in self.held.values():
            network.to(self.ctx.device)  # those of the model moved with it; those of the objective move here
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.validation, self.lr_schedule = validation, lr_schedule
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay, betas=betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False) if self.ema_decay > 0 else None
        self.step, self.skipped_steps = 0, 0
        self._epoch_order: tuple[tuple[int, int] | None, Tensor | None] = (None, None)
        self.settings = {
            "steps": steps, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "betas": list(betas),
            "lr_schedule": lr_schedule, "warmup_steps": warmup_steps, "ema_decay": ema_decay, "grad_clip": grad_clip,
            "seed": seed, "world_size": self.ctx.world_size, "skip_nonfinite": skip_nonfinite,
        }  # fmt: skip
        self.run_state = RunState(self, check_run_info(run_info))
        self.log = MetricLog(self.out_dir if self.ctx.is_main else None, tensorboard=tensorboard)

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

    # ------------------------------------------------------------------- weights
    def initialize_from(self, path: str | Path, *, ema: bool = True) -> None:
        """Start this run from the weights of another run's checkpoint (fine-tuning, or a deliberate change of
        parameterisation, process or objective that resuming refuses).

        The model (and the EMA) get the checkpoint's EMA weights (``ema=True``, when it has them) or its raw
        weights; the optimiser, schedule and step start fresh. The checkpoint and the SHA-256 of its tensors
        are recorded in this run's checkpoints under ``"init_from"``. Call it before :meth:`fit`; if
        ``out_dir`` already holds a checkpoint of this run, ``fit`` resumes from that instead.

        Raises:
            CheckpointError: no checkpoint at ``path``.
            ConfigError: called after training started, or weights that do not fit the model (one line:
                the count and first names of the missing and unexpected keys and shape mismatches).
        """
        self.run_state.initialize_from(path, ema=check_bool("ema", ema))

    # ----------------------------------------------------------------------- fit
    def fit(self, dataset: Dataset, *, resume: bool = True, callbacks: Sequence[Callback] = ()) -> TrainResult:
        """Train until ``steps``, resuming from the latest checkpoint in ``out_dir`` if ``resume``.

        Raises:
            ConfigError: a bad dataset (empty, missing fields), or a checkpoint this run cannot continue.
            NonFiniteLossError: a loss or gradient was NaN or infinite (not with ``skip_nonfinite``).
            RunLockedError: another training holds ``out_dir``.
            TrainingInterrupted: Ctrl-C; carries the last complete checkpoint.
            CheckpointError: a checkpoint could not be written (e.g. a full disk).
        """
        lock = RunLock(self.out_dir) if self.out_dir is not None and self.ctx.is_main else contextlib.nullcontext()
        with lock:
            try:
                return self._fit(dataset, resume, callbacks)
            except KeyboardInterrupt as err:
                last = latest_checkpoint(self.out_dir) if self.out_dir is not None else None
                raise TrainingInterrupted(
                    f"training interrupted after step {self.step}; nothing partial was saved; the last complete "
                    f"checkpoint is {last or 'none'}",
                    step=self.step,
                    last_checkpoint=last,
                ) from err
            finally:
                self.log.close()

    def _fit(self, dataset: Dataset, resume: bool, callbacks: Sequence[Callback]) -> TrainResult:
        if resume:
            self.run_state.restore()
        elif self.out_dir is not None and self.ctx.is_main and latest_checkpoint(self.out_dir) is not None:
            raise ConfigError(
                f"{self.out_dir} already holds checkpoints of another run; resume it (resume=True) or use a new out_dir"
            )
        shapes = self._check_dataset(dataset, "dataset")
        if self.validation is not None:
            self._check_dataset(self.validation, "validation")
        self.log.open(self.step)
        train_model = self.model
        if self.ctx.enabled:
            ddp_args = {"device_ids": [self.ctx.device.index]} if self.ctx.device.type == "cuda" else {}
            train_model = nn.parallel.DistributedDataParallel(self.model, **ddp_args)
            train_model.parameterization = getattr(self.model, "parameterization", None)
        self.model.train()
        guard = FiniteGuard(self.ctx.device)
        result, first_step = TrainResult(step=self.step), self.step
        bar = tqdm(total=self.steps, initial=self.step, disable=not (self.progress and self.ctx.is_main), desc="train")
        start = time.perf_counter()
        while self.step < self.steps:
            lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
            loss, grad_norm = self._train_step(train_model, dataset, shapes, guard)
            self.step += 1
            bar.update(1)
            log_now = self.step % self.log_every == 0 or self.step == self.steps
            validate_now = self.validate_every and self.step % self.validate_every == 0 and self.step != self.steps
            save_now = self.checkpoint_every and self.step % self.checkpoint_every == 0
            if log_now or validate_now or save_now:
                self._raise_if_nonfinite(guard, dataset)
            if log_now:
                record = {
                    "step": self.step, "loss": self._mean_over_ranks(loss), "grad_norm": float(grad_norm),
                    "lr": lr, "seconds": time.perf_counter() - start,
                }  # fmt: skip
                if self.skip_nonfinite:
                    record["skipped_steps"] = self.skipped_steps
                result.history.append(record)
                self.log.write(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            if validate_now:
                self._validate(result)
            if save_now:
                self.run_state.save()
            for callback in callbacks:
                callback(self, self.step, float(loss))
        bar.close()
        self._raise_if_nonfinite(guard, dataset)
        if self.validation is not None and self.step > first_step:
            self._validate(result)
        self.run_state.save()  # a no-op when this step was just saved
        result.step, result.skipped_steps = self.step, self.skipped_steps
        return result

    def _raise_if_nonfinite(self, guard: FiniteGuard, dataset: Dataset) -> None:
        bad = guard.first_bad_step(self.ctx)
        if bad is None:
            return
        indices = self._global_indices(len(dataset), bad - 1)
        last = latest_checkpoint(self.out_dir) if self.out_dir is not None else None
        raise nonfinite_error(bad, indices, fetch_batch(dataset, indices), last)

    def _validate(self, result: TrainResult) -> None:
        """Average the objective's per-example metrics over the validation set and log them (main process)."""
        if not self.ctx.is_main:
            return
        model = self.ema if self.ema is not None else self.model
        was_training = model.training
        model.eval()
        try:
            means = average_metrics(
                lambda batch: self.objective.metrics(model, batch),
                self.validation,
                self.batch_size,
                self.ctx.device,
                self._dtype(),
            )
        finally:
            model.train(was_training)
        if means:
            record = {"step": self.step, **{f"val_{k}": v for k, v in means.items()}}
            result.validation.append(record)
            self.log.write(record)

    def _train_step(
        self, train_model: nn.Module, dataset: Dataset, shapes: Mapping[str, tuple[int, ...]], guard: FiniteGuard
    ) -> tuple[Tensor, Tensor]:
        # layers that draw from the global RNG (dropout, label dropout) see a per-(seed, step, rank) seed, so
        # resume stays exact; fork_rng restores the caller's RNG state afterwards
        devices = [self.ctx.device] if self.ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            seed = int(_seeded(self.seed, 3, self.step, self.ctx.rank).initial_seed())
            torch.random.default_generator.manual_seed(seed)  # this process's CPU generator ...
            if devices:
                torch.cuda.manual_seed(seed)  # ... and its own GPU only: other devices keep their state
            return self._train_step_seeded(train_model, dataset, shapes, guard)

    def _train_step_seeded(
        self, train_model: nn.Module, dataset: Dataset, shapes: Mapping[str, tuple[int, ...]], guard: FiniteGuard
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
        finite = guard.finite(loss, grad_norm)
        if self.skip_nonfinite and not guard.all_finite(finite, self.ctx):
            self.skipped_steps += 1  # no update; the schedule still advances with the step
            self.optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings():  # torch warns when the schedule steps before any optimiser step
                warnings.simplefilter("ignore", UserWarning)
                self.scheduler.step()
            return loss.detach(), grad_norm
        guard.observe(self.step + 1, finite)
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
