"""Training-loop machinery shared by both stages.

:class:`Trainer` owns the optimisation of one trainable module: AdamW (no weight decay on
biases, norms and tokens), linear warmup + cosine schedule (per step), global grad-norm
clipping, optional EMA of the weights, a CSV metrics log, progress (a bar on a terminal, plain
lines with ETA in a log), one summary line per epoch and a final one on stdout, the
``training_curves.png`` picture of ``metrics.csv`` and a resumable checkpoint
``<run_dir>/last.ckpt``, all written after every epoch.

Determinism: at the start of every epoch all RNGs (python, numpy, torch) are reseeded from
``(seed, epoch, rank)`` and the data order comes from a sampler seeded the same way, so a
run resumed from an epoch checkpoint continues exactly as the uninterrupted run would. The
RNG states are saved in the checkpoint as well.

DDP: under ``torchrun`` (``WORLD_SIZE > 1``) :func:`init_distributed` starts a process group
(gloo on CPU, nccl on CUDA), the trainable module is wrapped in
``DistributedDataParallel`` (gradients averaged over ranks), data is split by a
``DistributedSampler``, and only rank 0 evaluates and writes files. ``batch_size`` and ``lr``
are per process: the effective batch grows with the number of processes.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    WeightedRandomSampler,
)

from dsflash_ros.progress import format_duration
from dsflash_ros.progress import progress as show_progress
from dsflash_ros.train import curves
from dsflash_ros.train.recipes import StageRecipe

CHECKPOINT_NAME = "last.ckpt"
METRICS_NAME = "metrics.csv"
CHECKPOINT_VERSION = 1


class TrainingError(RuntimeError):
    """Training cannot start or continue (bad resume state, empty data, ...)."""


# --------------------------------------------------------------------------- seeds / RNG


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """Seed of one epoch on one rank (distinct, reproducible)."""
    return (seed * 1_000_003 + epoch * 9_973 + rank * 101) % (2**31)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | torch.device = "cpu") -> DistInfo:
    """Join the ``torchrun`` process group if launched under it; else a single process."""
    device = torch.device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=device)
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, device)


def barrier(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalar logs over ranks (identity without DDP)."""
    if not info.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if info.device.type == "cuda":
        t = t.to(info.device)
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


