"""The training loop: the paper's recipe on one CPU or many GPUs (torchrun / DistributedDataParallel).

Run it with ``sian train CONFIG.yaml [key=value ...]``; under ``torchrun --nproc_per_node=N`` the same
command trains with DDP (gloo on CPU, NCCL on GPU). ``train.batch_size`` is the *global* batch: each
of the N processes takes ``batch_size / N`` samples of every step, and DDP averages the gradients, so
the result equals one process training on the whole batch. Validation is shared the same way (each
process scores every N-th image; all receive the one-process scores), CPU time in the log is the sum over
the processes, and stopping and checkpointing are decided together, at the same step on every process.

Output folder (``train.out_dir``), written by rank 0 only:

- ``state.pt``: the resumable training state (atomic; see :mod:`sian.training.checkpoint`);
- ``last.safetensors`` / ``best.safetensors``: weights loadable by ``sian derain --model FILE``;
- ``log.jsonl``: one JSON object per logged step and per validation; ``tb/``: TensorBoard events;
- ``config.yaml``: the resolved config; ``summary.json``: how the run ended.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from .._dist import join_group, leave_group, placement
from .._progress import progress_bar
from ..hub import resolve_weights
from ..inference import resolve_device
from ..models import create_model, get_variant
from ..precision import PrecisionChoice, autocast, describe_device, ieee_fp32, resolve_precision
from ..weights import load_state_dict_checked, read_weights_file, save_weights, sha256_file
from .checkpoint import STATE_FILE, load_state, save_state
from .config import TrainingConfig, to_dict
from .datasets import (
    MixedPatches,
    PairedPatches,
    StepSampler,
    SyntheticPatches,
    clean_split,
    read_pair_names,
)
from .losses import stage_loss
from .stopping import VERDICT_FILE, read_records, stop_verdict, validation_curve
from .validation import build_validation_set, check_select, validate

logger = logging.getLogger(__name__)

__all__ = [
    "RESUMABLE_CHANGES",
    "CheckpointError",
    "ConfigChangedError",
    "NonFiniteLossError",
    "Progress",
    "Trainer",
    "config_changes",
    "forward_loss",
    "release_init",
    "train",
]

# Keys that may differ between a run and its resume without asking: how it runs, not what it learns.
RESUMABLE_CHANGES = (
    "train.threads", "train.device", "train.precision", "train.log_every", "train.val_every",
    "train.checkpoint_minutes", "train.nonfinite", "train.max_nonfinite", "train.out_dir", "data.workers",
    # When to stop, not what a step learns: a rule may be set or changed mid-run (a rule written down before
    # training may have to be applied to a run that started without it).
    "train.stop.min_hours", "train.stop.window_hours", "train.stop.min_gain", "train.stop.max_hours",
)  # fmt: skip


class NonFiniteLossError(RuntimeError):
    """Training stopped on a NaN/inf loss or gradient (policy ``stop``, or too many in a row)."""


class ConfigChangedError(ValueError):
    """``--resume`` with a config that differs from the saved run's in keys not allowed to change."""


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and key != "overrides":
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved, current)}`` for every config key whose value differs. A key the saved run predates
    counts as holding today's default there (so older checkpoints stay resumable)."""
    old = _flatten(to_dict(TrainingConfig())) | _flatten(saved)  # keys the saved run predates: today's default
    return {key: (old.get(key), value) for key, value in _flatten(current).items() if old.get(key) != value}


class CheckpointError(OSError):
    """The final checkpoint could not be written (e.g. a full disk); the previous one is intact."""


def release_init(model: nn.Module, std: float = 0.02) -> None:
    """The release's initialisation: conv weights ~ N(0, std), biases 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def forward_loss(
    net: nn.Module, rainy: torch.Tensor, clean: torch.Tensor, loss: str, precision: PrecisionChoice
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The forward half of a training step: every stage's output and the stage loss.

    The forward pass runs under ``precision``'s autocast; the outputs are cast back to float32 first, so
    the loss (and every gradient it starts) is computed in fp32. ``sian bench`` times this same function.
    """
    with autocast(precision, rainy.device):
        outputs = net(rainy)
    outputs = [out.float() for out in outputs]
    return outputs, stage_loss(outputs, clean, loss)


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so a step and a checkpoint always finish."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _schedule(config: TrainingConfig, total: int):
    optim = config.optim

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / optim.warmup_steps) if optim.warmup_steps else 1.0
        if optim.schedule == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))
        if optim.schedule == "multistep":
            return warm * optim.gamma ** sum(step >= m * total for m in optim.milestones)
        return warm

    return factor


