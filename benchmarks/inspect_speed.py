"""How fast are the inspection pages? Page runs on ml-100k, projections at ml-25m size.

    python benchmarks/inspect_speed.py [--data ../shared/data] [--tsne 1682,9742] [--repeats 3]

1. Trains a short ALS run on ml-100k (16 factors, 10 epochs) into a temporary runs folder,
   then times each inspection page through AppTest (the whole script, as the server runs
   it): "first" with Streamlit's caches emptied, "cached" on a second visit (target: under
   1 s cached).
2. t-SNE (openTSNE, FFT) and UMAP of all 1,682 ml-100k movie vectors of that run (target
   for t-SNE: 3 s), best of ``--repeats``, wall and CPU time.
3. PCA of ml-25m-sized item factors (59,047 x 32 and x 64, random normal): the 2D map's
   projection (target: under 2 s), and building + serialising its 59,047-point WebGL figure.
4. t-SNE of random 32-factor matrices of the sizes in ``--tsne`` (9,742: ml-latest-small's movies).
5. Fold-in of a new user and their top 10 at ml-25m size (59,047 movies x 64 factors).

Prints one table of seconds. Everything runs on the CPU; the load average is printed,
because a busy machine (other jobs, a classroom) slows every line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

ML25M_ITEMS = 59_047
ROWS: list[tuple[str, str, str]] = []


def row(what: str, first: float | None, cached: float | None = None, note: str = "") -> None:
    fmt = lambda v: "–" if v is None else (f"{v:.3f}" if v >= 0.01 else f"{v * 1000:.2f}ms")  # noqa: E731
    ROWS.append((what, fmt(first), fmt(cached) + (f"  {note}" if note else "")))
    print(f"  {what}: {fmt(first)} / {fmt(cached)} {note}", file=sys.stderr, flush=True)


def timed(fn, repeats: int = 1) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


# ---------------------------------------------------------------------------- pages
def pages(data_dir: str) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from mfcore.config import ModelConfig, TrainConfig
    from mfcore.runs.runner import RunRequest
    from ui import jobs

    tmp = Path(tempfile.mkdtemp(prefix="inspect_speed_"))
    os.environ.update({"MFSTUDIO_RUNS_DIR": str(tmp / "runs"), "MFSTUDIO_DATA_DIR": data_dir,
                       "MFSTUDIO_CACHE": str(tmp / "cache"), "MFSTUDIO_DOWNLOAD_BASE": "http://127.0.0.1:9"})
    runner = jobs._runner_for(str((tmp / "runs").resolve()))
    t = time.perf_counter()
    rid = runner.submit(RunRequest("ml-100k", "random:0.1", 0, ModelConfig(n_factors=16),
                                   TrainConfig(optimizer="als", epochs=10, l2=0.1), label="bench"))
    snap = runner.wait(rid, timeout=600)
    assert snap.status == "finished", snap.message
    row("train ml-100k ALS 16 factors x 10 epochs (setup)", time.perf_counter() - t)
    model = runner.load_model(rid)
    popular = [50, 258, 100, 181, 294]  # five of the most-rated ml-100k movies
    ratings = dict(zip(popular, (5.0, 2.0, 4.0, 5.0, 1.0)))
    store = jobs.get_store()

    def visit(page: str, state: dict | None = None, then=None) -> float:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.session_state["selected_run"] = rid
        state = dict(state or {})
        rated = state.pop("_ratings", None)
        for k, v in state.items():
            at.session_state[k] = v
        at.run()
        if rated:  # this visitor's own ratings, as a reload finds them in the run store
            owner = at.session_state["identity__person"].owner
            for item, value in rated.items():
                store.set_user_rating(owner, "ml-100k", item, value)
        start = time.perf_counter()
        at.switch_page(page).run()
        if then is not None:
            start = time.perf_counter()
            then(at)
        took = time.perf_counter() - start
        assert not at.exception, (page, at.exception)
        return took

    views = [
        ("Embeddings & biases", "pages/embeddings.py", None, None),
        ("One user (user 1)", "pages/user.py", None, None),
        ("One movie (most-rated)", "pages/movie.py", None, None),
        ("One movie: Every user (943 rows + CSV)", "pages/movie.py", {"movie_view": "Every user"}, None),
        ("One movie: by demographic group (box plots)", "pages/movie.py", {"movie_view": "By demographic group"},
         None),
        ("2D map (UMAP, the default, all 1,682 movies + animation)", "pages/map.py", None, None),
        ("2D map (PCA, all 1,682 movies + animation)", "pages/map.py", {"map_method": "pca"}, None),
        ("2D map: search 'star wars' (+10 neighbours)", "pages/map.py", {"map_method": "pca"},
         lambda at: at.text_input(key="map_search").input("star wars").run()),
        ("2D map: users (943) instead of movies", "pages/map.py", {"map_method": "pca"},
         lambda at: at.radio(key="map_what").set_value("users").run()),
        ("2D map: t-SNE of all 1,682 movies", "pages/map.py", None,
         lambda at: at.radio(key="map_method").set_value("tsne").run()),
        ("Rate movies yourself (no ratings)", "pages/new_user.py", None, None),
        ("Rate movies yourself (5 ratings: recs, waterfall, map)", "pages/new_user.py", {"_ratings": ratings}, None),
    ]
    st.cache_data.clear()
    st.cache_resource.clear()
    for name, page, state, then in views:
        first = visit(page, state, then)
        cached = visit(page, state, then)
        row(f"page: {name}", first, cached)

    from mfcore.inspect import foldin

    took, folded = timed(lambda: foldin.fold_in(model, ratings), 5)
    took2, _ = timed(lambda: foldin.recommend_for(model, folded, n=10), 5)
    row("fold-in 5 ratings + top 10, ml-100k (16 factors)", took + took2)
    runner.shutdown(wait=True)
    return model


# ---------------------------------------------------------------------------- t-SNE / UMAP of ml-100k
def maps_100k(model, repeats: int) -> None:
    from mfcore.inspect.projection import TSNE_THREADS, project

    Q = model.item_factors()
    for method, name in (("tsne", "t-SNE (openTSNE, FFT)"), ("umap", "UMAP")):
        project(Q[:200], method)  # imports and compiled kernels out of the way
        walls, cpus = [], []
        for _ in range(repeats):
            cpu, t = time.process_time(), time.perf_counter()
            p = project(Q, method, seed=0)
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - cpu)
        target = " (target <= 3 s)" if method == "tsne" else ""
        row(f"{name} of all {len(p.rows):,} ml-100k movies x {Q.shape[1]}{target}", min(walls),
            note=f"best of {repeats}; median {statistics.median(walls):.2f} s; CPU {min(cpus):.2f} s; "
                 f"{TSNE_THREADS if method == 'tsne' else 1} thread(s)")


# ---------------------------------------------------------------------------- ml-25m size
def projections(tsne_points: list[int], repeats: int) -> None:
    import pandas as pd

    from mfcore.inspect.projection import fit_pca, project
    from ui import map_charts

    rng = np.random.default_rng(0)
    for k in (32, 64):
        X = rng.normal(0, 0.3, (ML25M_ITEMS, k)).astype(np.float32)
        took, p = timed(lambda: project(X, "pca"), repeats)
        row(f"PCA {ML25M_ITEMS:,} x {k} (target < 2 s)", took, note="median of %d" % repeats)
        took, fit = timed(lambda: fit_pca(X), repeats)
        took2, _ = timed(lambda: fit.transform(X[:1]), repeats)
        row(f"fit_pca {ML25M_ITEMS:,} x {k} / place one new vector", took, took2)
    counts = rng.zipf(1.6, ML25M_ITEMS).clip(1, 80_000)
    genres = rng.choice(["Drama", "Comedy", "Action", "Thriller", "Horror", "Romance", "Documentary"], ML25M_ITEMS)
    table = pd.DataFrame({"item": np.arange(ML25M_ITEMS), "title": [f"Movie {i} (2001)" for i in range(ML25M_ITEMS)],
                          "genres": genres, "ratings": counts, "mean_rating": rng.uniform(1, 5, ML25M_ITEMS),
                          "bias": rng.normal(0, 0.3, ML25M_ITEMS)})
    t = time.perf_counter()
    table["genre"] = map_charts.first_genre(table["genres"])
    table["size"] = map_charts.point_sizes(table["ratings"].to_numpy())
    table["hover"] = map_charts.item_hover(table)
    prep = time.perf_counter() - t
    table["x"], table["y"] = p.coords[:, 0], p.coords[:, 1]
    took, fig = timed(lambda: map_charts.map_figure(table, "genre"), 1)
    took2, payload = timed(lambda: fig.to_json(), 1)
    row(f"map table (hover text, sizes) for {ML25M_ITEMS:,} movies", prep)
    row(f"WebGL figure of {ML25M_ITEMS:,} points: build / to JSON", took, took2,
        note=f"{len(payload) / 1e6:.1f} MB sent to the browser")
    for n in tsne_points:
        X = rng.normal(0, 0.3, (n, 32)).astype(np.float32)
        cpu = time.process_time()
        took, proj = timed(lambda: project(X, "tsne", seed=0), 1)
        cpu = time.process_time() - cpu
        row(f"t-SNE (openTSNE) of {n:,} x 32 random points", took, note=f"CPU {cpu:.1f} s; {proj.note}")


def foldin_25m() -> None:
    import torch

    from mfcore.config import ModelConfig, TrainConfig
    from mfcore.data.dataset import IdIndex
    from mfcore.inspect import foldin
    from mfcore.model import MFModel
    from mfcore.recommender import TrainedModel

    rng = np.random.default_rng(1)
    config = ModelConfig(n_factors=64)
    m = MFModel(100, ML25M_ITEMS, config, global_mean=3.5, rating_scale=(0.5, 5.0))
    with torch.no_grad():
        m.item_factors.copy_(torch.from_numpy(rng.normal(0, 0.3, (ML25M_ITEMS, 64)).astype(np.float32)))
    t = TrainedModel(m, IdIndex(np.arange(100), "user"), IdIndex(np.arange(ML25M_ITEMS), "item"), config,
                     TrainConfig(l2=0.05))
    ratings = {int(i): float(r) for i, r in zip(rng.choice(ML25M_ITEMS, 20, replace=False), rng.integers(1, 6, 20))}
    took, folded = timed(lambda: foldin.fold_in(t, ratings), 5)
    took2, _ = timed(lambda: foldin.recommend_for(t, folded, n=10), 5)
    row(f"fold-in 20 ratings / top 10 of {ML25M_ITEMS:,} x 64", took, took2, note="median of 5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder holding ml-100k/")
    parser.add_argument("--tsne", default="1682,9742", help="t-SNE sizes, comma-separated ('' to skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-pages", action="store_true")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", file=sys.stderr)
    if not args.skip_pages:
        maps_100k(pages(args.data), args.repeats)
    projections([int(v) for v in args.tsne.split(",") if v.strip()], args.repeats)
    foldin_25m()
    width = max(len(r[0]) for r in ROWS)
    print(f"\n{'what':<{width}}  {'first s':>8}  {'cached s':>8}")
    print("-" * (width + 20))
    for what, first, cached in ROWS:
        print(f"{what:<{width}}  {first:>8}  {cached:>8}")
    print(f"\nload average at end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(page times: AppTest, the whole page script; 'first': caches emptied)")


if __name__ == "__main__":
    main()
