"""How much a learned kernel looks like the lesson's hand-made edge detector."""
from __future__ import annotations

import torch
import torch.nn.functional as F

TOP_EDGE = torch.tensor([[-1.0, -1.0, -1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
# fastbook's own kernel: rows top to bottom, so it fires where ink (high values) starts below a dark row


def templates(size: int, rotations: int = 4) -> torch.Tensor:
    "(T, size, size): the top-edge kernel and its rotations, at every position inside a size x size kernel."
    out = []
    for r in range(rotations):
        k = torch.rot90(TOP_EDGE, r)
        for i in range(size - 2):
            for j in range(size - 2):
                t = torch.zeros(size, size)
                t[i:i + 3, j:j + 3] = k
                out.append(t)
    return torch.stack(out)


def edge_match(kernels: torch.Tensor, rotations: int = 4) -> torch.Tensor:
    """Per kernel (N, k, k): the largest |cosine| between the kernel and a template (both centred): 1 for an
    edge detector of the lesson's kind (either sign, any of `rotations` orientations), small for noise."""
    t = templates(kernels.shape[-1], rotations)
    k = kernels.flatten(1) - kernels.flatten(1).mean(1, keepdim=True)
    t = t.flatten(1) - t.flatten(1).mean(1, keepdim=True)
    return (F.normalize(k, dim=1) @ F.normalize(t, dim=1).T).abs().max(1).values
