"""Process groups, DDP / FSDP2 wrapping and full (unsharded) state dicts, for any trainer.

Runs unchanged as one plain process or under `torchrun --nproc_per_node N`: the environment
variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK) decide. Backend auto is nccl on CUDA and
gloo on CPU (so the distributed code paths are testable on a laptop).

State dicts always go through `torch.distributed.checkpoint.state_dict` with full tensors on
CPU: the files a run writes are the same whatever the strategy or world size, so a run can be
resumed with another one.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from ..config import ConfigError

Strategy = Literal["none", "ddp", "fsdp"]


@dataclass(frozen=True)
class DistEnv:
    """Who this process is: rank, world size, local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`devices.resolve_device` (this process's GPU under torchrun), made the current CUDA device."""
    from ..devices import resolve_device as resolve
    device = torch.device(resolve(name, local_rank % max(1, torch.cuda.device_count())))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def init_distributed(device: str = "auto", backend: str = "auto", timeout_minutes: float = 30.0) -> DistEnv:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistEnv(0, 1, 0, dev, None)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kw: dict[str, Any] = {"backend": backend, "timeout": timedelta(minutes=timeout_minutes)}
        if dev.type == "cuda":
            kw["device_id"] = dev
        dist.init_process_group(**kw)
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        if env.device.type == "cuda":
            dist.barrier(device_ids=[env.device.index])
        else:
            dist.barrier()


def all_reduce_mean(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Mean over processes (a copy; the input is left alone)."""
    t = t.detach().clone()
    if env.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= env.world_size
    return t


def broadcast_object(obj: Any, env: DistEnv, src: int = 0) -> Any:
    """Rank `src`'s Python object on every rank (e.g. a resume decision)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def resolve_strategy(strategy: str, env: DistEnv) -> Strategy:
    if strategy == "auto":
        return "ddp" if env.distributed else "none"
    if strategy not in ("none", "ddp", "fsdp"):
        raise ConfigError(f"unknown dist.strategy {strategy!r}; use auto, none, ddp or fsdp")
    if strategy != "none" and not env.distributed:
        return "none"  # one process: nothing to parallelise
    if strategy == "none" and env.distributed:
        raise ConfigError("dist.strategy none with several processes would train divergent copies; use ddp or fsdp")
    return strategy  # type: ignore[return-value]


def wrap_model(model: nn.Module, env: DistEnv, strategy: Strategy, shard_units: Iterable[nn.Module] = (),
               reshard_after_forward: bool = True) -> nn.Module:
    """The module to call in the training step.

    none: `model` itself. ddp: a DistributedDataParallel wrapper around it. fsdp: `model`
    itself, sharded in place with FSDP2 `fully_shard` (each of `shard_units`, e.g. the
    transformer blocks, then the root); build the optimizer AFTER this call, on `model`.
    """
    if strategy == "none":
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [env.device.index] if env.device.type == "cuda" else None
        return DDP(model, device_ids=ids)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    # our trainers never modify a module's output in place; the view warning is noise for them
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(env.device.type, (env.world_size,))
    for unit in shard_units:
        fully_shard(unit, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return model


@contextlib.contextmanager
def no_grad_sync(train_module: nn.Module, strategy: Strategy, skip: bool) -> Iterator[None]:
    """Skip the gradient all-reduce during accumulation micro-steps (`skip` True)."""
    if not skip or strategy == "none":
        yield
        return
    if strategy == "ddp":
        with train_module.no_sync():  # type: ignore[operator]
            yield
        return
    train_module.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        train_module.set_requires_gradient_sync(True)  # type: ignore[operator]


# ---------------------------------------------------------------------------- state dicts


def _options(cpu_offload: bool = True) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded CPU state dict (collective under FSDP; only rank 0 gets the tensors then)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    return get_model_state_dict(model, options=_options())


def load_full_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load an unsharded state dict on every rank (every rank passes the same full dict)."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict
    set_model_state_dict(model, state, options=_options(cpu_offload=False))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Optimizer state keyed by parameter names, unsharded (collective under FSDP)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
    return get_optimizer_state_dict(model, optimizer, options=_options())


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict
    set_optimizer_state_dict(model, optimizer, state, options=_options(cpu_offload=False))


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The full value of a possibly sharded tensor (collective for DTensors)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


__all__ = ["DistEnv", "resolve_device", "init_distributed", "shutdown", "barrier", "all_reduce_mean",
           "broadcast_object", "resolve_strategy", "wrap_model", "no_grad_sync", "full_model_state",
           "load_full_model_state", "full_optimizer_state", "load_full_optimizer_state", "full_tensor"]
