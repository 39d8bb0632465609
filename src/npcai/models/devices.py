"""Where a training run computes: accelerator, devices, precision, strategy and nodes.

The five options are fields of :class:`npcai.models.train.TrainConfig` (so ``npcai train``,
a study's ``training:`` block and ``npcai segment train`` share them) and are checked here
twice: :meth:`DeviceOptions.check` refuses impossible combinations wherever the options are
written (a study file is validated on a login node without a GPU), and
:meth:`DeviceOptions.resolve` checks them against this machine just before training (a GPU
asked for where torch sees none; more GPUs than are visible; fp16 mixed precision on a CPU,
which Lightning would silently turn into bf16). :func:`hardware_record` describes what the
Trainer actually used, for the run's ``config.yaml``.

Several devices (or nodes) train with Lightning's DDP: one process per device, each
launched by re-executing the command (Lightning's subprocess launcher) or by the cluster
(SLURM's ``srun``). :func:`launch_rank` tells a process its global rank *before* a Trainer
exists, so that only rank 0 prepares and writes output folders.

Examples:
    >>> opts = DeviceOptions(accelerator="cpu", devices=2, strategy="ddp").check()
    >>> opts.world_size, opts.distributed
    (2, True)
    >>> DeviceOptions(accelerator="cpu", precision="16-mixed").check()
    Traceback (most recent call last):
    npcai.errors.NpcaiError: precision 16-mixed (fp16 automatic mixed precision) needs a CUDA GPU, but the accelerator is cpu; use bf16-mixed or 32 on a CPU
"""
from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

from npcai.errors import NpcaiError

__all__ = ["ACCELERATORS", "PRECISIONS", "STRATEGIES", "DeviceOptions", "ResolvedDevices", "Hardware",
           "visible_gpus", "launch_rank", "hardware_record"]

ACCELERATORS = ("auto", "cpu", "gpu")
PRECISIONS = ("32", "16-mixed", "bf16-mixed")
STRATEGIES = ("auto", "ddp")


