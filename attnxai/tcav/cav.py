"""Token-level concept activation vectors (CAVs), all of a layer's CAVs in one batched solve.

Every CAV is an L2-regularised, class-balanced logistic regression separating the token
activations of its positive examples from those of its negative examples; its unit weight
vector (pointing toward the positives) is the CAV. All CAVs of a layer share one design
matrix (the tokens of every example involved) and differ only in which rows they use, so
they are fitted together: logits for all CAVs are one matrix product, and one L-BFGS run
minimises the sum of the independent objectives.

Held-out accuracy is measured on examples left out of each CAV's training (tokens of one
sentence or image never sit on both sides of the split), classifying each example by the
mean score of its tokens.
"""

from __future__ import annotations

from collections.abc import Callable
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

    def select(self, keep: dict[int, torch.Tensor]) -> TokenTable:
        """Keep only some rows of some examples: ``keep[e]`` is a bool mask over example e's
        rows, in order; examples not named keep all their rows."""
        counts = torch.bincount(self.example)
        starts = torch.cumsum(counts, 0) - counts
        mask = torch.ones(len(self.example), dtype=torch.bool)
        for e, m in keep.items():
            if len(m) != int(counts[e]):
                raise ValueError(f"Example {e} has {int(counts[e])} rows, the mask {len(m)}.")
            mask[int(starts[e]):int(starts[e]) + len(m)] = m
        return TokenTable(rows=self.rows[mask], example=self.example[mask])


@dataclass
class CAVFit:
    """The CAVs of one layer."""

    directions: torch.Tensor  # [K, d] unit vectors in activation space
    accuracy: torch.Tensor  # [K] held-out balanced accuracy (per example, by mean token score)
    train_accuracy: torch.Tensor  # [K]
    converged: bool
    #: [K] each CAV's projection gap (a concept's mean gap is its CAV-intervention step), see
    #: projection_gaps.
    gaps: torch.Tensor | None = None


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


def fit_logistic_batched(X: torch.Tensor, rows: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                         l2: float, max_iter: int = 300, tol: float = 1e-4, ftol: float = 1e-7,
                         history: int = 10, chunk_floats: int = 2**25
                         ) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Fit K logistic regressions on rows of a shared X: a batched L-BFGS.

    Problem k uses the rows ``X[rows[k]]`` with labels ``y[k]`` and weights ``w[k]`` (padding
    entries have w = 0) and minimises ``sum_i w[k,i] * BCE(x_i . coef_k + b_k, y[k,i]) +
    l2/2 * |coef_k|^2`` (intercept not penalised). X: [N, d]; rows, y, w: [K, n].

    torch's L-BFGS on the summed objective shares one curvature model and one line search
    across all problems and needs hundreds of iterations; here every problem keeps its own
    history and its own backtracking step, while each evaluation is two dense matrix products
    over the shared rows. A problem stops when max |gradient| < tol or when a step lowers its
    loss by less than ftol (relative; float32 cannot resolve smaller changes). Problems are
    solved in groups that use the same span of rows (:func:`_span_groups`), over the rows they
    use; a group that uses fewer rows than dimensions is solved in those rows' span
    (:func:`_row_space`) by Newton's method (:func:`_newton_chunk`). Returns coef [K, d],
    intercept [K], and whether every problem stopped before max_iter.
    """
    d = X.shape[1]
    coef = torch.zeros(rows.shape[0], d, dtype=X.dtype, device=X.device)
    intercept = torch.zeros(rows.shape[0], dtype=X.dtype, device=X.device)
    all_done = True
    for group in _span_groups(rows, w, chunk_floats):
        # The rows some problem of the group uses (a span's others weigh nothing in any loss).
        taken = w[group] > 0
        used = torch.unique(rows[group][taken])
        Xg, basis = _row_space(X[used])
        P, P2 = _preconditioner(Xg, l2)
        Za = torch.cat([Xg @ P, torch.ones(len(used), 1, dtype=X.dtype, device=X.device)], dim=1)
        # Padding points at any row.
        local = torch.where(taken, torch.searchsorted(used, rows[group]), 0)
        if basis is None:
            phi, done = _lbfgs_chunk(Za, local, y[group], w[group], P2, l2, max_iter, tol, ftol,
                                     history)
        else:
            phi, done = _newton_chunk(Za, local, y[group], w[group], P2, l2, max_iter, tol, ftol)
        c = phi[:, :-1] @ P
        coef[group], intercept[group] = (c if basis is None else c @ basis.T), phi[:, -1]
        all_done &= done
    return coef, intercept, all_done


def _row_space(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``X`` [n, d] in coordinates of its row space, and that space's orthonormal basis [d, r]
    (None, and ``X`` itself, when the rows span most of the d dimensions).

    The loss sees a coefficient vector only through the rows' scores and the penalty is
    |coef|^2, so the minimiser lies in the rows' span: solving there (r <= n unknowns instead
    of d) gives the same CAV. Matched pairs' CAVs train on the few tokens where their pairs
    differ (a few hundred rows at 768+ dims), the slowest problems of a layer.
    """
    n, d = X.shape
    if n >= 0.75 * d:
        return X, None
    _, S, Vh = torch.linalg.svd(X.double(), full_matrices=False)
    keep = S > S[0] * max(n, d) * torch.finfo(X.dtype).eps
    basis = Vh[keep].T.to(X.dtype)  # [d, r]
    return X @ basis, basis


