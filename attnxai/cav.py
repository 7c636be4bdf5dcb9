"""Token-level concept activation vectors (CAVs), all of a layer's CAVs in one batched solve.

Every CAV is an L2-regularised, class-balanced logistic regression separating the token
activations of its positive examples from those of its negative examples; its unit weight
vector (pointing toward the positives) is the CAV. All CAVs of a layer share one design
matrix (the tokens of every example involved) and differ only in which rows they use, so
they are fitted together: logits for all CAVs are one matrix product, and one L-BFGS run
minimises the sum of the independent objectives.

Held-out accuracy is measured on examples (not tokens) left out of each CAV's training, so
tokens of one sentence or image never sit on both sides of the split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class CAVSpec:
    """One CAV to train: which examples are positive and negative (indices into the example table)."""

    name: str  # the concept (or pseudo-concept) it belongs to
    rep: int  # repetition index
    kind: str  # "concept" | "random"
    positives: np.ndarray
    negatives: np.ndarray


@dataclass
class TokenTable:
    """Token activations of one layer for every example, as rows of one matrix."""

    rows: torch.Tensor  # [N, d]
    example: torch.Tensor  # [N] example index of each row

    @staticmethod
    def from_examples(acts: torch.Tensor, mask: torch.Tensor) -> TokenTable:
        """From activations [E, T, d] and a token mask [E, T] of the rows to keep."""
        ex_idx = torch.arange(acts.shape[0])[:, None].expand_as(mask)
        return TokenTable(rows=acts[mask], example=ex_idx[mask])


@dataclass
class CAVFit:
    """The CAVs of one layer."""

    directions: torch.Tensor  # [K, d] unit vectors in activation space
    accuracy: torch.Tensor  # [K] held-out balanced accuracy (token level)
    train_accuracy: torch.Tensor  # [K]
    converged: bool


def split_examples(spec: CAVSpec, holdout: float, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random train/held-out split of a CAV's positive and negative examples (>= 1 each side)."""
    def split(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.permutation(idx)
        n_test = min(max(1, int(round(holdout * len(idx)))), len(idx) - 1)
        return idx[n_test:], idx[:n_test]

    pos_tr, pos_te = split(spec.positives)
    neg_tr, neg_te = split(spec.negatives)
    return pos_tr, pos_te, neg_tr, neg_te


def fit_logistic_batched(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, l2: float,
                         max_iter: int = 300, tol: float = 1e-4, ftol: float = 1e-7,
                         history: int = 10
                         ) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Fit K logistic regressions sharing the rows of X: a batched L-BFGS.

    Problem k minimises ``sum_i w[k,i] * BCE(X_i . coef_k + b_k, y[k,i]) + l2/2 * |coef_k|^2``
    (intercept not penalised). Rows with w = 0 take no part. X: [N, d]; y, w: [K, N].

    torch's L-BFGS on the summed objective shares one curvature model and one line search
    across all problems and needs hundreds of iterations; here every problem keeps its own
    history and its own backtracking step, while each iteration is still two matrix products
    for all K problems. A problem stops when max |gradient| < tol or when a step lowers its
    loss by less than ftol (relative; float32 cannot resolve smaller changes). Returns coef
    [K, d], intercept [K], and whether every problem stopped before max_iter.
    """
    K, d = y.shape[0], X.shape[1]
    # Precondition with the curvature at the start, H0 ~ Cov(X)/4 + l2*I, shared by all
    # problems: with coef = P phi the problem in phi is nearly isotropic, so few iterations
    # suffice even though transformer activations are very anisotropic. The objective is
    # unchanged (the penalty becomes l2/2 * phi' P^2 phi), so is its minimiser.
    Xc = X - X.mean(0)
    evals, evecs = torch.linalg.eigh((Xc.T @ Xc / X.shape[0]).double())
    inv_sqrt = (0.25 * evals.clamp(min=0) + l2).rsqrt()
    P = ((evecs * inv_sqrt) @ evecs.T).to(X.dtype)
    P2 = ((evecs * inv_sqrt**2) @ evecs.T).to(X.dtype)
    Za = torch.cat([X @ P, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], dim=1)

    def loss_grad(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = phi @ Za.T  # [K, N]
        pen = phi[:, :d] @ P2
        loss = (w * (F.softplus(z) - y * z)).sum(1) + 0.5 * l2 * (pen * phi[:, :d]).sum(1)
        grad = (w * (torch.sigmoid(z) - y)) @ Za
        grad[:, :d] += l2 * pen
        return loss, grad

    theta = torch.zeros(K, d + 1, dtype=X.dtype, device=X.device)  # phi and the intercept
    f, g = loss_grad(theta)
    S: list[torch.Tensor] = []
    Y: list[torch.Tensor] = []
    rho: list[torch.Tensor] = []
    converged = g.abs().amax(1) < tol
    done = converged.clone()
    for _ in range(max_iter):
        if bool(done.all()):
            break
        # Two-loop recursion, per problem (all vectors are [K, d+1]).
        q = g.clone()
        alphas = []
        for s_i, y_i, r_i in zip(reversed(S), reversed(Y), reversed(rho)):
            a = r_i * (s_i * q).sum(1, keepdim=True)
            q -= a * y_i
            alphas.append(a)
        if S:
            sy = (S[-1] * Y[-1]).sum(1, keepdim=True)
            yy = (Y[-1] * Y[-1]).sum(1, keepdim=True)
            q *= torch.where(yy > 0, sy / yy.clamp(min=1e-30), torch.ones_like(sy))
        else:
            q /= g.norm(dim=1, keepdim=True).clamp(min=1e-30)  # first step: unit length
        for s_i, y_i, r_i, a in zip(S, Y, rho, reversed(alphas)):
            b = r_i * (y_i * q).sum(1, keepdim=True)
            q += s_i * (a - b)
        p = -q
        slope = (p * g).sum(1)
        bad = slope >= 0  # not a descent direction: fall back to steepest descent
        p[bad] = -g[bad]
        slope = torch.where(bad, -(g * g).sum(1), slope)
        p[done] = 0.0
        # Backtracking (Armijo), each problem with its own step.
        t = torch.ones(K, dtype=X.dtype, device=X.device)
        for _ in range(20):
            f_new, g_new = loss_grad(theta + t[:, None] * p)
            ok = (f_new <= f + 1e-4 * t * slope) | done
            if bool(ok.all()):
                break
            t = torch.where(ok, t, 0.5 * t)
        # A problem whose step cannot decrease the loss any more sits at the precision limit.
        stalled = ~ok
        if bool(stalled.any()):
            t = torch.where(stalled, torch.zeros_like(t), t)
            f_new, g_new = loss_grad(theta + t[:, None] * p)
            done = done | stalled
        s_new = t[:, None] * p
        y_new = g_new - g
        flat = (f - f_new) <= ftol * f.abs().clamp(min=1.0)
        theta, f, g = theta + s_new, f_new, g_new
        sy = (s_new * y_new).sum(1, keepdim=True)
        # Problems without positive curvature along the step keep their history unchanged.
        keep = sy > 1e-12
        S.append(torch.where(keep, s_new, torch.zeros_like(s_new)))
        Y.append(torch.where(keep, y_new, torch.zeros_like(y_new)))
        rho.append(torch.where(keep, 1.0 / sy.clamp(min=1e-12), torch.zeros_like(sy)))
        if len(S) > history:
            S.pop(0), Y.pop(0), rho.pop(0)
        converged = g.abs().amax(1) < tol
        done = done | converged | flat
    return theta[:, :d] @ P, theta[:, d], bool(done.all())


def _balanced_accuracy(scores: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of per-class accuracy over the rows in mask; [K]."""
    pred = scores > 0
    accs = []
    for cls in (1.0, 0.0):
        sel = mask & (y == cls)
        correct = (pred == (y == 1.0)) & sel
        accs.append(correct.sum(1) / sel.sum(1).clamp(min=1))
    return (accs[0] + accs[1]) / 2


def train_cavs(table: TokenTable, specs: list[CAVSpec], seed: int, l2: float = 1e-2,
               holdout: float = 0.25, device: torch.device | str = "cpu") -> CAVFit:
    """Train every CAV of one layer in a single batched solve.

    Features are centred and divided by one global scale (which keeps the geometry, so the
    direction is that of the raw activations), and each CAV weighs its two classes equally.
    """
    rng = np.random.default_rng(seed)
    X = table.rows.to(device=device, dtype=torch.float32)
    mean = X.mean(0)
    scale = (X - mean).pow(2).sum(1).mean().sqrt().clamp(min=1e-12) / np.sqrt(X.shape[1])
    X = (X - mean) / scale
    E = int(table.example.max()) + 1
    K, N = len(specs), X.shape[0]
    # Per-CAV role of each example: +1 train positive, -1 train negative, +2/-2 held out.
    role = torch.zeros(K, E, dtype=torch.int8)
    for k, spec in enumerate(specs):
        pos_tr, pos_te, neg_tr, neg_te = split_examples(spec, holdout, rng)
        role[k, pos_tr], role[k, neg_tr], role[k, pos_te], role[k, neg_te] = 1, -1, 2, -2
    row_role = role[:, table.example].to(device)  # [K, N]
    y = (row_role > 0).to(X.dtype)
    train = (row_role == 1) | (row_role == -1)
    test = (row_role == 2) | (row_role == -2)
    # Class-balanced weights summing to 1 per CAV: each class contributes half.
    n_pos = ((row_role == 1).sum(1, keepdim=True)).clamp(min=1)
    n_neg = ((row_role == -1).sum(1, keepdim=True)).clamp(min=1)
    w = torch.where(row_role == 1, 0.5 / n_pos, torch.where(row_role == -1, 0.5 / n_neg, 0.0)).to(X.dtype)
    coef, intercept, converged = fit_logistic_batched(X, y, w, l2)
    scores = (X @ coef.T + intercept).T  # [K, N]
    return CAVFit(
        directions=F.normalize(coef, dim=1).cpu(),
        accuracy=_balanced_accuracy(scores, y, test).cpu(),
        train_accuracy=_balanced_accuracy(scores, y, train).cpu(),
        converged=converged,
    )
