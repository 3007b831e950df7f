"""Latent factors projected to 2D (PCA, t-SNE, UMAP), and snapshots aligned over epochs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mfcore.errors import ConfigError

METHODS = ("pca", "tsne", "umap")
NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
# t-SNE and UMAP draw every point up to ml-latest-small's 9,742 movies; past this a sample.
TSNE_MAX_POINTS = 10_000
# openTSNE threads: half the cores, at most 8. On a 2-core box that is one: two threads there
# spin against each other and any other work (measured, 1,682 x 16, load 4-9: 3.6 s on one
# thread, 32 s on two).
TSNE_THREADS = max(1, min(8, (os.cpu_count() or 1) // 2))
# openTSNE's FFT grid: intervals of 2 units (its default, 1, makes numpy's FFT dominate:
# 1,682 points 9.9 s of CPU against 2.6 s, KL divergence 2.753 against 2.790).
TSNE_INTS_IN_INTERVAL = 2.0
TSNE_MIN_INTERVALS = 10
UMAP_EPOCHS = 200  # umap-learn's own choice for large data; its 500 for small data doubles the time


@dataclass(frozen=True)
class Projection:
    coords: np.ndarray
    """[n_points, 2] float32 coordinates."""
    rows: np.ndarray
    """Indices of the projected rows in the factor matrix (all, or a seeded sample)."""
    method: str
    note: str
    """What a UI should say, e.g. that t-SNE used a sample."""
    explained_variance: tuple[float, float] | None = None


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def project(factors: np.ndarray, method: str = "pca", *, seed: int = 0, max_points: int | None = None,
            priority: np.ndarray | None = None, threads: int | None = None) -> Projection:
    """Project rows of ``factors`` to 2D.

    Past ``max_points`` rows (default: all for PCA, :data:`TSNE_MAX_POINTS` for t-SNE and
    UMAP) only a sample is projected: the ``max_points`` rows of highest ``priority`` (e.g.
    rating counts: the most-rated movies, ties to the lower row), or a seeded random
    sample without ``priority``. t-SNE is openTSNE's FFT-accelerated t-SNE on ``threads``
    threads (default :data:`TSNE_THREADS`); UMAP is umap-learn's.
    """
    method = method.lower()
    if method not in METHODS:
        raise ConfigError("method", f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    X = np.asarray(factors, dtype=np.float32)
    n = len(X)
    cap = max_points if max_points is not None else (TSNE_MAX_POINTS if method != "pca" else n)
    rows = np.arange(n)
    note = f"all {n:,} points"
    if n > cap:
        if priority is not None:
            rows = np.sort(np.lexsort((np.arange(n), -np.asarray(priority, dtype=np.float64)))[:cap])
            note = f"the {cap:,} most-rated of {n:,} points ({NAMES[method]} of more is slow)"
        else:
            rows = np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))
            note = f"a random sample of {cap:,} of {n:,} points ({NAMES[method]} of more is slow)"
    Xs = X[rows]
    if method == "pca" or len(Xs) < 8:  # t-SNE/UMAP need a few neighbours per point
        coords, ev = _pca(Xs)
        return Projection(coords, rows, method, note, ev if method == "pca" else None)
    if method == "tsne":
        return Projection(tsne(Xs, seed=seed, threads=threads), rows, method, note)
    if not umap_available():
        raise ConfigError("method", "UMAP is not installed (pip install umap-learn); use pca or tsne")
    import umap

    # A fixed random_state makes umap-learn run on one thread (reproducible pictures).
    reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=int(min(15, len(Xs) - 1)),
                        n_epochs=UMAP_EPOCHS, n_jobs=1)
    coords = reducer.fit_transform(Xs)
    return Projection(np.asarray(coords, dtype=np.float32), rows, method, note)


_WARM = {"started": False}


def warm_up() -> None:
    """Run UMAP and t-SNE once on a small random matrix: umap-learn and pynndescent compile
    their numba kernels on first use in each process (measured: 13 s on a busy 2-core box,
    against 2.5-3.8 s for the 1,682 ml-100k movies once compiled)."""
    X = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    if umap_available():
        project(X, "umap")
    project(X, "tsne")


def warm_up_in_background() -> None:
    """:func:`warm_up` in a daemon thread, once per process (the inspection pages call it,
    so the 2D map's first UMAP does not pay for the compilation)."""
    import threading

    if _WARM["started"]:
        return
    _WARM["started"] = True
    threading.Thread(target=_warm_quietly, name="mfstudio-projection-warm-up", daemon=True).start()


def _warm_quietly() -> None:
    try:
        warm_up()
    except Exception:  # noqa: BLE001 - a failed warm-up only means the first map pays for it
        import logging

        logging.getLogger(__name__).warning("projection warm-up failed", exc_info=True)


def tsne(X: np.ndarray, *, seed: int = 0, threads: int | None = None) -> np.ndarray:
    """[n, 2] float32 t-SNE of the rows of ``X``: openTSNE, FFT-accelerated, PCA-initialised.

    Perplexity 30 (less for fewer than 91 rows); exact nearest neighbours up to 10,000 rows
    (annoy's index costs more below that). Deterministic for a seed on one thread.
    """
    from openTSNE import TSNE

    X = np.asarray(X, dtype=np.float32)
    n = len(X)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    model = TSNE(n_components=2, perplexity=perplexity, initialization="pca", random_state=seed,
                 n_jobs=int(threads or TSNE_THREADS), negative_gradient_method="fft",
                 ints_in_interval=TSNE_INTS_IN_INTERVAL, min_num_intervals=TSNE_MIN_INTERVALS,
                 neighbors="exact" if n <= 10_000 else "annoy", verbose=False)
    return np.asarray(model.fit(X), dtype=np.float32)


@dataclass(frozen=True)
class PCAFit:
    """A 2D PCA fitted on one factor matrix, to place other vectors in the same picture
    (e.g. a folded-in new user among the trained users)."""

    mean: np.ndarray
    """[k] mean of the rows the PCA was fitted on."""
    components: np.ndarray
    """[k, 2] the two principal directions (signs fixed: largest loading positive)."""
    explained_variance: tuple[float, float]
    """Share of the total variance along each direction."""

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """[n, 2] float32 coordinates of ``vectors`` ([n, k] or one [k] vector) on the fitted axes."""
        V = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if V.shape[1] != len(self.mean):
            raise ConfigError("vectors", f"have {V.shape[1]} columns but the PCA was fitted on {len(self.mean)}")
        return ((V - self.mean) @ self.components).astype(np.float32)


def fit_pca(factors: np.ndarray) -> PCAFit:
    """Fit the 2D PCA that :func:`project` uses for ``"pca"`` (all rows, no sampling).

    ``project(X, "pca").coords`` equals ``fit_pca(X).transform(X)``.
    """
    X = np.asarray(factors, dtype=np.float32)
    if X.ndim != 2:
        raise ConfigError("factors", f"must be a 2-D (rows x factors) array, got shape {X.shape}")
    k = X.shape[1]
    mean = X.mean(axis=0) if len(X) else np.zeros(k, np.float32)
    if len(X) < 2 or k < 1:
        return PCAFit(mean.astype(np.float32), np.zeros((k, 2)), (0.0, 0.0))
    Xc = X - mean
    # Covariance eigendecomposition: k x k, fast even for 60k x 64. One BLAS thread: on a
    # busy machine OpenBLAS's two threads spin against other work (measured, 59,047 x 64,
    # 2 cores under load: 0.5-3 s with two threads, 0.11 s with one).
    with _one_blas_thread():
        cov = (Xc.T.astype(np.float64) @ Xc) / max(1, len(X) - 1)
        vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:2]
    comps = vecs[:, order]
    if comps.shape[1] < 2:
        comps = np.pad(comps, ((0, 0), (0, 2 - comps.shape[1])))
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), range(comps.shape[1])])
    signs[signs == 0] = 1
    comps = comps * signs
    total = float(vals.sum()) or 1.0
    ev = tuple(float(vals[o]) / total for o in order) + (0.0,) * (2 - len(order))
    return PCAFit(mean.astype(np.float32), comps, (ev[0], ev[1]))


