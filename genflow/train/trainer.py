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
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate
from tqdm.auto import tqdm

from genflow.errors import ConfigError
from genflow.io import write_text_atomic
from genflow.objectives.base import Objective
from genflow.train.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint, prune, save_checkpoint
from genflow.train.distributed import DistributedContext, init_distributed
from genflow.validation import check_instance

__all__ = ["Trainer", "TrainResult"]

SCHEDULES = ("constant", "cosine")
ORDER_SETTINGS = ("batch_size", "world_size", "seed")  # resuming with other values would not continue the run
Callback = Callable[["Trainer", int, float], None]


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns: the final step and the logged records."""

    step: int
    history: list[dict[str, float]] = field(default_factory=list)


def _seeded(*parts: int) -> torch.Generator:
    seed = 0
    for p in parts:  # a fixed mixing of the parts into one 63-bit seed
        seed = (seed * 6364136223846793005 + int(p) + 1442695040888963407) % (2**63)
    return torch.Generator().manual_seed(seed)


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
        conditional: Pass the dataset's labels to the model as ``cond`` (class-conditional
            training); otherwise labels are ignored.
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
        conditional: bool = False,
        progress: bool = True,
        context: DistributedContext | None = None,
    ) -> None:
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
        self.conditional = bool(conditional)
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
            "seed": seed, "conditional": conditional, "world_size": self.ctx.world_size,
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

    @staticmethod
    def _fetch(dataset: Dataset, indices: Tensor) -> tuple[Tensor, Any]:
        tensors = getattr(dataset, "tensors", None)
        items = (
            [t[indices] for t in tensors]
            if tensors is not None
            else default_collate([dataset[int(i)] for i in indices])
        )
        if isinstance(items, Tensor):
            return items, None
        return items[0], (items[1] if len(items) > 1 else None)

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
        first, labels = self._fetch(dataset, torch.arange(1))
        event_shape = tuple(first.shape[1:])
        if self.conditional and not isinstance(labels, Tensor):
            raise ConfigError("conditional=True needs a dataset whose items are (x, label); this one has no labels")
        train_model = self.model
        if self.ctx.enabled:
            ddp_args = {"device_ids": [self.ctx.device.index]} if self.ctx.device.type == "cuda" else {}
            train_model = nn.parallel.DistributedDataParallel(self.model, **ddp_args)
            train_model.parameterization = getattr(self.model, "parameterization", None)
        self.model.train()
        result = TrainResult(step=self.step)
        bar = tqdm(total=self.steps, initial=self.step, disable=not (self.progress and self.ctx.is_main), desc="train")
        start = time.perf_counter()
        while self.step < self.steps:
            lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
            loss, grad_norm = self._train_step(train_model, dataset, event_shape)
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
            if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                self._save()
            for callback in callbacks:
                callback(self, self.step, float(loss))
        bar.close()
        self._save()  # a no-op when this step was just saved
        result.step = self.step
        return result

    def _train_step(
        self, train_model: nn.Module, dataset: Dataset, event_shape: tuple[int, ...]
    ) -> tuple[Tensor, Tensor]:
        # layers that draw from the global RNG (dropout, label dropout) see a per-(seed, step, rank) seed, so
        # resume stays exact; fork_rng restores the caller's RNG state afterwards
        devices = [self.ctx.device] if self.ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            seed = int(_seeded(self.seed, 3, self.step, self.ctx.rank).initial_seed())
            torch.random.default_generator.manual_seed(seed)  # this process's CPU generator ...
            if devices:
                torch.cuda.manual_seed(seed)  # ... and its own GPU only: other devices keep their state
            return self._train_step_seeded(train_model, dataset, event_shape)

    def _train_step_seeded(
        self, train_model: nn.Module, dataset: Dataset, event_shape: tuple[int, ...]
    ) -> tuple[Tensor, Tensor]:
        indices = self._global_indices(len(dataset), self.step)
        part = slice(self.ctx.rank * self.batch_size, (self.ctx.rank + 1) * self.batch_size)
        x, cond = self._fetch(dataset, indices[part])  # this rank's share of the global batch
        dtype = next(iter(self.params)).dtype if self.params else torch.get_default_dtype()
        draws = self.objective.draw(
            len(indices), event_shape, _seeded(self.seed, 2, self.step), dtype=dtype, device="cpu"
        )
        x = x.to(self.ctx.device, dtype)
        cond = cond.to(self.ctx.device) if self.conditional and isinstance(cond, Tensor) else None
        draws = {k: v[part].to(self.ctx.device) for k, v in draws.items()}
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            loss = self.objective.loss(train_model, x, cond, draws)
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
