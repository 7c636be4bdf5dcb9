"""Batches of inputs of alike length, so a pass over text spends little on padding, and the
tokens a pass over batches processes (what its time grows with).

A batch is padded to its longest input: in consecutive batches of headlines a quarter of the
tokens are padding, and of inputs whose lengths vary more, often over half. Work whose result
is per input (predictions, CAV interventions) batches inputs sorted by length instead.
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


def batches_of(counts: Sequence[int] | None, n: int, most: int, by_length: bool = True
               ) -> list[list[int]]:
    """Indices of ``n`` inputs in batches of at most ``most``: of alike length where their
    token ``counts`` are known and ``by_length``, else in order."""
    if counts is not None and by_length:
        return length_batches(counts, most)
    return [list(range(i, min(i + most, n))) for i in range(0, n, most)]


def padded_tokens(counts: Sequence[int] | None, batches: Sequence[Sequence[int]]) -> int:
    """Tokens the passes over ``batches`` process, padding included; inputs where all have
    the same length (``counts`` None)."""
    if counts is None:
        return sum(len(b) for b in batches)
    return sum(len(b) * max(counts[i] for i in b) for b in batches if b)
