"""Device strings checked up front: one line naming the bad device and the ones this machine has."""

from __future__ import annotations

import torch


def available_devices() -> list[str]:
    """The device strings this torch build can use here, e.g. ['cpu', 'cuda', 'cuda:0', 'mps']."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def resolve_device(name: str | torch.device | None) -> torch.device:
    """`name` as a torch.device ("auto"/None: cuda if available, else cpu).

    Raises:
        ValueError: not a device string, or a device this machine does not have (the message lists those it has).
    """
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; available here: {', '.join(available_devices())}") from None
    have = available_devices()
    if str(device) not in have and device.type not in {d.split(":")[0] for d in have}:
        raise ValueError(f"device {name!r} is not available here; available: {', '.join(have)}")
    if device.type == "cuda" and device.index is not None and str(device) not in have:
        raise ValueError(f"device {name!r} is not available here; available: {', '.join(have)}")
    return device
