"""What a checkpoint of a training run holds, and how the trainer saves, restores and initialises from one.

``state.json`` records, besides the optimiser and scheduler state: the
trainer's settings, the model, objective and process configs, the held
networks (by reference or by value), the run's extra ``run`` info, the
``init_from`` checkpoint a fine-tuning run started from, and the number of
skipped non-finite steps. Resuming compares what defines the run with the
checkpoint (:func:`genflow.train.resume.check_same_run`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from genflow.errors import ConfigError
from genflow.train.checkpoint import TENSORS, Checkpoint, load_checkpoint, prune, save_checkpoint
from genflow.train.held import HeldNetworkError, file_sha256, restore_held_weights, step_folder
from genflow.train.resume import check_same_run, load_weights

if TYPE_CHECKING:
    from genflow.train.trainer import Trainer

__all__ = ["RunState"]


class RunState:
    """Saving and restoring the state of ``trainer`` (only the main process writes)."""

    def __init__(self, trainer: Trainer, run_info: dict[str, Any]) -> None:
        self.trainer, self.run_info = trainer, run_info
        self.init_from: dict[str, Any] | None = None
        self.saved_step: int | None = None

    def describe(self) -> dict[str, Any]:
        """What defines the run: settings, model, objective and process configs, held networks."""
        t = self.trainer
        process = getattr(t.objective, "process", None)
        return {
            "trainer": t.settings,
            "model_config": t.model.to_config() if hasattr(t.model, "to_config") else None,
            "objective_config": t.objective.to_config(),
            "process_config": process.to_config() if process is not None else None,
            "held": {name: network.to_config() for name, network in t.held.items()},
        }

    def save(self) -> None:
        """Write a checkpoint of the current step (unless just saved), then prune old ones."""
        t = self.trainer
        if t.out_dir is None or not t.ctx.is_main or t.step == self.saved_step:
            return
        state = {
            **self.describe(),
            "scheduler": t.scheduler.state_dict(),
            "run": self.run_info,
            "init_from": self.init_from,
            "skipped_steps": t.skipped_steps,
        }
        held = {name: network.module.state_dict() for name, network in t.held.items() if network.by_value}
        ema = t.ema.state_dict() if t.ema is not None else {}
        save_checkpoint(t.out_dir, Checkpoint(t.step, t.model.state_dict(), ema, t.optimizer.state_dict(), state, held))
        self.saved_step = t.step
        prune(t.out_dir, t.keep_last)

    def restore(self) -> None:
        """Continue from the newest checkpoint in ``out_dir`` (if any) after checking it is this run's.

        Raises:
            ConfigError: the checkpoint is past ``steps``, or something that defines the run changed.
            HeldNetworkError: a held network differs from the one the run recorded.
        """
        t = self.trainer
        if t.out_dir is None or step_folder(t.out_dir) == t.out_dir:
            return
        ckpt = load_checkpoint(t.out_dir)
        if ckpt.step > t.steps:
            raise ConfigError(
                f"cannot resume {t.out_dir}: its checkpoint is at step {ckpt.step}, past steps={t.steps}; pass "
                f"steps >= {ckpt.step} to continue it, or load the trained model (genflow.pipeline.load_trained)"
            )
        now = self.describe()
        self._check_held(ckpt.state.get("held", {}), now["held"])
        check_same_run(t.out_dir, ckpt.state, now)
        load_weights(t.model, ckpt.model, f"checkpoint {t.out_dir}")
        if t.ema is not None and ckpt.ema:
            load_weights(t.ema, ckpt.ema, f"checkpoint {t.out_dir} (EMA)")
        restore_held_weights(t.held, ckpt, f"checkpoint {t.out_dir}")
        if ckpt.optimizer is not None:
            t.optimizer.load_state_dict(ckpt.optimizer)
        t.scheduler.load_state_dict(ckpt.state["scheduler"])
        self.init_from = ckpt.state.get("init_from")
        t.step = self.saved_step = ckpt.step
        t.skipped_steps = int(ckpt.state.get("skipped_steps", 0))

    def _check_held(self, saved: dict[str, Any], now: dict[str, Any]) -> None:
        folder = self.trainer.out_dir
        if set(saved) != set(now):
            raise HeldNetworkError(
                f"cannot resume {folder}: the run held networks {sorted(saved)}; now {sorted(now)}"
            )
        for name, record in now.items():
            if record.get("sha256") != saved[name].get("sha256") or record.get("source") != saved[name].get("source"):
                raise HeldNetworkError(
                    f"cannot resume {folder}: the held network {name!r} is not the one the run recorded "
                    f"(source {saved[name].get('source')}, sha256 {saved[name].get('sha256')}; now "
                    f"{record.get('source')}, {record.get('sha256')})"
                )

    def initialize_from(self, path: str | Path, *, ema: bool) -> None:
        """Load another checkpoint's weights into the model and EMA (see ``Trainer.initialize_from``)."""
        t = self.trainer
        if t.step != 0:
            raise ConfigError(f"initialize_from must be called before training; this run is at step {t.step}")
        folder = step_folder(path)
        ckpt = load_checkpoint(folder)
        weights = ckpt.ema if ema and ckpt.ema else ckpt.model
        adapt = getattr(t.model, "initial_weights", None)  # a model that extends another maps that one's weights
        weights = adapt(weights) if callable(adapt) else weights
        load_weights(t.model, weights, f"checkpoint {folder}")
        if t.ema is not None:
            t.ema.load_state_dict(t.model.state_dict())
        self.init_from = {
            "source": str(folder.resolve()),
            "sha256": file_sha256(folder / TENSORS),
            "ema": bool(ema and ckpt.ema),
            "step": ckpt.step,
        }
