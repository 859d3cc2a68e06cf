"""Training: typed configs, step-indexed datasets, the stage losses, checkpoints and the DDP-ready loop."""

from .config import TrainingConfig, load_config
from .losses import StageLoss, stage_loss
from .trainer import train

__all__ = ["StageLoss", "TrainingConfig", "load_config", "stage_loss", "train"]