# --------------------------------------------------------------------------- optimisation


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay only on weight matrices/kernels (``ndim >= 2``)."""
    decay, no_decay = [], []
    for _, p in module.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise TrainingError("the module has no trainable parameters")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from ~0 to the base lr over ``warmup_steps``, then cosine to ``min_ratio``."""
    total_steps = max(total_steps, 1)
    warmup_steps = min(max(warmup_steps, 0), total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        progress = min(progress, 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class ModelEMA:
    """Exponential moving average of a module's floating-point state (params + buffers).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates ``n``
    (as in timm / YOLO), so short schedules do not keep a large share of the random init in
    the average (with a fixed 0.995, 150 steps would leave 47 % of it).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {
            k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()
        }

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        d = self.current_decay()
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach(), 1.0 - d)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self, module: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into ``module`` (restored on exit)."""
        backup = {k: v.detach().clone() for k, v in module.state_dict().items() if k in self.shadow}
        module.load_state_dict(self.shadow, strict=False)
        try:
            yield module
        finally:
            module.load_state_dict(backup, strict=False)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise TrainingError(
                f"EMA state lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}"
            )
        self.shadow = {k: v.clone() for k, v in state["shadow"].items() if k in self.shadow}


# --------------------------------------------------------------------------- metrics log


class MetricsLog:
    """``metrics.csv`` with a growing set of columns (the file is rewritten when one is added)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []

    def load(self, max_step: int) -> None:
        """Resume: keep the rows up to the checkpoint's ``step`` (later ones are replayed)."""
        if not self.path.is_file():
            return
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            self.columns = list(reader.fieldnames or [])
            self.rows = [r for r in reader if int(float(r.get("step") or 0)) <= max_step]
        if self.enabled:
            self._rewrite()

    def add(self, row: Mapping[str, Any]) -> None:
        row = {k: _fmt(v) for k, v in row.items()}
        self.rows.append(row)
        if not self.enabled:
            return
        new = [k for k in row if k not in self.columns]
        if new or not self.path.is_file():
            self.columns.extend(new)
            self._rewrite()
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)


def _fmt(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


# --------------------------------------------------------------------------- data


def make_loader(
    dataset: Dataset,
    batch_size: int,
    collate: Callable[[list[Any]], Any],
    info: DistInfo,
    seed: int,
    epoch: int,
    num_workers: int = 0,
    shuffle: bool = True,
    weights: np.ndarray | None = None,
) -> DataLoader:
    """Loader for one epoch; shuffling is seeded by ``(seed, epoch)`` (and split by rank).

    ``weights`` (one per sample) draw an epoch of ``len(dataset)`` samples with replacement
    in proportion to them (repeat-factor sampling; single process only).
    """
    if weights is not None:
        if info.distributed:
            raise TrainingError("repeat-factor sampling is not supported with DDP")
        g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        w = torch.as_tensor(weights, dtype=torch.double)
        sampler: Any = WeightedRandomSampler(w, len(w), replacement=True, generator=g)
    elif info.distributed:
        sampler = DistributedSampler(
            dataset, info.world_size, info.rank, shuffle=shuffle, seed=seed, drop_last=True
        )
        sampler.set_epoch(epoch)
    elif shuffle:
        g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        sampler = RandomSampler(dataset, generator=g)
    else:
        sampler = None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        drop_last=len(dataset) >= batch_size * info.world_size,  # type: ignore[arg-type]
        persistent_workers=False,
    )


def steps_per_epoch(num_samples: int, batch_size: int, info: DistInfo, max_steps: int = 0) -> int:
    """Optimizer steps in one epoch (as :func:`make_loader` yields them)."""
    per_rank = num_samples // info.world_size if info.distributed else num_samples
    steps = per_rank // batch_size if per_rank >= batch_size else math.ceil(per_rank / batch_size)
    if max_steps > 0:
        steps = min(steps, max_steps)
    if steps < 1:
        raise TrainingError(f"no training steps: {num_samples} samples for batch {batch_size}")
    return steps


# --------------------------------------------------------------------------- trainer


StepFn = Callable[[nn.Module, Any, float], dict[str, torch.Tensor]]
EvalFn = Callable[[nn.Module], dict[str, float]]
ExportFn = Callable[[nn.Module, Path], None]


class Trainer:
    """Runs epochs of ``step_fn`` on one trainable module (see the module docstring).

    ``step_fn(model, batch, progress)`` returns a dict with a scalar ``"loss"`` (plus terms
    to log); ``model`` is the DDP-wrapped module under ``torchrun``, else the module itself;
    ``progress`` in [0, 1) is the share of the schedule done (for annealed settings). With
    ``recipe.precision == "bf16"`` the step runs under ``torch.autocast`` (bfloat16 matmuls,
    fp32 weights, optimizer and reductions).
    ``eval_fn(module)`` (rank 0, EMA weights when enabled) returns validation metrics.
    ``export_fn(module, run_dir)`` writes deployable files after each epoch (rank 0, EMA
    weights when enabled).
    """

    def __init__(
        self,
        module: nn.Module,
        recipe: StageRecipe,
        run_dir: str | Path,
        steps_per_epoch: int,
        info: DistInfo | None = None,
        seed: int = 0,
        extra_state: Mapping[str, Any] | None = None,
    ) -> None:
        self.module = module
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.info = info or DistInfo()
        self.seed = seed
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = recipe.epochs * steps_per_epoch
        self.extra_state = dict(extra_state or {})
        self.epoch = 0
        self.step = 0
        if self.info.distributed:
            ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            self.model: nn.Module = DistributedDataParallel(module, device_ids=ids)
        else:
            self.model = module
        self.optimizer = torch.optim.AdamW(
            param_groups(module, recipe.weight_decay), lr=recipe.lr, betas=(0.9, 0.999)
        )
        warmup = round(recipe.warmup_epochs * steps_per_epoch)
        self.scheduler = warmup_cosine(
            self.optimizer, warmup, self.total_steps, recipe.min_lr_ratio
        )
        self.ema = ModelEMA(module, recipe.ema_decay) if recipe.ema_decay > 0 else None
        self.metrics = MetricsLog(self.run_dir / METRICS_NAME, enabled=self.info.is_main)
        self.last_losses: list[float] = []  # every step's loss (tests compare resumed runs)

    # ------------------------------------------------------------------ checkpoint
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "total_steps": self.total_steps,
            "rng": rng_state(),
            "extra": self.extra_state,
        }

    def save_checkpoint(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, self.checkpoint_path)
        return self.checkpoint_path

    def resume(self) -> bool:
        """Load ``last.ckpt`` if present; returns whether it did."""
        path = self.checkpoint_path
        if not path.is_file():
            return False
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise TrainingError(f"cannot read checkpoint {path}: {e}") from e
        if state.get("version") != CHECKPOINT_VERSION:
            raise TrainingError(f"{path}: unsupported checkpoint version {state.get('version')}")
        if state["total_steps"] != self.total_steps:
            raise TrainingError(
                f"{path} was written for {state['total_steps']} total steps, this run has "
                f"{self.total_steps}; resume with the same recipe and dataset"
            )
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            if state["ema"] is None:
                raise TrainingError(f"{path} has no EMA state but the recipe enables EMA")
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        set_rng_state(state["rng"])
        self.metrics.load(self.step)
        return True

    # ------------------------------------------------------------------ running
    @contextlib.contextmanager
    def deploy_weights(self) -> Iterator[nn.Module]:
        """The module with the weights to evaluate/export (EMA when enabled)."""
        if self.ema is None:
            yield self.module
        else:
            with self.ema.applied(self.module) as m:
                yield m

    def fit(
        self,
        make_epoch_loader: Callable[[int], Iterable[Any]],
        step_fn: StepFn,
        eval_fn: EvalFn | None = None,
        export_fn: ExportFn | None = None,
        on_epoch_start: Callable[[int], None] | None = None,
        desc: str = "train",
        stop_after_epoch: int | None = None,
    ) -> dict[str, float]:
        """Train the remaining epochs; returns the last validation metrics (may be empty).

        ``stop_after_epoch`` ends this call after that many epochs in total (for time-sliced
        runs: resume later from ``last.ckpt``); the schedule still spans ``recipe.epochs``.
        """
        info, recipe = self.info, self.recipe
        last_eval: dict[str, float] = {}
        last_losses: dict[str, float] = {}
        end = recipe.epochs if stop_after_epoch is None else min(stop_after_epoch, recipe.epochs)
        fit_start, first_step = time.perf_counter(), self.step
        call_steps = max(end - self.epoch, 0) * self.steps_per_epoch  # this call's steps

        def eta_seconds() -> float | None:
            """Time left for the rest of this call, validations included."""
            done = self.step - first_step
            if done <= 0:
                return None
            return (time.perf_counter() - fit_start) / done * max(call_steps - done, 0)

        if info.is_main and self.epoch < end:
            again = f", resumed after epoch {self.epoch}" if self.epoch else ""
            start = (
                f"[{desc}] training epochs {self.epoch + 1}..{end} of {recipe.epochs}, "
                f"{self.steps_per_epoch} steps each (batch {recipe.batch_size}"
                f"{f' x {info.world_size} processes' if info.distributed else ''}, "
                f"lr {recipe.lr:g}){again} -> {self.run_dir}"
            )
            print(curves.wrap_fields(desc, [start]), flush=True)
        for epoch in range(self.epoch, end):
            seed_everything(epoch_seed(self.seed, epoch, info.rank))
            if on_epoch_start is not None:
                on_epoch_start(epoch)
            sums: dict[str, float] = {}
            count = 0
            window: dict[str, float] = {}
            window_count = 0
            bar = show_progress(
                total=self.steps_per_epoch,
                desc=f"{desc} {epoch + 1}/{recipe.epochs}",
                unit="step",
                enabled=info.is_main,
                final_line=False,  # the epoch line below says it all
            )
            epoch_start = time.perf_counter()
            for i, batch in enumerate(make_epoch_loader(epoch)):
                if i >= self.steps_per_epoch:
                    break
                lr = self.optimizer.param_groups[0]["lr"]  # the lr this step uses
                logs = self._train_step(step_fn, batch)
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                    window[k] = window.get(k, 0.0) + v
                count += 1
                window_count += 1
                bar.update(1)
                eta = eta_seconds()
                bar.set_postfix(
                    {"loss": f"{logs['loss']:.4f}"}
                    | ({"stage ETA": format_duration(eta)} if eta is not None else {})
                )
                if self.step % recipe.log_every == 0:
                    avg = all_reduce_mean({k: v / window_count for k, v in window.items()}, info)
                    self.metrics.add(self._row("train", epoch, avg))
                    window, window_count = {}, 0
            bar.close()
            train_seconds = time.perf_counter() - epoch_start
            if count == 0:
                raise TrainingError("the data loader yielded no batch")
            self.epoch = epoch + 1
            row = all_reduce_mean({f"epoch_{k}": v / count for k, v in sums.items()}, info)
            last_losses = {k[len("epoch_") :]: v for k, v in row.items()}
            last_epoch = self.epoch == recipe.epochs
            due = recipe.eval_every > 0 and self.epoch % recipe.eval_every == 0
            if info.is_main:
                epoch_eval: dict[str, float] = {}
                eval_start = time.perf_counter()
                with self.deploy_weights() as m:
                    if eval_fn is not None and (due or last_epoch):
                        was_training = m.training
                        with show_progress(desc=f"{desc} validation", final_line=False):
                            metrics = eval_fn(m)  # a log gets "running" lines meanwhile
                        last_eval = {f"val_{k}": v for k, v in metrics.items()}
                        epoch_eval = last_eval
                        m.train(was_training)
                        row.update(last_eval)
                    if export_fn is not None:
                        export_fn(m, self.run_dir)
                eval_seconds = time.perf_counter() - eval_start if epoch_eval else 0.0
                self.metrics.add(self._row("epoch", epoch, row))
                self.save_checkpoint()
                self.plot_curves(desc)
                print(
                    curves.epoch_line(
                        desc, self.epoch, recipe.epochs, last_losses, lr, count,
                        train_seconds, epoch_eval, eval_seconds, eta_seconds(),
                    ),
                    flush=True,
                )  # fmt: skip
            barrier(info)
        if info.is_main and self.step > first_step:
            print(
                curves.final_line(
                    desc, self.epoch, recipe.epochs, self.step,
                    time.perf_counter() - fit_start, last_losses, last_eval,
                    self.curves_path if self.curves_path.is_file() else None,
                ),
                flush=True,
            )  # fmt: skip
        return last_eval

    @property
    def curves_path(self) -> Path:
        return self.run_dir / curves.CURVES_NAME

    def plot_curves(self, title: str = "") -> Path | None:
        """Redraw ``training_curves.png`` from the metrics rows (a failure to draw is
        reported and never stops training)."""
        try:
            return curves.plot_training_curves(self.metrics.rows, self.curves_path, title)
        except Exception as e:  # a picture must not end a long run
            print(f"[{title}] warning: cannot draw {self.curves_path.name}: {e}", flush=True)
            return None

    def _row(self, kind: str, epoch: int, values: Mapping[str, float]) -> dict[str, Any]:
        return {
            "kind": kind,
            "epoch": epoch + 1,
            "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            **values,
        }

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.recipe.precision == "bf16":
            return torch.autocast(self.info.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _train_step(self, step_fn: StepFn, batch: Any) -> dict[str, float]:
        self.model.train()
        with self._autocast():
            out = step_fn(self.model, batch, self.step / self.total_steps)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite loss {loss.item()} at step {self.step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        logs = {k: float(v.detach()) for k, v in out.items() if v.ndim == 0}
        if self.recipe.grad_clip > 0:
            params = [p for p in self.module.parameters() if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(params, self.recipe.grad_clip)
            logs["grad_norm"] = float(norm)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.module)
        self.step += 1
        self.last_losses.append(logs["loss"])
        return logs