def _pca(X: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """PCA by eigendecomposition of the covariance, signs fixed (largest loading positive)
    so the same factors always give the same picture."""
    fit = fit_pca(X)
    if len(X) < 2 or X.shape[1] < 1:
        return np.zeros((len(X), 2), np.float32), (0.0, 0.0)
    with _one_blas_thread():
        return fit.transform(X), fit.explained_variance


def _one_blas_thread():
    """Limit numpy's BLAS to one thread for the block (see :func:`fit_pca`)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def align_to(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Rotate/reflect ``moving`` (n x 2) onto ``reference`` by orthogonal Procrustes.

    Consecutive epochs' maps then do not spin or flip: only what the model learned moves.
    """
    A = reference - reference.mean(0)
    B = moving - moving.mean(0)
    U, _, Vt = np.linalg.svd(B.T @ A)
    R = U @ Vt
    return (B @ R + reference.mean(0)).astype(np.float32)


def aligned_frames(snapshots: list[np.ndarray], *, seed: int = 0) -> list[np.ndarray]:
    """One 2D frame per epoch: each epoch's own PCA, rotated/reflected onto the next
    frame, walking back from the final epoch so the last frame is the static PCA map."""
    if not snapshots:
        return []
    frames = [project(s.astype(np.float32), "pca", seed=seed).coords for s in snapshots]
    for e in range(len(frames) - 2, -1, -1):
        frames[e] = align_to(frames[e + 1], frames[e])
    return frames


def recovery_over_epochs(snapshots: list[dict[str, np.ndarray]], truth: dict[str, np.ndarray], *,
                         item_rows: np.ndarray | None = None, user_rows: np.ndarray | None = None) -> pd.DataFrame:
    """:func:`~mfcore.data.synthetic.factor_recovery` of each epoch's snapshot against the
    planted factors of a synthetic dataset.

    ``item_rows``/``user_rows`` give, for each model row, the row of ``truth`` (the data's
    dense index; default: the same order). Columns: ``epoch`` (the epoch each snapshot
    shows: runs keep a geometrically thinned set), ``items``, ``users`` (0..1; 1 = the
    planted subspace is recovered exactly).
    """
    from mfcore.data.synthetic import factor_recovery
    from mfcore.training.snapshots import snapshot_epochs

    true_items = np.asarray(truth["item_factors"])
    true_users = np.asarray(truth["user_factors"])
    if item_rows is not None:
        true_items = true_items[np.asarray(item_rows)]
    if user_rows is not None:
        true_users = true_users[np.asarray(user_rows)]
    rows = []
    for epoch, snap in zip(snapshot_epochs(snapshots), snapshots):
        rows.append((epoch, factor_recovery(snap["item_factors"].astype(np.float64), true_items),
                     factor_recovery(snap["user_factors"].astype(np.float64), true_users)))
    return pd.DataFrame(rows, columns=["epoch", "items", "users"])
