"""llmlab.train: optimizers, lr schedules, mixed precision, checkpoints, DDP/FSDP2, logging and the loop."""

from llmlab.train.checkpoint import find_checkpoint, is_complete_checkpoint, load_trainer_state, save_checkpoint
from llmlab.train.config import DataConfig, OptimConfig, PretrainConfig, ScheduleConfig, TrainConfig
from llmlab.train.loop import Trainer, seed_everything
from llmlab.train.optim import Lamb, available_optimizers, build_optimizer, param_groups
from llmlab.train.schedule import LRSchedule

__all__ = [
    "DataConfig",
    "LRSchedule",
    "Lamb",
    "OptimConfig",
    "PretrainConfig",
    "ScheduleConfig",
    "TrainConfig",
    "Trainer",
    "available_optimizers",
    "build_optimizer",
    "find_checkpoint",
    "is_complete_checkpoint",
    "load_trainer_state",
    "param_groups",
    "save_checkpoint",
    "seed_everything",
]
