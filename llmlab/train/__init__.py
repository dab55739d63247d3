"""llmlab.train: the one training loop (`Trainer`) and its objectives (pretraining, SFT), optimizers, lr schedules,
mixed precision, checkpoints, DDP/FSDP2, logging and run folders."""

from llmlab.train.checkpoint import find_checkpoint, is_complete_checkpoint, load_trainer_state, save_checkpoint
from llmlab.train.config import DataConfig, OptimConfig, PretrainConfig, ScheduleConfig, TrainConfig
from llmlab.train.optim import Lamb, available_optimizers, build_optimizer, param_groups
from llmlab.train.pretrain_loop import PretrainTrainer
from llmlab.train.schedule import LRSchedule
from llmlab.train.sft_loop import SFTTrainer
from llmlab.train.trainer import Trainer, seed_everything

__all__ = [
    "DataConfig",
    "LRSchedule",
    "Lamb",
    "OptimConfig",
    "PretrainConfig",
    "PretrainTrainer",
    "SFTTrainer",
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
