"""The GPU class catalogue: published figures of the accelerators traded on Suangu.

Figures are the vendors' published data-sheet values: memory, dense FP16 tensor throughput
(without structured sparsity) and board power (TDP / max board power). Speed comparisons
between classes (work in reference GPU-hours) start from the FP16 figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from suangu.core.errors import UnknownReferenceError, ValidationError


@dataclass(frozen=True, slots=True)
class GpuClass:
    """One model of accelerator."""

    name: str
    vendor: str
    memory_gib: int
    fp16_dense_tflops: float
    board_power_w: int
    source: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise ValidationError(
                "must not be empty", field="name", fix="give the GPU class a name"
            )
        if self.memory_gib <= 0:
            raise ValidationError(
                f"must be positive, got {self.memory_gib}", field="memory_gib", fix="use GiB"
            )
        if not self.fp16_dense_tflops > 0:
            raise ValidationError(
                f"must be positive, got {self.fp16_dense_tflops}",
                field="fp16_dense_tflops",
                fix="use the dense (non-sparse) FP16 tensor TFLOPS of the data sheet",
            )
        if self.board_power_w <= 0:
            raise ValidationError(
                f"must be positive, got {self.board_power_w}",
                field="board_power_w",
                fix="use the board power (TDP) in watts",
            )


_NVIDIA_H100 = "NVIDIA H100 Tensor Core GPU datasheet (SXM5)"
_CATALOGUE: tuple[GpuClass, ...] = (
    GpuClass("H100-SXM-80GB", "NVIDIA", 80, 989.4, 700, _NVIDIA_H100),
    GpuClass("H800-SXM-80GB", "NVIDIA", 80, 989.4, 700, "H100 silicon for China, NVLink cut"),
    GpuClass("H20-96GB", "NVIDIA", 96, 148.0, 400, "NVIDIA H20 product brief"),
    GpuClass("A100-SXM-80GB", "NVIDIA", 80, 312.0, 400, "NVIDIA A100 datasheet (SXM4)"),
    GpuClass("A800-SXM-80GB", "NVIDIA", 80, 312.0, 400, "A100 silicon for China, NVLink cut"),
    GpuClass("L40S", "NVIDIA", 48, 362.05, 350, "NVIDIA L40S datasheet"),
    GpuClass("RTX-4090", "NVIDIA", 24, 165.2, 450, "Ada whitepaper, FP16 tensor, FP16 acc."),
    GpuClass("Ascend-910B", "Huawei", 64, 320.0, 400, "Huawei Ascend 910B published FP16"),
)

#: The published catalogue, by name.
CATALOGUE: Mapping[str, GpuClass] = MappingProxyType({g.name: g for g in _CATALOGUE})

#: Short names people type, mapped to catalogue names.
ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "H100": "H100-SXM-80GB",
        "H800": "H800-SXM-80GB",
        "H20": "H20-96GB",
        "A100": "A100-SXM-80GB",
        "A800": "A800-SXM-80GB",
        "4090": "RTX-4090",
        "910B": "Ascend-910B",
    }
)


def gpu_class(name: str, catalogue: Mapping[str, GpuClass] = CATALOGUE) -> GpuClass:
    """Look a GPU class up by catalogue name or alias (case-insensitive)."""
    wanted = name.strip()
    for key in (wanted, ALIASES.get(wanted.upper(), ""), ALIASES.get(wanted, "")):
        if key and key in catalogue:
            return catalogue[key]
    folded = {k.upper(): v for k, v in catalogue.items()}
    if wanted.upper() in folded:
        return folded[wanted.upper()]
    raise UnknownReferenceError(
        f"unknown GPU class {name!r}",
        field="gpu_class",
        fix=f"use one of {', '.join(sorted(catalogue))}",
    )