def _build_data(config: TrainingConfig) -> tuple[torch.utils.data.Dataset, int | None]:
    """The training samples (real pairs, synthetic rain on clean images, or a mixture of both) and the
    number of patches in an epoch (the paper's patch grid), if there is one."""
    data, seed = config.data, config.train.seed
    pairs = synthetic = None
    if data.train_pairs:
        held_out = read_pair_names(data.val_split) if data.val_split else []
        pairs = PairedPatches(data.train_pairs, data.patch_size, data.patch_stride, data.hflip, seed, held_out,
                              data.pair_weights)  # fmt: skip
    if data.train_clean:
        files, _ = clean_split(data)
        synthetic = SyntheticPatches(files, data.patch_size, data.synth_preset, data.hflip, seed)
    if pairs is not None and synthetic is not None:
        return MixedPatches(pairs, synthetic, data.pair_fraction, seed), None
    if pairs is not None:
        return pairs, (pairs.patches_per_epoch if data.patch_stride else None)
    return synthetic, None


def _parameter_fingerprint(model: nn.Module) -> torch.Tensor:
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device).remainder_(97).add_(1)
    return torch.stack([flat.sum(), (flat * weights).sum(), flat.abs().max()])


def _psnr_rgb(output: torch.Tensor, target: torch.Tensor) -> float:
    mse = torch.mean((output.detach().clamp(0, 1) - target) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


@dataclass
class Progress:
    """What a run has done so far: everything of the loop's state that is not a tensor module."""

    step: int = 0
    best: float = -math.inf  # best validation PSNR
    validated: int = -1  # the step of the last validation (a resume of a finished run does not score it again)
    skipped: int = 0  # updates skipped for a non-finite loss or gradient
    consecutive_bad: int = 0
    wall_before: float = 0.0  # training time of earlier sessions of this run (resumes add up)
    cpu_before: float = 0.0
    status: str = "finished"  # or "interrupted" (a signal), "stopped" (train.stop's rule)
    stop_reason: str | None = None


class Trainer:
    """One training run: built from a config (and a checkpoint when resuming), run by :meth:`fit`.

    Its state is explicit: the model, optimizer, scheduler and gradient scaler, :attr:`progress`, the
    weights a ``rollback`` restores (:attr:`good_state`), and the run's outputs (``log.jsonl``, TensorBoard,
    checkpoints) on rank 0. :func:`train` is ``Trainer(...).fit()``.
    """

    def __init__(
        self, config: TrainingConfig, resume: bool = False, progress: bool = True, allow_changes: tuple[str, ...] = ()
    ):
        self.config, self.train_cfg = config, config.train
        self.where = where = placement()
        self.rank, self.world, local_rank = where.rank, where.world, where.local_rank
        self.device = resolve_device(config.train.device, index=local_rank)
        self.precision = resolve_precision(config.train.precision, self.device)
        join_group(where, self.device)
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        self.is_main = self.rank == 0
        self.out_dir = Path(config.train.out_dir)
        self.show_progress = progress
        self.arch = get_variant(config.model.variant).arch

        self.dataset, patches_per_epoch = _build_data(config)
        cfg = self.train_cfg
        self.total = cfg.steps or cfg.epochs * math.ceil(patches_per_epoch / cfg.batch_size)
        self.model, init_record = self._build_model()
        self.ema = None
        if not 0.0 <= cfg.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {cfg.ema_decay}")
        if cfg.ema_decay:  # torch's averaging: the first update copies the weights, later ones lerp towards them
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))
        optim = config.optim
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay
        )
        if self.init_optimizer is not None and not resume:  # another run's moments, under this run's rate
            self.optimizer.load_state_dict(self.init_optimizer)
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"] = optim.lr
                group["betas"], group["weight_decay"] = tuple(optim.betas), optim.weight_decay
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(config, self.total))
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.precision == "fp16")
        self.progress = Progress()
        state = load_state(self.out_dir) if resume else None
        if resume and state is None and self.is_main:
            logger.info(f"no checkpoint in {self.out_dir}: starting a new run")
        if state is not None:
            self._restore(state, allow_changes)
        elif self.is_main and not resume and (self.out_dir / "state.pt").exists():
            raise FileExistsError(
                f"{self.out_dir} already holds a run: pass --resume to continue it, or pick another out_dir"
            )
        self.net = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.world > 1
            else self.model
        )
        self._open_outputs()
        if init_record is not None and state is None:
            self.log(init_record)
        # Which machine and precision ran from which step: a run resumed on other hardware (another CPU, a GPU
        # lent for a session) runs at another speed and may switch precision (train.precision=auto).
        self.log({"step": self.progress.step, "precision": self.precision.precision,
                  "precision_reason": self.precision.reason, "machine": describe_device(self.device),
                  "processes": self.world, "threads": torch.get_num_threads()})  # fmt: skip
        if self.is_main:
            logger.info(f"precision {self.precision.precision} ({self.precision.reason})")
        self.wall_start, self.cpu_start = time.perf_counter(), time.process_time()
        # What "rollback" restores: the weights and optimizer state of the last checkpoint (or the start).
        self.good_state = self._snapshot()

    # -- construction ----------------------------------------------------------------------------------------

    def _build_model(self) -> tuple[nn.Module, dict[str, Any] | None]:
        config = self.config
        torch.manual_seed(self.train_cfg.seed)  # the same initial weights on every process
        model = create_model(config.model.variant, **config.model.overrides)
        init_record = self.init_optimizer = None
        if config.model.init and str(config.model.init).endswith(".pt"):  # another run's state: weights and moments
            init_path = Path(config.model.init)
            if not init_path.is_file():
                raise FileNotFoundError(f"model.init: no run state at {init_path}")
            state = torch.load(init_path, map_location="cpu", weights_only=True)
            load_state_dict_checked(model, state["model"], source=f"model.init state {init_path}")
            self.init_optimizer = state["optimizer"]
            init_record = {"step": 0, "init": config.model.init, "init_sha256": sha256_file(init_path),
                           "init_step": int(state["step"])}  # fmt: skip
        elif config.model.init:
            init_path = resolve_weights(config.model.init)
            _, _, init_state, init_metadata = read_weights_file(init_path)
            # Which file a fine-tune started from: a name's file may be replaced later (a newly shipped model).
            init_record = {"step": 0, "init": config.model.init, "init_sha256": sha256_file(init_path),
                           "init_step": init_metadata.get("step")}  # fmt: skip
            load_state_dict_checked(model, init_state, source=f"model.init weights {config.model.init}")
        elif self.arch == "sian":
            release_init(model)
        return model.to(self.device).train(), init_record

    def _restore(self, state: dict[str, Any], allow_changes: tuple[str, ...]) -> None:
        changed = config_changes(state.get("config", {}), to_dict(self.config))
        refused = {k: v for k, v in changed.items() if k not in RESUMABLE_CHANGES and k not in allow_changes}
        if refused:
            lines = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
            raise ConfigChangedError(
                f"the config differs from the run saved in {self.out_dir}: {lines}. Resume with the saved config "
                f"({self.out_dir / 'config.yaml'}), or allow the change with --allow-change KEY"
            )
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        self.progress.step, self.progress.best = int(state["step"]), float(state["best"])
        self.progress.validated = int(state.get("validated", -1))  # older checkpoints: unknown
        self.progress.wall_before = float(state.get("wall_seconds", 0.0))
        self.progress.cpu_before = float(state.get("cpu_seconds", 0.0))

    def _open_outputs(self) -> None:
        self.val_set = build_validation_set(self.config.data)  # every process scores its share (validate)
        if self.val_set is not None:
            check_select(self.val_set, self.config.data.val_select)
        self.writer = self.log_file = None
        if not self.is_main:
            return
        if self.out_dir.is_dir():  # temporary files of a run killed mid-write (SIGKILL skips cleanup)
            for debris in self.out_dir.glob(".*.tmp*"):
                debris.unlink(missing_ok=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(to_dict(self.config)), self.out_dir / "config.yaml")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.progress.step)
        except ImportError:  # pragma: no cover - tensorboard is optional
            self.writer = None
        self.log_file = open(self.out_dir / "log.jsonl", "a")  # noqa: SIM115 (closed by close())

    # -- records -----------------------------------------------------------------------------------------------

    def budget(self) -> dict[str, float]:
        """Training time summed over every resume, so a run spread over sessions reports its real budget.

        CPU time is summed over the processes of a torchrun job too (a collective: every rank calls this at
        the same steps)."""
        cpu = torch.tensor(time.process_time() - self.cpu_start, dtype=torch.float64, device=self.device)
        if self.world > 1:
            dist.all_reduce(cpu)
        return {"wall_seconds": self.progress.wall_before + time.perf_counter() - self.wall_start,
                "cpu_seconds": self.progress.cpu_before + float(cpu)}  # fmt: skip

    def log(self, record: dict[str, Any]) -> None:
        if self.log_file is not None:
            self.log_file.write(json.dumps(record) + "\n")
            self.log_file.flush()
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step" and math.isfinite(value):
                    self.writer.add_scalar(key, value, record["step"])

    def _snapshot(self) -> dict[str, Any]:
        snapshot = {"model": copy.deepcopy(self.model.state_dict()),
                    "optimizer": copy.deepcopy(self.optimizer.state_dict())}  # fmt: skip
        if self.ema is not None:
            snapshot["ema"] = copy.deepcopy(self.ema.state_dict())
        return snapshot

    @property
    def kept_model(self) -> nn.Module:
        """The weights a run validates, selects and writes: the moving average when ``train.ema_decay`` is set."""
        return self.ema.module if self.ema is not None else self.model

    def checkpoint(self, final: bool = False) -> None:
        """Remember the rollback point and (rank 0) write the checkpoint; a failed write is reported, and
        fatal only at the end of the run (the previous checkpoint stays intact either way)."""
        self.good_state = self._snapshot()
        budget = self.budget()
        if not self.is_main:
            return
        try:
            self._write_checkpoint(budget)
        except OSError as exc:  # e.g. a full disk: the previous checkpoint is intact (atomic writes)
            step = self.progress.step
            message = (
                f"step {step}: could not write the checkpoint ({exc}); the previous one in {self.out_dir} is intact"
            )
            self.log({"step": step, "checkpoint_error": str(exc)})
            if final:
                raise CheckpointError(message) from exc
            self.bar.write(message + "; training goes on and retries at the next interval")

    def _write_checkpoint(self, budget: dict[str, float]) -> None:
        step = self.progress.step
        save_weights(self.out_dir / "last.safetensors", self.kept_model, self.arch, self.model.config, step=str(step))
        save_state(self.out_dir, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            "scheduler": self.scheduler.state_dict(), "step": step, "best": self.progress.best,
            "validated": self.progress.validated,
            "rng": torch.get_rng_state(), "config": to_dict(self.config), **budget,
            "scaler": self.scaler.state_dict(),
        })  # fmt: skip

    def validate(self) -> None:
        """Score the validation set (shared among the processes) and keep the best weights (rank 0)."""
        if self.val_set is None:
            return
        step = self.progress.step
        scores = validate(self.kept_model, self.val_set, self.device, self.where, self.config.data.val_select)
        self.progress.validated = step
        record = {"step": step, **{k: v for k, v in scores.items() if k != "val_stage_psnr"},
                  "val_stage_psnr": scores["val_stage_psnr"], **self.budget()}  # fmt: skip
        improved = scores["val_psnr"] > self.progress.best
        if improved:
            self.progress.best = scores["val_psnr"]  # on every process: they all have the scores
        if not self.is_main:
            return
        self.log(record)
        if improved:
            save_weights(self.out_dir / "best.safetensors", self.kept_model, self.arch, self.model.config,
                         step=str(step), val_psnr=f"{self.progress.best:.4f}")  # fmt: skip
        self.bar.write(f"step {step}: val PSNR {scores['val_psnr']:.3f} dB (input {scores['val_input_psnr']:.3f}), "
                       f"SSIM {scores['val_ssim']:.4f}")  # fmt: skip

    def rule_says_stop(self) -> bool:
        """Apply ``train.stop`` to the run's log: rank 0 reads it, every process gets the verdict (a collective
        when the rule is on). A stop is logged and its verdict written to ``out_dir/STOPPED``."""
        rule = self.train_cfg.stop
        if not (rule.min_gain or rule.max_hours):
            return False
        verdict = None
        if self.is_main:
            self.log_file.flush()
            curve, _ = validation_curve(read_records(self.out_dir / "log.jsonl"))
            verdict = stop_verdict(curve, rule.min_hours, rule.window_hours, rule.min_gain, rule.max_hours)
        flag = torch.tensor([float(verdict is not None and verdict.stop)], device=self.device)
        if self.world > 1:
            dist.broadcast(flag, 0)
        if not flag.item():
            return False
        self.progress.status = "stopped"
        if self.is_main:
            step, gain = self.progress.step, verdict.gain if math.isfinite(verdict.gain) else None
            self.progress.stop_reason = (
                f"{verdict.reason} (step {step}, {verdict.hours:.2f} machine-hours, best validation "
                f"{verdict.best:.3f} dB" + (f", gain {gain:.3f} dB" if gain is not None else "") + ")"
            )
            self.log({"step": step, "stopped": verdict.reason, "machine_hours": verdict.hours,
                      "best_val_psnr": verdict.best, "gain": gain})  # fmt: skip
            (self.out_dir / VERDICT_FILE).write_text(self.progress.stop_reason + "\n")
            self.bar.write(self.progress.stop_reason)
        return True

    # -- the loop ------------------------------------------------------------------------------------------------

    def update(self, rainy: torch.Tensor, clean: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One optimizer step on a batch; a non-finite loss or gradient never reaches the weights."""
        cfg, progress = self.train_cfg, self.progress
        outputs, loss = forward_loss(self.net, rainy, clean, cfg.loss, self.precision)
        finite = torch.isfinite(loss.detach()).float()
        if self.world > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        self.optimizer.zero_grad(set_to_none=True)
        problem = None
        if finite.item() != 1.0:
            problem = "loss"
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            # The norm is needed anyway to catch inf/NaN gradients; max_norm inf leaves them unscaled.
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip or math.inf)
            # Under fp16 an overflow is the scaler's business: it skips that update and lowers its scale.
            if torch.isfinite(norm) or self.scaler.is_enabled():
                self.scaler.step(self.optimizer)
            else:
                problem = "gradient"
            self.scaler.update()
        if problem is None:
            progress.consecutive_bad = 0
            if self.ema is not None:
                self.ema.update_parameters(self.model)
        else:
            progress.skipped += 1
            progress.consecutive_bad += 1
            step = progress.step + 1
            self.bar.write(f"step {step}: non-finite {problem}, update skipped (policy: {cfg.nonfinite})")
            self.log({"step": step, "nonfinite": problem, "policy": cfg.nonfinite})
            if cfg.nonfinite == "stop" or progress.consecutive_bad > cfg.max_nonfinite:
                raise NonFiniteLossError(
                    f"non-finite {problem} at step {step} ({progress.consecutive_bad} in a row); the weights "
                    f"were not updated and {self.out_dir / STATE_FILE} holds the last good checkpoint"
                )
            if cfg.nonfinite == "rollback":
                self.model.load_state_dict(self.good_state["model"])
                self.optimizer.load_state_dict(self.good_state["optimizer"])
                if self.ema is not None:
                    self.ema.load_state_dict(self.good_state["ema"])
        self.scheduler.step()
        progress.step += 1
        return outputs, loss

    def fit(self) -> dict[str, Any]:
        """Run to ``total`` steps or a SIGINT/SIGTERM; returns the summary also written to ``summary.json``."""
        with ieee_fp32(self.device):  # float32 means float32 on a GPU in backward passes too, not only under autocast
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        cfg, progress = self.train_cfg, self.progress
        sampler = StepSampler(progress.step, self.total, cfg.batch_size, self.rank, self.world)
        loader = DataLoader(
            self.dataset, batch_size=cfg.batch_size // self.world, sampler=sampler,
            num_workers=self.config.data.workers, persistent_workers=self.config.data.workers > 0,
        )  # fmt: skip
        stop = _StopRequest()
        self.bar = progress_bar(total=self.total, initial=progress.step, desc="train", unit="step",
                                disable=not (self.show_progress and self.is_main))  # fmt: skip
        last_checkpoint = time.monotonic()
        window_start, window_samples = time.perf_counter(), 0
        try:
            if self.rule_says_stop():  # a resume of a run its rule has ended (e.g. the GPU kit resumes every run)
                loader = ()
            for rainy, clean in loader:
                rainy, clean = rainy.to(self.device, non_blocking=True), clean.to(self.device, non_blocking=True)
                outputs, loss = self.update(rainy, clean)
                window_samples += rainy.shape[0] * self.world
                self.bar.update()
                if progress.step % cfg.log_every == 0 or progress.step == self.total:
                    elapsed = time.perf_counter() - window_start
                    pixels = window_samples * rainy.shape[-1] * rainy.shape[-2]
                    record = {"step": progress.step, "loss": loss.item(), "lr": self.scheduler.get_last_lr()[0],
                              "train_psnr_rgb": _psnr_rgb(outputs[-1], clean), "pixels_per_second": pixels / elapsed,
                              **self.budget()}  # fmt: skip
                    window_start, window_samples = time.perf_counter(), 0
                    self.log(record)
                    self.bar.set_postfix(
                        loss=f"{record['loss']:.4f}", psnr=f"{record['train_psnr_rgb']:.2f}", refresh=False
                    )
                if cfg.val_every and progress.step % cfg.val_every == 0 and progress.step < self.total:
                    self.validate()
                    if self.rule_says_stop():
                        break
                # Every process stops, and checkpoints (a rollback point), at the same step: decided together.
                due = time.monotonic() - last_checkpoint > cfg.checkpoint_minutes * 60
                # (on the device: NCCL reduces GPU tensors only)
                requested = torch.tensor([float(stop.signal is not None), float(due)], device=self.device)
                if self.world > 1:
                    dist.all_reduce(requested, op=dist.ReduceOp.MAX)
                if requested[0].item():
                    progress.status = "interrupted"
                    break
                if requested[1].item():
                    self.checkpoint()
                    last_checkpoint = time.monotonic()
            if progress.status == "finished" and progress.validated != progress.step:
                self.validate()
            self.checkpoint(final=True)
            return self._summary(stop.signal)
        finally:
            stop.restore()
            self.bar.close()
            self.close()

    def _summary(self, signal_number: int | None) -> dict[str, Any]:
        fingerprints = _parameter_fingerprint(self.model)
        identical = True
        if self.world > 1:
            gathered = [torch.zeros_like(fingerprints) for _ in range(self.world)]
            dist.all_gather(gathered, fingerprints)
            identical = all(torch.equal(g, gathered[0]) for g in gathered)
        progress = self.progress
        summary = {"status": progress.status, "step": progress.step, "total_steps": self.total,
                   "best_val_psnr": progress.best, "skipped_steps": progress.skipped, "world_size": self.world,
                   "ranks_identical": identical, "signal": signal_number, **self.budget()}  # fmt: skip
        if progress.stop_reason:
            summary["stop_reason"] = progress.stop_reason
        if self.is_main:
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def close(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
        if self.writer is not None:
            self.writer.close()
        if self.world > 1:
            leave_group()


def train(
    config: TrainingConfig, resume: bool = False, progress: bool = True, allow_changes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Train (or resume) per ``config``; returns the summary that is also written to ``summary.json``.

    A resume refuses (:class:`ConfigChangedError`) a config that differs from the saved one, except in
    :data:`RESUMABLE_CHANGES` and the keys named in ``allow_changes``.
    """
    return Trainer(config, resume, progress, allow_changes).fit()