def visible_gpus() -> int:
    """CUDA GPUs torch can use here (0 without a CUDA build, driver or visible device)."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def _no_gpu_reason() -> str:
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return f"torch sees no CUDA device (CUDA_VISIBLE_DEVICES={visible!r})"
    return "torch sees no CUDA device (no GPU or no working driver)"


@dataclass(frozen=True)
class DeviceOptions:
    """The device options of one training run (``TrainConfig`` fields of the same names).

    Attributes:
        accelerator: ``auto`` (a CUDA GPU when torch sees one, else the CPU), ``cpu`` or ``gpu``.
        devices: devices per node; more than one trains with DDP (one process per device;
            on a CPU, processes sharing its cores).
        precision: ``32``, ``16-mixed`` (fp16 autocast, GPU only) or ``bf16-mixed``.
        strategy: ``auto`` (DDP when more than one device or node) or ``ddp``.
        num_nodes: machines taking part (DDP across nodes: launched by SLURM's ``srun`` or
            by hand on each node with ``NODE_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``).
    """

    accelerator: str = "auto"
    devices: int = 1
    precision: str = "32"
    strategy: str = "auto"
    num_nodes: int = 1

    @classmethod
    def of(cls, options: Any) -> "DeviceOptions":
        """The device options of a ``TrainConfig``, ``SegTrainConfig`` or options dict (missing: defaults)."""
        get = options.get if isinstance(options, dict) else lambda k, d=None: getattr(options, k, d)
        defaults = cls()
        return cls(**{k: get(k, v) if get(k, v) is not None else v for k, v in asdict(defaults).items()})

    @property
    def world_size(self) -> int:
        return int(self.devices) * int(self.num_nodes)

    @property
    def distributed(self) -> bool:
        """True when training runs in several processes (or explicitly under DDP)."""
        return self.world_size > 1 or self.strategy == "ddp"

    def check(self) -> "DeviceOptions":
        """Refuse unknown values and impossible combinations (no hardware is queried)."""
        checks = [
            (self.accelerator in ACCELERATORS,
             f"accelerator {self.accelerator!r}: choose one of {', '.join(ACCELERATORS)}"),
            (str(self.precision) in PRECISIONS,
             f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}"),
            (self.strategy in STRATEGIES, f"strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}"),
            (isinstance(self.devices, int) and self.devices >= 1, f"devices {self.devices}: must be at least 1"),
            (isinstance(self.num_nodes, int) and self.num_nodes >= 1,
             f"num_nodes {self.num_nodes}: must be at least 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise NpcaiError(msg)
        if self.accelerator == "cpu":
            self._refuse_fp16_on_cpu("the accelerator is cpu")
        return self

    def _refuse_fp16_on_cpu(self, why: str) -> None:
        if str(self.precision) == "16-mixed":
            raise NpcaiError(f"precision 16-mixed (fp16 automatic mixed precision) needs a CUDA GPU, but {why}; "
                             f"use bf16-mixed or 32 on a CPU")

    def resolve(self, gpus: int | None = None) -> "ResolvedDevices":
        """These options on this machine (``gpus``: visible CUDA GPUs, default queried):
        ``auto`` becomes ``gpu`` or ``cpu``; a GPU request without GPUs, or with too few,
        fails in one line."""
        self.check()
        gpus = visible_gpus() if gpus is None else int(gpus)
        accelerator = self.accelerator
        if accelerator == "auto":
            accelerator = "gpu" if gpus else "cpu"
        if accelerator == "gpu":
            if gpus == 0:
                raise NpcaiError(f"accelerator gpu: {_no_gpu_reason()}; train on the CPU (accelerator cpu or "
                                 f"auto) or run where a GPU is visible")
            if self.devices > gpus:
                raise NpcaiError(f"devices {self.devices}: only {gpus} CUDA GPU(s) are visible here; "
                                 f"ask for at most {gpus}")
        else:
            self._refuse_fp16_on_cpu("no CUDA GPU is used here" if self.accelerator == "auto"
                                     else "the accelerator is cpu")
        strategy = "ddp" if self.distributed else "auto"
        return ResolvedDevices(accelerator, int(self.devices), str(self.precision), strategy, int(self.num_nodes))


@dataclass(frozen=True)
class ResolvedDevices:
    """Device options checked on this machine: what the Trainer is given."""

    accelerator: str        # cpu | gpu
    devices: int
    precision: str
    strategy: str           # auto (one process) | ddp
    num_nodes: int

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    def trainer_kwargs(self, *, unused_parameters: bool = False) -> dict[str, Any]:
        """Keyword arguments of ``lightning.pytorch.Trainer``.

        Under DDP npcai's data module shards the data itself (``use_distributed_sampler=False``:
        seeded per-epoch order, unpadded validation shards). ``unused_parameters``: the model
        may hold parameters that no loss reaches (e.g. encoder stages a shallow U-Net leaves
        out); DDP then searches for them every step."""
        kwargs: dict[str, Any] = {"accelerator": self.accelerator, "devices": self.devices,
                                  "num_nodes": self.num_nodes,
                                  "precision": "32-true" if self.precision == "32" else self.precision}
        if self.strategy == "ddp":
            kwargs.update(strategy="ddp_find_unused_parameters_true" if unused_parameters else "ddp",
                          use_distributed_sampler=False)
        return kwargs


def launch_rank(devices: int = 1) -> int:
    """This process's global DDP rank as its launcher set it, before any Trainer exists:
    ``RANK`` (torchrun), else SLURM's ``SLURM_PROCID`` in a multi-task job, else
    ``NODE_RANK * devices + LOCAL_RANK`` (Lightning's subprocess launcher); 0 for a plain
    process. Only rank 0 may prepare, write or rename output folders."""
    env = os.environ

    def number(name: str) -> int:
        try:
            return int(env.get(name, "0") or 0)
        except ValueError:
            return 0

    if "RANK" in env:
        return number("RANK")
    if number("SLURM_NTASKS") > 1 and "SLURM_PROCID" in env:
        return number("SLURM_PROCID")
    return number("NODE_RANK") * max(1, int(devices)) + number("LOCAL_RANK")


@dataclass(frozen=True)
class Hardware:
    """What a run trained on (``config.yaml["hardware"]``).

    Attributes:
        accelerator: ``cpu``, ``cuda`` or ``mps``.
        device_names: the devices of this node (GPU names, or the CPU's).
        devices_per_node, num_nodes, world_size: processes taking part (world = devices x nodes).
        strategy: Lightning's strategy (``single_device``, ``ddp``).
        precision: Lightning's precision (``32-true``, ``16-mixed``, ``bf16-mixed``).
        torch_threads: intra-op CPU threads of each process.
        cuda: the CUDA version torch was built with (None: CPU build).
    """

    accelerator: str
    device_names: list[str]
    devices_per_node: int
    num_nodes: int
    world_size: int
    strategy: str
    precision: str
    torch_threads: int
    cuda: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


_STRATEGY_NAMES = {"SingleDeviceStrategy": "single_device", "DDPStrategy": "ddp"}


def hardware_record(trainer) -> Hardware:
    """The hardware a fitted Lightning ``trainer`` used (this node's devices)."""
    import torch

    devices = list(getattr(trainer.strategy, "parallel_devices", None) or [trainer.strategy.root_device])
    kind = devices[0].type
    if kind == "cuda":
        names = [torch.cuda.get_device_name(d) for d in devices]
    else:
        names = [f"{_cpu_name()} ({os.cpu_count()} cores)" for _ in devices]
    strategy = _STRATEGY_NAMES.get(type(trainer.strategy).__name__, type(trainer.strategy).__name__)
    return Hardware(accelerator=kind, device_names=names, devices_per_node=int(trainer.num_devices),
                    num_nodes=int(trainer.num_nodes), world_size=int(trainer.world_size),
                    strategy=strategy,
                    precision=str(trainer.precision), torch_threads=int(torch.get_num_threads()),
                    cuda=torch.version.cuda)
