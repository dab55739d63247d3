"""Data-parallel training under ``torchrun``: DDP or FSDP2, gloo on CPU and nccl on CUDA.

- DDP (Li et al. 2020, https://arxiv.org/abs/2006.15704): every rank holds the whole model; gradients are
  all-reduced (averaged) during backward. During gradient accumulation we skip that all-reduce on all but the
  last micro-batch (``no_sync``).
- FSDP2 (``torch.distributed.fsdp.fully_shard``; ZeRO-3, Rajbhandari et al. 2020,
  https://arxiv.org/abs/1910.02054): parameters, gradients and optimizer state are sharded across ranks;
  each Transformer block is all-gathered just before it runs. We shard every block, then the root (embeddings,
  final norm, LM head). Checkpoints gather a full, unsharded state dict on rank 0 (on CPU).

Launch: ``torchrun --nproc_per_node=2 -m llmlab pretrain --config ... train.distributed=fsdp``. The data loaders
give each rank its slice of the global batch, so N ranks with ``batch_size`` B train exactly like one process
with batch N*B.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from llmlab.train.config import DISTRIBUTED_MODES as MODES


@dataclass
class DistContext:
    """Who we are: ``mode`` is ``none`` (single process), ``ddp`` or ``fsdp``."""

    mode: str = "none"
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that logs and writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.mode != "none"


def init_distributed(mode: str, device_type: str) -> DistContext:
    """Read torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE) and start the process group.

    ``auto`` means DDP when launched with more than one process, else a single process. A single process
    (plain ``llmlab pretrain`` or ``torchrun --nproc_per_node=1``) never wraps the model.

    Args:
        mode: ``train.distributed`` (auto/none/ddp/fsdp).
        device_type: ``cpu`` or ``cuda`` (picks the gloo or nccl backend).
    """
    if mode not in MODES:
        raise ValueError(f"unknown train.distributed '{mode}'; choose one of: {', '.join(MODES)}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if mode == "none":
        raise ValueError(
            f"launched with {world_size} processes but train.distributed=none; set train.distributed=ddp or fsdp"
        )
    mode = "ddp" if mode == "auto" else mode
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(mode=mode, rank=rank, local_rank=local_rank, world_size=world_size)


def cleanup(ctx: DistContext) -> None:
    """Tear down the process group (call at the end of training, also on errors)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def _blocks(model: nn.Module) -> nn.ModuleList:
    """The Transformer block list: the first ``nn.ModuleList`` in the module tree (``GPT.blocks``)."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(f"{type(model).__name__} has no nn.ModuleList of blocks to shard with FSDP2")


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """Wrap ``model`` (already on ``device``) for data parallelism. Returns the module to call in training.

    For FSDP2 ``fully_shard`` works in place (the returned module is ``model`` itself, now holding DTensor
    shards), so build the optimizer after this call.
    """
    if ctx.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        # A Mixture-of-Experts step may route no token to some expert: DDP must then look for unused params.
        moe = getattr(getattr(model, "config", None), "moe_num_experts", 0) > 0
        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=moe)
    if ctx.mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in _blocks(model):
            fully_shard(block)
        fully_shard(model)
        return model
    return model


def sync_context(model: nn.Module, ctx: DistContext, sync: bool) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce / reduce-scatter on micro-batches that are not the last of a step."""
    if ctx.mode == "ddp":
        return contextlib.nullcontext() if sync else model.no_sync()  # type: ignore[operator]
    if ctx.mode == "fsdp":
        model.set_requires_gradient_sync(sync)  # type: ignore[operator]
    return contextlib.nullcontext()


def all_reduce_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average a (scalar) tensor over ranks; identity for a single process."""
    if ctx.enabled:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= ctx.world_size
    return value


def all_reduce_sum(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks; identity for a single process."""
    if ctx.enabled:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def full_model_state_dict(model: nn.Module, ctx: DistContext) -> dict[str, torch.Tensor]:
    """The full, unsharded model state dict on CPU (complete on rank 0; under FSDP others get ``{}``).

    All ranks must call this (FSDP all-gathers the shards).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if ctx.mode == "fsdp":
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def full_optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer, ctx: DistContext) -> dict:
    """The optimizer state keyed by parameter name (FQN), unsharded, on CPU; all ranks must call it.

    The FQN-keyed format is the same for single-process, DDP and FSDP2 runs, so a checkpoint can be resumed
    under a different mode.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state_dict(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, ctx: DistContext
) -> None:
    """Load a `full_optimizer_state_dict` (every rank passes the full dict; FSDP keeps its own shard)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=ctx.mode == "fsdp")
    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=options)
