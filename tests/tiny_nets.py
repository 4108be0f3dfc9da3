"""Small torch networks shared by tests (import as ``from tiny_nets import ...``)."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """Input 1x8x8: conv1 1->16 3x3 s1 p1, ReLU, conv2 16->32 3x3 s2 p1, ReLU, global average
    pool, flatten, fc 32->10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(torch.flatten(torch.mean(x, dim=(2, 3), keepdim=True), 1))
