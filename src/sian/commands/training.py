"""``sian train`` and ``sian synth``: training runs and synthetic datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import OPTIONS, command_progress, exit_on_failures, fail, input_files, require_or_fail


def train_command(
    config: Annotated[Path, typer.Argument(help="YAML config (see configs/).")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. train.steps=100.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the checkpoint in train.out_dir.")] = False,
    show_summary: Annotated[
        bool,
        typer.Option(
            "--summary", help="Print the run's validation curve and its stopping rule's verdict; train nothing."
        ),
    ] = False,
    allow_change: Annotated[
        list[str] | None, typer.Option(help="With --resume: a config key that may differ from the saved run's.")
    ] = None,
) -> None:
    """Train SIAN or PReNet; the same command under torchrun runs DistributedDataParallel."""
    require_or_fail("train", "sian train")
    from ..training import load_config, train
    from ..training.stopping import VERDICT_FILE, summarize_run
    from ..training.trainer import CheckpointError, ConfigChangedError, NonFiniteLossError

    try:
        cfg = load_config(config, overrides or [])
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise fail(f"bad config: {exc}") from None
    except Exception as exc:  # OmegaConf's validation errors name the offending key
        raise fail(f"bad config: {exc}") from None
    if show_summary:
        log_file = Path(cfg.train.out_dir) / "log.jsonl"
        if not log_file.is_file():
            raise fail(f"no training log at {log_file}: the run has not started")
        typer.echo("\n".join(summarize_run(log_file, cfg.train.stop)))
        return
    try:
        summary = train(cfg, resume=resume, progress=not OPTIONS["quiet"], allow_changes=tuple(allow_change or ()))
    except (FileExistsError, FileNotFoundError, ConfigChangedError, ValueError) as exc:  # unusable data or init
        raise fail(str(exc)) from None
    except (NonFiniteLossError, CheckpointError) as exc:
        raise fail(str(exc), code=1) from None
    typer.echo(f"{summary['status']} at step {summary['step']}/{summary['total_steps']}; "
               f"best validation PSNR {summary['best_val_psnr']:.3f} dB; output in {cfg.train.out_dir}")  # fmt: skip
    if summary.get("stop_reason"):  # train.stop ended it: say why (rank 0 knows)
        typer.echo(f"{summary['stop_reason']}; the verdict is in {Path(cfg.train.out_dir) / VERDICT_FILE}")
    if summary["status"] == "interrupted":
        typer.echo(f"resume with: sian train {config} {' '.join(overrides or [])} --resume".rstrip())
        raise typer.Exit(128 + (summary["signal"] or 2))


def synth_command(
    inputs: Annotated[list[str], typer.Argument(help="Clean image files, folders or glob patterns.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset folder to write (generic layout).")],
    preset: Annotated[
        str,
        typer.Option(
            help="light (one streak family), heavy (layers + haze), classic (the Photoshop recipe), streaks, "
            "streaks-light, streaks-heavy (real streak layers from $SIAN_STREAK_BANK), raintrainh (real Rain100H rain "
            "layers from $SIAN_RAINTRAINH), or a mixture drawn per image such as streaks+light+classic."
        ),
    ] = "light",
    seed: Annotated[int, typer.Option(help="Base seed; image i uses seed + i.")] = 0,
    variants: Annotated[int, typer.Option(help="Rainy versions per clean image.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
) -> None:
    """Render synthetic rain onto clean images: OUTPUT/rainy/NAME.png and OUTPUT/gt/NAME.png."""
    from ..synth import PRESETS, is_preset, write_synthetic_pairs
    from ..synth.dataset import PARAMS_FILE

    if not is_preset(preset):
        raise fail(f"--preset must be one of {', '.join(PRESETS)} or a mixture like light+classic, got {preset!r}")
    files = command_progress(input_files(inputs), desc="synth", unit="img")
    try:
        report = write_synthetic_pairs(files, output, preset, seed, variants, overwrite)
    except FileNotFoundError as exc:  # a rain source's data (streak bank, RainTrainH pairs) is absent
        raise fail(str(exc)) from None
    typer.echo(f"wrote {len(report.records)} rainy/clean pair(s) to {output} (preset {preset}); parameters in "
               f"{PARAMS_FILE}")  # fmt: skip
    exit_on_failures(report.failures)
