"""Batches of inputs of alike length, so a pass over text spends little on padding.

A batch is padded to its longest input: in consecutive batches of headlines a quarter of the
tokens are padding, and of inputs whose lengths vary more, often over half. Work whose result
is per input (CAV interventions) batches inputs sorted by length instead.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The largest share of a batch's tokens that may be padding before a new batch is begun.
PADDING_WASTE = 0.1


def length_batches(counts: Sequence[int], most: int, waste: float = PADDING_WASTE
                   ) -> list[list[int]]:
    """Indices of the inputs with token ``counts``, in batches of at most ``most``: sorted by
    length, each batch closed when taking the next input would make more than ``waste`` of its
    padded tokens padding (or it is full)."""
    order = sorted(range(len(counts)), key=lambda i: counts[i])
    batches: list[list[int]] = []
    batch: list[int] = []
    real = 0
    for i in order:
        padded = counts[i] * (len(batch) + 1)  # sorted: the newcomer is the longest
        if batch and (len(batch) == most or real + counts[i] < (1 - waste) * padded):
            batches.append(batch)
            batch, real = [], 0
        batch.append(i)
        real += counts[i]
    if batch:
        batches.append(batch)
    return batches
