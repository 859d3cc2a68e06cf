"""The training loop: the paper's recipe on one CPU or many GPUs (torchrun / DistributedDataParallel).

Run it with ``sian train CONFIG.yaml [key=value ...]``; under ``torchrun --nproc_per_node=N`` the same
command trains with DDP (gloo on CPU, NCCL on GPU). ``train.batch_size`` is the *global* batch: each
of the N processes takes ``batch_size / N`` samples of every step, and DDP averages the gradients, so
the result equals one process training on the whole batch.

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
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from .._allocator import keep_freed_memory
from .._progress import progress_bar
from ..hub import resolve_weights
from ..models import create_model, get_variant
from ..precision import PrecisionChoice, autocast, resolve_precision
from ..weights import load_state_dict_checked, read_weights_file, save_weights, sha256_file
from .checkpoint import STATE_FILE, load_state, save_state
from .config import TrainingConfig, to_dict
from .datasets import (
    PairedPatches,
    StepSampler,
    SyntheticPatches,
    list_clean_images,
    read_exclusions,
    read_pair_names,
    split_holdout,
)
from .losses import stage_loss
from .validation import build_validation_set, validate

logger = logging.getLogger(__name__)

__all__ = [
    "RESUMABLE_CHANGES",
    "CheckpointError",
    "ConfigChangedError",
    "NonFiniteLossError",
    "config_changes",
    "forward_loss",
    "release_init",
    "train",
]

# Keys that may differ between a run and its resume without asking: how it runs, not what it learns.
RESUMABLE_CHANGES = (
    "train.threads", "train.device", "train.precision", "train.log_every", "train.val_every",
    "train.checkpoint_minutes", "train.nonfinite", "train.max_nonfinite", "train.out_dir", "data.workers",
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
    defaults = _flatten(to_dict(TrainingConfig()))
    old, new = _flatten(saved), _flatten(current)
    return {key: (old.get(key, defaults.get(key)), value)
            for key, value in new.items() if old.get(key, defaults.get(key)) != value}  # fmt: skip


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


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device=cuda, but this PyTorch build sees no CUDA device")
        return torch.device("cuda", local_rank)
    return torch.device(name)


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
    data = config.data
    if data.train_pairs:
        held_out = read_pair_names(data.val_split) if data.val_split else []
        dataset = PairedPatches(
            data.train_pairs, data.patch_size, data.patch_stride, data.hflip, config.train.seed, held_out
        )
        return dataset, (dataset.patches_per_epoch if data.patch_stride else None)
    files = list_clean_images(data.train_clean, read_exclusions(data.exclude), min_size=data.patch_size)
    files, _ = split_holdout(files, data.val_holdout)
    return SyntheticPatches(files, data.patch_size, data.synth_preset, data.hflip, config.train.seed), None


def _parameter_fingerprint(model: nn.Module) -> torch.Tensor:
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device).remainder_(97).add_(1)
    return torch.stack([flat.sum(), (flat * weights).sum(), flat.abs().max()])


def _psnr_rgb(output: torch.Tensor, target: torch.Tensor) -> float:
    mse = torch.mean((output.detach().clamp(0, 1) - target) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def train(
    config: TrainingConfig, resume: bool = False, progress: bool = True, allow_changes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Train (or resume) per ``config``; returns the summary that is also written to ``summary.json``.

    A resume refuses (:class:`ConfigChangedError`) a config that differs from the saved one, except in
    :data:`RESUMABLE_CHANGES` and the keys named in ``allow_changes``.
    """
    rank, world, local_rank = _distributed()
    keep_freed_memory()  # SIAN's step frees and re-allocates tens of MB hundreds of times (sian._allocator)
    device = _device(config.train.device, local_rank)
    precision = resolve_precision(config.train.precision, device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    is_main = rank == 0
    out_dir = Path(config.train.out_dir)
    train_cfg = config.train

    dataset, patches_per_epoch = _build_data(config)
    total = train_cfg.steps or train_cfg.epochs * math.ceil(patches_per_epoch / train_cfg.batch_size)

    torch.manual_seed(train_cfg.seed)  # the same initial weights on every process
    model = create_model(config.model.variant, **config.model.overrides)
    init_record = None
    if config.model.init:
        init_path = resolve_weights(config.model.init)
        _, _, init_state, init_metadata = read_weights_file(init_path)
        # Which file a fine-tune started from: a name's file may be replaced later (a newly shipped model).
        init_record = {"step": 0, "init": config.model.init, "init_sha256": sha256_file(init_path),
                       "init_step": init_metadata.get("step")}  # fmt: skip
        load_state_dict_checked(model, init_state, source=f"model.init weights {config.model.init}")
    elif get_variant(config.model.variant).arch == "sian":
        release_init(model)
    model.to(device).train()
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.optim.lr, betas=tuple(config.optim.betas), weight_decay=config.optim.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, total))
    # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
    scaler = torch.amp.GradScaler(device.type, enabled=precision.precision == "fp16")
    step, best = 0, -math.inf
    # Training time summed over every resume, so a run spread over sessions reports its real budget.
    wall_before, cpu_before = 0.0, 0.0
    state = load_state(out_dir) if resume else None
    if resume and state is None and is_main:
        logger.info(f"no checkpoint in {out_dir}: starting a new run")
    if state is not None:
        changed = config_changes(state.get("config", {}), to_dict(config))
        refused = {k: v for k, v in changed.items() if k not in RESUMABLE_CHANGES and k not in allow_changes}
        if refused:
            lines = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
            raise ConfigChangedError(
                f"the config differs from the run saved in {out_dir}: {lines}. Resume with the saved config "
                f"({out_dir / 'config.yaml'}), or allow the change with --allow-change KEY"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        step, best = int(state["step"]), float(state["best"])
        wall_before, cpu_before = float(state.get("wall_seconds", 0.0)), float(state.get("cpu_seconds", 0.0))
    elif is_main and not resume and (out_dir / "state.pt").exists():
        raise FileExistsError(f"{out_dir} already holds a run: pass --resume to continue it, or pick another out_dir")
    net = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if world > 1
        else model
    )

    if is_main and out_dir.is_dir():  # temporary files of a run killed mid-write (SIGKILL skips cleanup)
        for debris in out_dir.glob(".*.tmp*"):
            debris.unlink(missing_ok=True)
    val_set = build_validation_set(config.data) if is_main else None
    writer = None
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(to_dict(config)), out_dir / "config.yaml")
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out_dir / "tb"), purge_step=step)
        except ImportError:  # pragma: no cover - tensorboard is optional
            writer = None
    log_file = open(out_dir / "log.jsonl", "a") if is_main else None  # noqa: SIM115 (closed in finally)

    wall_start, cpu_start = time.perf_counter(), time.process_time()

    def budget() -> dict[str, float]:
        return {"wall_seconds": wall_before + time.perf_counter() - wall_start,
                "cpu_seconds": cpu_before + time.process_time() - cpu_start}  # fmt: skip

    def log(record: dict[str, Any]) -> None:
        if log_file is not None:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
        if writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step" and math.isfinite(value):
                    writer.add_scalar(key, value, record["step"])

    if init_record is not None and state is None:
        log(init_record)
    # Which precision ran from which step: a run resumed on other hardware may switch (train.precision=auto).
    log({"step": step, "precision": precision.precision, "precision_reason": precision.reason})
    if is_main:
        logger.info(f"precision {precision.precision} ({precision.reason})")

    def checkpoint(final: bool = False) -> None:
        nonlocal good_state
        good_state = {"model": copy.deepcopy(model.state_dict()), "optimizer": copy.deepcopy(optimizer.state_dict())}
        if not is_main:
            return
        try:
            write_checkpoint()
        except OSError as exc:  # e.g. a full disk: the previous checkpoint is intact (atomic writes)
            message = f"step {step}: could not write the checkpoint ({exc}); the previous one in {out_dir} is intact"
            log({"step": step, "checkpoint_error": str(exc)})
            if final:
                raise CheckpointError(message) from exc
            bar.write(message + "; training goes on and retries at the next interval")

    def write_checkpoint() -> None:
        arch = get_variant(config.model.variant).arch
        save_weights(out_dir / "last.safetensors", model, arch, model.config, step=str(step))
        save_state(out_dir, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "step": step, "best": best, "rng": torch.get_rng_state(), "config": to_dict(config), **budget(),
            "scaler": scaler.state_dict(),
        })  # fmt: skip

    def run_validation() -> None:
        nonlocal best
        if val_set is None or not is_main:
            return
        scores = validate(model, val_set, device)
        log({"step": step, **{k: v for k, v in scores.items() if k != "val_stage_psnr"},
             "val_stage_psnr": scores["val_stage_psnr"], **budget()})  # fmt: skip
        if scores["val_psnr"] > best:
            best = scores["val_psnr"]
            save_weights(out_dir / "best.safetensors", model, get_variant(config.model.variant).arch,
                         model.config, step=str(step), val_psnr=f"{best:.4f}")  # fmt: skip
        bar.write(f"step {step}: val PSNR {scores['val_psnr']:.3f} dB (input {scores['val_input_psnr']:.3f}), "
                  f"SSIM {scores['val_ssim']:.4f}")  # fmt: skip

    sampler = StepSampler(step, total, train_cfg.batch_size, rank, world)
    loader = DataLoader(
        dataset, batch_size=train_cfg.batch_size // world, sampler=sampler, num_workers=config.data.workers,
        persistent_workers=config.data.workers > 0,
    )  # fmt: skip
    stop = _StopRequest()
    bar = progress_bar(total=total, initial=step, desc="train", unit="step", disable=not (progress and is_main))
    last_checkpoint = time.monotonic()
    skipped, consecutive_bad = 0, 0
    # What "rollback" restores: the weights and optimizer state of the last checkpoint (or the start).
    good_state = {"model": copy.deepcopy(model.state_dict()), "optimizer": copy.deepcopy(optimizer.state_dict())}
    status = "finished"
    window_start, window_samples = time.perf_counter(), 0
    try:
        for rainy, clean in loader:
            rainy, clean = rainy.to(device, non_blocking=True), clean.to(device, non_blocking=True)
            outputs, loss = forward_loss(net, rainy, clean, train_cfg.loss, precision)
            finite = torch.isfinite(loss.detach()).float()
            if world > 1:
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            optimizer.zero_grad(set_to_none=True)
            problem = None
            if finite.item() != 1.0:
                problem = "loss"
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                # The norm is needed anyway to catch inf/NaN gradients; max_norm inf leaves them unscaled.
                norm = nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip or math.inf)
                # Under fp16 an overflow is the scaler's business: it skips that update and lowers its scale.
                if torch.isfinite(norm) or scaler.is_enabled():
                    scaler.step(optimizer)
                else:
                    problem = "gradient"
                scaler.update()
            if problem is None:
                consecutive_bad = 0
            else:
                skipped += 1
                consecutive_bad += 1
                bar.write(f"step {step + 1}: non-finite {problem}, update skipped (policy: {train_cfg.nonfinite})")
                log({"step": step + 1, "nonfinite": problem, "policy": train_cfg.nonfinite})
                if train_cfg.nonfinite == "stop" or consecutive_bad > train_cfg.max_nonfinite:
                    raise NonFiniteLossError(
                        f"non-finite {problem} at step {step + 1} ({consecutive_bad} in a row); the weights "
                        f"were not updated and {out_dir / STATE_FILE} holds the last good checkpoint"
                    )
                if train_cfg.nonfinite == "rollback":
                    model.load_state_dict(good_state["model"])
                    optimizer.load_state_dict(good_state["optimizer"])
            scheduler.step()
            step += 1
            window_samples += rainy.shape[0] * world
            bar.update()
            if step % train_cfg.log_every == 0 or step == total:
                elapsed = time.perf_counter() - window_start
                pixels = window_samples * rainy.shape[-1] * rainy.shape[-2]
                psnr = _psnr_rgb(outputs[-1], clean)
                record = {"step": step, "loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                          "train_psnr_rgb": psnr, "pixels_per_second": pixels / elapsed, **budget()}  # fmt: skip
                window_start, window_samples = time.perf_counter(), 0
                log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", psnr=f"{record['train_psnr_rgb']:.2f}")
            if train_cfg.val_every and step % train_cfg.val_every == 0 and step < total:
                run_validation()
            requested = torch.tensor(float(stop.signal is not None))
            if world > 1:
                dist.all_reduce(requested, op=dist.ReduceOp.MAX)
            if requested.item():
                status = "interrupted"
                break
            if time.monotonic() - last_checkpoint > train_cfg.checkpoint_minutes * 60:
                checkpoint()
                last_checkpoint = time.monotonic()
        if status == "finished":
            run_validation()
        checkpoint(final=True)
        fingerprints = _parameter_fingerprint(model)
        identical = True
        if world > 1:
            gathered = [torch.zeros_like(fingerprints) for _ in range(world)]
            dist.all_gather(gathered, fingerprints)
            identical = all(torch.equal(g, gathered[0]) for g in gathered)
        summary = {"status": status, "step": step, "total_steps": total, "best_val_psnr": best,
                   "skipped_steps": skipped, "world_size": world, "ranks_identical": identical,
                   "signal": stop.signal, **budget()}  # fmt: skip
        if is_main:
            (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary
    finally:
        stop.restore()
        bar.close()
        if log_file is not None:
            log_file.close()
        if writer is not None:
            writer.close()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