def _preconditioner(X: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """P = H0^(-1/2) and P^2 for the curvature at the start, H0 ~ Cov(X)/4 + l2*I, of the
    rows ``X`` a group of problems draws on.

    With coef = P phi the problem in phi is nearly isotropic, so few iterations suffice even
    though transformer activations are very anisotropic. The objective is unchanged (the
    penalty becomes l2/2 * phi' P^2 phi), so is its minimiser. Taken per group: problems on a
    few rows (matched pairs' differing tokens) have no curvature from the data in most
    directions, where the whole table's covariance would leave them badly conditioned.
    """
    Xc = X - X.mean(0)
    evals, evecs = torch.linalg.eigh((Xc.T @ Xc / X.shape[0]).double())
    inv_sqrt = (0.25 * evals.clamp(min=0) + l2).rsqrt()
    P = ((evecs * inv_sqrt) @ evecs.T).to(X.dtype)
    P2 = ((evecs * inv_sqrt**2) @ evecs.T).to(X.dtype)
    return P, P2


def _span_groups(rows: torch.Tensor, w: torch.Tensor, chunk_floats: int
                 ) -> list[torch.Tensor]:
    """Chunks of problems (indices into ``rows``), by the spans [lo, hi) of rows they use.

    A chunk's work per iteration is proportional to (problems x rows in its span), and each
    chunk iterates until its slowest problem stops. So problems go together only when their
    spans are alike: narrowest first, a chunk takes a problem while the chunk's span stays
    within 1.25x its narrowest member's (the random CAVs of one pool go together, and the few
    rows of matched pairs, whose CAVs converge slowest, are not scored over the whole table),
    and holds at most ``chunk_floats`` scores.
    """
    used = w > 0
    lo = torch.where(used, rows, rows.max() + 1).amin(1).cpu()
    hi = (torch.where(used, rows, -1).amax(1) + 1).cpu()
    groups: list[torch.Tensor] = []
    members: list[int] = []
    g_lo = g_hi = narrow = 0
    for k in torch.argsort((hi - lo) * (int(hi.max()) + 1) + lo).tolist():
        k_lo, k_hi = int(lo[k]), int(hi[k])
        n_lo, n_hi = min(g_lo, k_lo), max(g_hi, k_hi)
        if members and (n_hi - n_lo > 1.25 * narrow
                        or (len(members) + 1) * (n_hi - n_lo) > chunk_floats):
            groups.append(torch.tensor(members, device=rows.device))
            members, n_lo, n_hi = [], k_lo, k_hi
        if not members:
            narrow = k_hi - k_lo
        members.append(k)
        g_lo, g_hi = n_lo, n_hi
    if members:
        groups.append(torch.tensor(members, device=rows.device))
    return groups


def _objective(Za: torch.Tensor, rows: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
               P2: torch.Tensor, l2: float
               ) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``loss_grad(phi, idx)``: the losses [k] and gradients [k, d+1] of the problems ``idx``
    at their parameters ``phi`` [k, d+1] (see :func:`fit_logistic_batched`; ``P2`` the
    penalty's metric in the preconditioned coordinates)."""
    N, d = Za.shape[0], Za.shape[1] - 1

    def loss_grad(phi: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Problem-major [k, N] layout: each problem's rows are runs of consecutive rows, so
        # the gather and the scatter below walk memory in order.
        r_i, y_i, w_i = rows[idx], y[idx], w[idx]
        z = (phi @ Za.T).gather(1, r_i)  # [k, n]
        pen = phi[:, :d] @ P2
        loss = (w_i * (F.softplus(z) - y_i * z)).sum(1) + 0.5 * l2 * (pen * phi[:, :d]).sum(1)
        resid = torch.zeros(len(idx), N, dtype=Za.dtype, device=Za.device)
        resid.scatter_add_(1, r_i, w_i * (torch.sigmoid(z) - y_i))
        grad = resid @ Za
        grad[:, :d] += l2 * pen
        return loss, grad

    return loss_grad


def _backtrack(loss_grad: Callable[[torch.Tensor, torch.Tensor],
                                   tuple[torch.Tensor, torch.Tensor]],
               act: torch.Tensor, theta: torch.Tensor, f: torch.Tensor, p: torch.Tensor,
               slope: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backtracking (Armijo) from ``theta`` [k, d+1] along ``p``, each problem ``act`` with its
    own step: the steps [k], the new losses and gradients, and which problems stalled (no step
    lowers their loss: they sit at the precision limit, and stay where they are)."""
    t = torch.ones(len(act), dtype=theta.dtype, device=theta.device)
    for _ in range(20):
        f_new, g_new = loss_grad(theta + t[:, None] * p, act)
        ok = f_new <= f + 1e-4 * t * slope
        if bool(ok.all()):
            break
        t = torch.where(ok, t, 0.5 * t)
    stalled = ~ok
    if bool(stalled.any()):
        t = torch.where(stalled, torch.zeros_like(t), t)
        f_new, g_new = loss_grad(theta + t[:, None] * p, act)
    return t, f_new, g_new, stalled


def _newton_chunk(Za: torch.Tensor, rows: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                  P2: torch.Tensor, l2: float, max_iter: int, tol: float, ftol: float,
                  hessian_floats: int = 2**24) -> tuple[torch.Tensor, bool]:
    """Batched Newton's method with a per-problem backtracking step, for problems in few
    dimensions (a group solved in its rows' span): each problem's (d+1)-square Hessian is one
    batched product over the shared rows Za [N, d+1] and one Cholesky solve (the coordinates
    are preconditioned, so float32 suffices), and the problems converge in about ten steps
    where L-BFGS takes hundreds. Same objective, stopping
    rules and return as :func:`_lbfgs_chunk`; at most ``hessian_floats`` Hessian entries at a
    time."""
    N, d1 = Za.shape
    K, d = rows.shape[0], d1 - 1
    loss_grad = _objective(Za, rows, y, w, P2, l2)
    penalty = torch.zeros(d1, d1, dtype=Za.dtype, device=Za.device)
    penalty[:d, :d] = l2 * P2  # the intercept is not penalised
    theta = torch.zeros(K, d1, dtype=Za.dtype, device=Za.device)
    f, g = loss_grad(theta, torch.arange(K, device=Za.device))
    done = g.abs().amax(1) < tol
    per_chunk = max(1, hessian_floats // (d1 * d1))
    for _ in range(max_iter):
        act = (~done).nonzero().flatten()
        if len(act) == 0:
            break
        p = torch.empty(len(act), d1, dtype=Za.dtype, device=Za.device)
        for a in range(0, len(act), per_chunk):
            idx = act[a:a + per_chunk]
            z = (theta[idx] @ Za.T).gather(1, rows[idx])
            s = torch.sigmoid(z)
            curv = torch.zeros(len(idx), N, dtype=Za.dtype, device=Za.device)
            curv.scatter_add_(1, rows[idx], w[idx] * s * (1 - s))
            hess = (Za.T[None] * curv[:, None, :]) @ Za + penalty
            chol, info = torch.linalg.cholesky_ex(hess)
            step = torch.cholesky_solve(-g[idx][:, :, None], chol)[:, :, 0]
            # Rounding can leave a Hessian not quite positive definite: steepest descent there.
            p[a:a + len(idx)] = torch.where((info == 0)[:, None], step, -g[idx])
        th, fa = theta[act], f[act]
        t, f_new, g_new, stalled = _backtrack(loss_grad, act, th, fa, p, (p * g[act]).sum(1))
        flat = (fa - f_new) <= ftol * fa.abs().clamp(min=1.0)
        theta[act], f[act], g[act] = th + t[:, None] * p, f_new, g_new
        done[act] = stalled | flat | (g_new.abs().amax(1) < tol)
    return theta, bool(done.all())


def _lbfgs_chunk(Za: torch.Tensor, rows: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                 P2: torch.Tensor, l2: float, max_iter: int, tol: float, ftol: float, history: int
                 ) -> tuple[torch.Tensor, bool]:
    """Batched L-BFGS with per-problem histories and steps over the shared rows Za [N, d+1].

    Scores and gradients of the problems still running are two dense matrix products with Za
    (scores of every row for every problem, then residuals scattered back onto the rows):
    compute-bound work that beats gathering each problem's rows, which is memory-bound.
    Problems that have stopped drop out, so a few slow ones do not make the rest pay.
    """
    K, d1 = rows.shape[0], Za.shape[1]
    loss_grad = _objective(Za, rows, y, w, P2, l2)
    theta = torch.zeros(K, d1, dtype=Za.dtype, device=Za.device)  # phi and the intercept
    f, g = loss_grad(theta, torch.arange(K, device=Za.device))
    S: list[torch.Tensor] = []  # histories of all K problems; rows of stopped ones go stale
    Y: list[torch.Tensor] = []
    rho: list[torch.Tensor] = []
    done = g.abs().amax(1) < tol
    for _ in range(max_iter):
        act = (~done).nonzero().flatten()
        if len(act) == 0:
            break
        ga = g[act]
        # Two-loop recursion, per problem (all vectors are [k, d+1]).
        q = ga.clone()
        hist = [(s_i[act], y_i[act], r_i[act]) for s_i, y_i, r_i in zip(S, Y, rho)]
        alphas = []
        for s_i, y_i, r_i in reversed(hist):
            a = r_i * (s_i * q).sum(1, keepdim=True)
            q -= a * y_i
            alphas.append(a)
        if hist:
            s_i, y_i, _ = hist[-1]
            sy = (s_i * y_i).sum(1, keepdim=True)
            yy = (y_i * y_i).sum(1, keepdim=True)
            q *= torch.where(yy > 0, sy / yy.clamp(min=1e-30), torch.ones_like(sy))
        else:
            q /= ga.norm(dim=1, keepdim=True).clamp(min=1e-30)  # first step: unit length
        for (s_i, y_i, r_i), a in zip(hist, reversed(alphas)):
            b = r_i * (y_i * q).sum(1, keepdim=True)
            q += s_i * (a - b)
        p = -q
        slope = (p * ga).sum(1)
        bad = slope >= 0  # not a descent direction: fall back to steepest descent
        p[bad] = -ga[bad]
        slope = torch.where(bad, -(ga * ga).sum(1), slope)
        th, fa = theta[act], f[act]
        t, f_new, g_new, stalled = _backtrack(loss_grad, act, th, fa, p, slope)
        s_new = t[:, None] * p
        y_new = g_new - ga
        flat = (fa - f_new) <= ftol * fa.abs().clamp(min=1.0)
        theta[act], f[act], g[act] = th + s_new, f_new, g_new
        sy = (s_new * y_new).sum(1, keepdim=True)
        # Problems without positive curvature along the step keep their history unchanged.
        keep = sy > 1e-12
        for store, value in ((S, torch.where(keep, s_new, torch.zeros_like(s_new))),
                             (Y, torch.where(keep, y_new, torch.zeros_like(y_new))),
                             (rho, torch.where(keep, 1.0 / sy.clamp(min=1e-12), torch.zeros_like(sy)))):
            full = torch.zeros(K, value.shape[1], dtype=value.dtype, device=value.device)
            full[act] = value
            store.append(full)
            if len(store) > history:
                store.pop(0)
        done[act] = stalled | flat | (g_new.abs().amax(1) < tol)
    return theta, bool(done.all())


def _example_accuracy(scores: torch.Tensor, examples: torch.Tensor, role: torch.Tensor,
                      num_examples: int, held_out: bool) -> torch.Tensor:
    """Balanced accuracy of classifying whole examples by their mean token score; [K].

    Judged per example, not per token: in a matched pair most tokens (the background of a
    scene, the shared words of a sentence) are identical on both sides and no direction can
    tell them apart, so token accuracy stays near 0.5 for a perfectly good concept CAV.
    """
    K = scores.shape[0]
    which = (role.abs() == 2) if held_out else (role.abs() == 1)
    sums = torch.zeros(K, num_examples, dtype=scores.dtype, device=scores.device)
    counts = torch.zeros_like(sums)
    sums.scatter_add_(1, examples, scores * which)
    counts.scatter_add_(1, examples, which.to(scores.dtype))
    label = torch.zeros_like(sums)
    label.scatter_add_(1, examples, ((role > 0) & which).to(scores.dtype))
    present = counts > 0
    positive = present & (label > 0)
    correct = (sums > 0) == positive
    accs = [((correct & sel).sum(1) / sel.sum(1).clamp(min=1))
            for sel in (positive, present & ~positive)]
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
    # Rows of each example (rows are grouped by example, in order).
    example = table.example.numpy()
    counts = np.bincount(example)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # Per CAV: its examples' rows with a role: +1 train positive, -1 train negative, +2/-2 held out.
    row_lists, role_lists = [], []
    for spec in specs:
        parts = zip(split_examples(spec, holdout, rng), (1, 2, -1, -2))
        exs = [(e, r) for idx, r in parts for e in idx]
        ex_ids = np.array([e for e, _ in exs], dtype=np.int64)
        c = counts[ex_ids]
        offsets = np.repeat(starts[ex_ids] - np.concatenate([[0], np.cumsum(c)[:-1]]), c)
        row_lists.append(offsets + np.arange(c.sum()))
        role_lists.append(np.repeat([r for _, r in exs], c))
    n = max(len(r) for r in row_lists)
    rows = torch.zeros(len(specs), n, dtype=torch.long)
    role = torch.zeros(len(specs), n, dtype=torch.int8)  # 0 = padding
    for k, (r, ro) in enumerate(zip(row_lists, role_lists)):
        rows[k, : len(r)] = torch.from_numpy(r)
        role[k, : len(ro)] = torch.from_numpy(ro.astype(np.int8))
    rows, role = rows.to(device), role.to(device)
    y = (role > 0).to(X.dtype)
    # Class-balanced weights summing to 1 per CAV: each class contributes half.
    n_pos = (role == 1).sum(1, keepdim=True).clamp(min=1)
    n_neg = (role == -1).sum(1, keepdim=True).clamp(min=1)
    w = torch.where(role == 1, 0.5 / n_pos, torch.where(role == -1, 0.5 / n_neg, 0.0)).to(X.dtype)
    coef, intercept, converged = fit_logistic_batched(X, rows, y, w, l2)
    scores = (X @ coef.T).T.gather(1, rows) + intercept[:, None]  # [K, n], without gathering X
    examples = table.example.to(device)[rows]
    E = len(counts)
    return CAVFit(
        directions=F.normalize(coef, dim=1).cpu(),
        accuracy=_example_accuracy(scores, examples, role, E, held_out=True).cpu(),
        train_accuracy=_example_accuracy(scores, examples, role, E, held_out=False).cpu(),
        converged=converged,
    )


def projection_gaps(table: TokenTable, specs: list[CAVSpec], directions: torch.Tensor) -> torch.Tensor:
    """[K] each CAV's own magnitude along its direction: the mean projection of its positive
    examples minus that of its negatives, each example the mean over its token rows.

    A concept's mean gap is the step α of its CAV intervention (docs/method.md §6.3): it moves
    a token by what separates the concept's examples from its negatives along the CAV, and
    its null CAVs are moved by the same step.
    """
    if len(specs) != len(directions):
        raise ValueError(f"{len(specs)} specs but {len(directions)} directions")
    E = int(table.example.max()) + 1
    proj = table.rows @ directions.to(table.rows.dtype).T  # [N, K]
    sums = torch.zeros(E, len(specs), dtype=proj.dtype).index_add_(0, table.example, proj)
    counts = torch.bincount(table.example, minlength=E).clamp(min=1).to(proj.dtype)
    per_example = sums / counts[:, None]  # [E, K]
    gaps = torch.empty(len(specs), dtype=proj.dtype)
    for k, spec in enumerate(specs):
        pos = torch.as_tensor(spec.positives, dtype=torch.long)
        neg = torch.as_tensor(spec.negatives, dtype=torch.long)
        gaps[k] = per_example[pos, k].mean() - per_example[neg, k].mean()
    return gaps


def train_pattern_cavs(table: TokenTable, specs: list[CAVSpec], seed: int, holdout: float = 0.25,
                       device: torch.device | str = "cpu") -> CAVFit:
    """Pattern CAVs (Pahde et al., ICLR 2025) of one layer: the difference between the mean
    token activation of a CAV's training positives and that of its training negatives.

    For 0/1 labels this is the covariance of the activations with the label, the direction of
    the concept's *signal* rather than a classifier's filter, which also weighs the distractors
    it must cancel. Rows of matched pairs are their differing tokens, so the CAV is then the
    mean pairwise difference there. Held-out accuracy classifies each example by its mean
    token projection against the midpoint of the two training classes' mean projections.
    All CAVs come from two matrix products over per-example sums (docs/method.md §2).
    """
    rng = np.random.default_rng(seed)
    X = table.rows.to(device=device, dtype=torch.float32)
    ex = table.example.to(device)
    E = int(table.example.max()) + 1
    sums = torch.zeros(E, X.shape[1], dtype=X.dtype, device=device).index_add_(0, ex, X)
    counts = torch.bincount(ex, minlength=E).to(X.dtype)
    # Example-level roles per CAV: +1/-1 train positive/negative, +2/-2 held out.
    role = torch.zeros(len(specs), E, dtype=torch.int8)
    for k, spec in enumerate(specs):
        for idx, r in zip(split_examples(spec, holdout, rng), (1, 2, -1, -2)):
            role[k, torch.as_tensor(idx, dtype=torch.long)] = r
    role = role.to(device)
    pos, neg = (role == 1).to(X.dtype), (role == -1).to(X.dtype)
    coef = (pos @ sums) / (pos @ counts).clamp(min=1)[:, None] \
        - (neg @ sums) / (neg @ counts).clamp(min=1)[:, None]
    directions = F.normalize(coef, dim=1)
    score = (sums @ directions.T).T / counts.clamp(min=1)  # [K, E] mean token projection
    mid = ((pos * score).sum(1) / pos.sum(1).clamp(min=1)
           + (neg * score).sum(1) / neg.sum(1).clamp(min=1)) / 2
    above = score > mid[:, None]

    def balanced(p: int, n: int) -> torch.Tensor:
        sel_p, sel_n = role == p, role == n
        acc_p = (above & sel_p).sum(1) / sel_p.sum(1).clamp(min=1)
        acc_n = (~above & sel_n).sum(1) / sel_n.sum(1).clamp(min=1)
        return ((acc_p + acc_n) / 2).float()

    return CAVFit(directions=directions.cpu(), accuracy=balanced(2, -2).cpu(),
                  train_accuracy=balanced(1, -1).cpu(), converged=True)
