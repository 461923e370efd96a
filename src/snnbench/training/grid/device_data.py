"""The training and test tables on the device, batches gathered there."""


import numpy as np
import torch

from snnbench.data import Rows, Tables
from snnbench.errors import SnnbenchError
from snnbench.training.grid.stacked import StackedNet



# --- data on the device --------------------------------------------------------------------------

_DEVICE_TABLES: dict = {}


def _on_device(array: np.ndarray, device: torch.device, name: str) -> torch.Tensor:
    key = (name, str(device))
    if key not in _DEVICE_TABLES:
        _DEVICE_TABLES[key] = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    return _DEVICE_TABLES[key]


class DeviceRows:
    """Each member's samples (rows of a split's tables, all members the same count) on the device."""

    def __init__(self, split_tables: Tables, split: str, rows: list[Rows], device: torch.device):
        def stacked(part):
            arrays = [getattr(r, part) for r in rows]
            return None if arrays[0] is None else torch.from_numpy(np.stack(arrays)).to(device)

        if len({len(r) for r in rows}) != 1:
            raise SnnbenchError("members of one stack must have as many samples each")
        self.n = len(rows[0])
        self.images = (_on_device(split_tables.images, device, f"images/{split}")
                       if split_tables.images is not None and rows[0].image is not None else None)
        self.recordings = (_on_device(split_tables.recordings, device, f"recordings/{split}")
                           if split_tables.recordings is not None and rows[0].recording is not None else None)
        self.image_rows, self.recording_rows, self.labels = stacked("image"), stacked("recording"), stacked("y")

    def batch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(G, B, F)`` and labels ``(G, B)`` of each member's samples at ``positions`` ``(G, B)``."""
        parts = []
        if self.images is not None:
            parts.append(self.images[self.image_rows.gather(1, positions)])
        if self.recordings is not None:
            parts.append(self.recordings[self.recording_rows.gather(1, positions)])
        x = parts[0] if len(parts) == 1 else torch.cat(parts, -1)
        return x, self.labels.gather(1, positions)


@torch.no_grad()
def count_correct(net: StackedNet, rows: DeviceRows, batch_size: int = 1000) -> torch.Tensor:
    """Correctly classified samples per member ``(G,)``, on the device."""
    correct = torch.zeros(len(net), dtype=torch.long, device=net.device)
    for a in range(0, rows.n, batch_size):
        positions = torch.arange(a, min(a + batch_size, rows.n), device=net.device).expand(len(net), -1)
        x, y = rows.batch(positions)
        correct += (net.forward(x).argmax(-1) == y).sum(1)
    return correct
