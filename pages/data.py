"""Data page: choose a dataset, see what it is, choose the train/test split.

The choices go to session state (``ui.state.DATASET_SPEC``, ``SPLIT_SPEC``, ``SEED``,
``SYNTHETIC_PARAMS``) for the Train page. A dataset is committed only once it loads, so
the state always names data that can be loaded.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from mfcore.data.custom import ROLES
from mfcore.data.sources import DATASET_NAMES, DATASETS
from mfcore.data.splits import parse_split_spec
from mfcore.errors import MFError
from ui import data_charts, datasets, state
from ui.data_sources import SOURCES, download_failed_message, load_failed_message
SPLIT_KINDS = {
    "random": ("Random", "any ratings, uniformly at random"),
    "user": ("Per user", "the same share of every user's ratings"),
    "temporal": ("Temporal, global", "the latest ratings overall"),
    "temporal-user": ("Temporal, per user", "each user's latest ratings"),
    "kfold": ("K-fold", "one of K random folds"),
    "predefined": ("Official ml-100k split", "u1..u5 (5-fold), ua/ub (10 per user)"),
}
NONE = "(none)"


def _seed(key: str, value: Any) -> None:
    """Give a widget its starting value from the committed state (once; no ``value=``)."""
    if key not in st.session_state:
        st.session_state[key] = value


def _commit_dataset(spec: str) -> None:
    if state.get(state.DATASET_SPEC) != spec:
        state.put(state.DATASET_SPEC, spec)


def _source_of(spec: str) -> str:
    if datasets.is_synthetic(spec):
        return "synthetic"
    if spec.strip().lower() in DATASETS:
        return "movielens"
    return "zip" if spec.lower().endswith(".zip") else "file"


def _load(spec: str) -> bool:
    """Load ``spec`` (cached) and commit it; show the error and return False if it fails."""
    try:
        with st.spinner(f"Loading {datasets.describe_spec(spec)}..."):
            datasets.load_data(spec)
    except MFError as exc:
        st.error(f"Could not load this dataset: {load_failed_message(exc)}")
        return False
    _commit_dataset(spec)
    return True


# ----------------------------------------------------------------------------- 1. choose


def _use_source(source: str) -> None:
    st.session_state["data_source"] = source


def _synthetic_chooser() -> None:
    params = datasets.SYNTHETIC_DEFAULTS | (state.get(state.SYNTHETIC_PARAMS) or {})
    for name, value in params.items():
        _seed(f"data_syn_{name}", datasets.SYNTHETIC_KNOBS[name](value))
    with st.form("data_synthetic"):
        st.markdown(
            "Ratings drawn from a planted low-rank model, so you know the answer a model should find. "
            "Works offline, at once."
        )
        c1, c2, c3, c4 = st.columns(4)
        c1.number_input("Users", min_value=10, max_value=300_000, step=100, key="data_syn_n_users")
        c2.number_input("Items", min_value=10, max_value=100_000, step=100, key="data_syn_n_items")
        c3.number_input("Density", min_value=0.0001, max_value=1.0, step=0.01, format="%.4f",
                        key="data_syn_density", help="Share of the user x item matrix that is rated.")
        c4.number_input("Rank", min_value=1, max_value=256, step=1, key="data_syn_rank",
                        help="Rank of the planted factors p_u . q_i.")
        c1.number_input("Noise", min_value=0.0, max_value=5.0, step=0.05, format="%.2f", key="data_syn_noise",
                        help="Standard deviation of the Gaussian noise, in stars.")
        c2.number_input("Popularity skew", min_value=0.0, max_value=10.0, step=0.1, format="%.2f",
                        key="data_syn_popularity_skew",
                        help="Zipf exponent of item popularity (0 = uniform); user activity gets half of it.")
        c3.number_input("Data seed", min_value=0, step=1, key="data_syn_seed",
                        help="Seeds the planted factors and which cells are rated.")
        submitted = c4.form_submit_button("Generate", type="primary", width="stretch")
    new = {name: st.session_state[f"data_syn_{name}"] for name in datasets.SYNTHETIC_KNOBS}
    try:
        spec = datasets.synthetic_spec(new)
    except MFError as exc:
        st.error(str(exc))
        return
    ratings = round(new["density"] * new["n_users"] * new["n_items"])
    st.caption(f"About {ratings:,} ratings. Spec: `{spec}`")
    if submitted:
        target = new
    elif not datasets.is_synthetic(state.get(state.DATASET_SPEC)):
        target = params  # switched back to synthetic: the last generated knobs
    else:
        return
    if _load(datasets.synthetic_spec(target)):
        state.put(state.SYNTHETIC_PARAMS, dict(target))


def _other_sources(prefix: str) -> None:
    """Buttons to the sources that need no download (keys ``{prefix}_to_zip``/``_to_syn``)."""
    c1, c2 = st.columns(2)
    c1.button("Upload the zip instead", on_click=_use_source, args=("zip",), key=f"{prefix}_to_zip")
    c2.button("Use the synthetic dataset", on_click=_use_source, args=("synthetic",), key=f"{prefix}_to_syn")


def _movielens_chooser() -> None:
    current = state.get(state.DATASET_SPEC)
    _seed("data_ml_name", current if current in DATASETS else "ml-100k")
    name = st.selectbox(
        "MovieLens dataset", DATASET_NAMES, key="data_ml_name",
        format_func=lambda n: f"{n}: {DATASETS[n].title}, {DATASETS[n].ratings:,} ratings",
    )
    info = DATASETS[name]
    where = datasets.dataset_location(name)
    if where is None:
        st.info(
            f"{name} is not on this machine yet. It is downloaded once from GroupLens "
            f"({info.zip_mb:g} MB zip, {info.ratings:,} ratings) and kept in the cache "
            f"`{datasets.cache_dir()}`."
        )
        if not st.button(f"Download {name} ({info.zip_mb:g} MB)", key="data_ml_download", type="primary"):
            return
        bar = st.progress(0.0, text=f"Connecting to {datasets.official_url(name)} ...")

        def progress(done: int, total: int | None) -> None:
            if total:
                bar.progress(min(1.0, done / total),
                             text=f"{datasets.human_bytes(done)} of {datasets.human_bytes(total)}")
            else:
                bar.progress(0.0, text=f"{datasets.human_bytes(done)} downloaded")

        try:
            datasets.download_dataset(name, progress)
        except MFError as exc:
            bar.empty()
            st.error(download_failed_message(name, exc))
            _other_sources("data_dl")
            return
        bar.empty()
        where = "download cache"
    st.caption(f"Found in the {where}.")
    _load(name)


def _zip_chooser() -> None:
    st.markdown(
        "Upload an official MovieLens zip as published by GroupLens (for example "
        "`ml-100k.zip` or `ml-latest-small.zip`). It is checked and extracted safely."
    )
    upload = st.file_uploader("MovieLens zip", type=["zip"], key="data_zip")
    if upload is None:
        if _source_of(state.get(state.DATASET_SPEC)) == "zip":
            st.caption(f"In use: {datasets.describe_spec(state.get(state.DATASET_SPEC))}")
        return
    done = _upload_memo()
    try:
        if upload.file_id not in done:  # hashing a 260 MB upload on every rerun is slow
            with st.spinner(f"Checking and loading {upload.name}..."):
                done[upload.file_id] = datasets.load_uploaded_zip(upload.name, upload.getvalue())
        spec = done[upload.file_id]
    except (MFError, OSError) as exc:
        st.error(
            f"{upload.name} was refused: {exc}\n\nUpload an unchanged official MovieLens zip "
            "(from files.grouplens.org), a ratings file with *"
            f"{SOURCES['file']}*, or use the synthetic dataset. Nothing was stored."
        )
        return
    _commit_dataset(spec)
    st.success(f"Loaded {upload.name}.")


def _upload_memo() -> dict[str, Any]:
    """Results of handling each upload (by the uploader's file id), for this session."""
    return st.session_state.setdefault("data_uploads", {})


def _file_chooser() -> None:
    st.markdown(
        "Upload your own ratings as CSV/TSV (also `;`, `|` or `::` separated), one rating per line "
        "with a user, an item and a rating column (a timestamp is optional)."
    )
    upload = st.file_uploader("Ratings file", type=["csv", "tsv", "txt", "dat", "data"], key="data_file")
    if upload is None:
        if _source_of(state.get(state.DATASET_SPEC)) == "file":
            st.caption(f"In use: {datasets.describe_spec(state.get(state.DATASET_SPEC))}")
        return
    done = _upload_memo()
    try:
        if upload.file_id not in done:
            done[upload.file_id] = datasets.stage_ratings_upload(upload.name, upload.getvalue())
        path, preview = done[upload.file_id]
    except (MFError, OSError) as exc:
        st.error(
            f"{upload.name} cannot be read as a ratings file: {exc}\n\n"
            "Check that every line holds user, item and rating separated by a comma, tab, "
            "semicolon, '|' or '::', then upload it again."
        )
        return
    sep = "tab" if preview.separator == "\t" else repr(preview.separator)
    st.caption(
        f"Detected: separator {sep}, {'a header row' if preview.has_header else 'no header row'}, "
        f"encoding {preview.encoding}. First rows:"
    )
    st.dataframe(preview.rows.head(10), hide_index=True, width="stretch")
    options = [NONE, *preview.columns]
    key = path.parent.name  # the upload's content hash: a new file gets fresh selectboxes
    cols = st.columns(len(ROLES))
    mapping: dict[str, str | None] = {}
    for col, role in zip(cols, ROLES):
        wkey = f"data_map_{role}_{key}"
        _seed(wkey, preview.mapping.get(role) or NONE)
        label = f"{role.capitalize()} column" + (" (optional)" if role == "timestamp" else "")
        choice = col.selectbox(label, options, key=wkey)
        mapping[role] = None if choice == NONE else choice
    missing = [r for r in ("user", "item", "rating") if not mapping[r]]
    if missing:
        names = " and ".join(missing) if len(missing) < 3 else "user, item and rating"
        st.warning(f"Choose the {names} column{'s' if len(missing) > 1 else ''} to go on.")
        return
    if not st.button("Load with this mapping", type="primary", key=f"data_map_load_{key}"):
        return
    try:
        with st.spinner(f"Loading {upload.name}..."):
            spec = datasets.load_uploaded_ratings(path, preview, mapping)
    except (MFError, OSError) as exc:
        st.error(f"{upload.name} could not be loaded with this mapping: {exc}")
        return
    _commit_dataset(spec)
    st.success(f"Loaded {upload.name}.")


# ----------------------------------------------------------------------------- 2. what it is


def _count(n: int, noun: str) -> str:
    """'1 item has' / '3 items have'."""
    return f"{n:,} {noun} has" if n == 1 else f"{n:,} {noun}s have"


def _show_data(spec: str) -> dict[str, Any] | None:
    try:
        with st.spinner("Counting..."):
            data = datasets.load_data(spec)
            stats = datasets.dataset_stats(spec)
    except MFError as exc:
        st.error(f"The chosen dataset cannot be loaded any more: {load_failed_message(exc)}")
        _other_sources("data_broken")
        return None
    s = stats["summary"]
    what = "Movies" if stats["is_movielens"] else "Items"
    st.markdown(f"**{datasets.describe_spec(spec)}**")
    if stats["source"]:
        st.caption(stats["source"])
    if note := datasets.duplicates_note(s):
        st.info(note)
    c = st.columns(5)
    c[0].metric("Ratings", f"{s['ratings']:,}")
    c[1].metric("Users", f"{s['users']:,}")
    c[2].metric(what, f"{s['items']:,}")
    c[3].metric("Density", f"{s['density']:.2%}", help="Share of user x item cells that hold a rating.")
    c[4].metric("Rating scale", f"{s['rating_min']:g} to {s['rating_max']:g}")

    left, right = st.columns(2)
    left.plotly_chart(data_charts.rating_histogram(stats["histogram"], stats["mean_rating"]), key="data_hist")
    right.plotly_chart(
        data_charts.memory_bars(stats["memory"]["dense"], stats["memory"]["sparse"]), key="data_mem"
    )
    right.markdown(datasets.memory_sentence(stats))

    log_y = st.toggle("Log scale for the long tails", value=True, key="data_log")
    left, right = st.columns(2)
    item_word = what[:-1].lower()
    left.plotly_chart(data_charts.long_tail(stats["per_item"], item_word, log_y=log_y), key="data_tail_items")
    it = stats["item_tail"]
    left.caption(
        f"The top 10% of {item_word}s get {it['top10_share']:.0%} of all ratings; the median {item_word} "
        f"has {it['median']:g}, and {_count(it['n_at_most_5'], item_word)} 5 or fewer."
    )
    right.plotly_chart(data_charts.long_tail(stats["per_user"], "user", log_y=log_y), key="data_tail_users")
    ut = stats["user_tail"]
    right.caption(
        f"The top 10% of users give {ut['top10_share']:.0%} of all ratings; the median user gave "
        f"{ut['median']:g} (least {ut['min']:,}, most {ut['max']:,})."
    )
    return {"has_timestamps": data.timestamp is not None, "predefined": stats["predefined_splits"], "name": data.name}


# ----------------------------------------------------------------------------- 3. split


def _fallback_split(current: str, info: dict[str, Any]) -> str:
    """The committed split if this dataset supports it, else a random one with a note."""
    try:
        parsed = parse_split_spec(current)
    except MFError:
        return "random:0.1"
    if parsed.needs_timestamps and not info["has_timestamps"]:
        st.info(f"{info['name']} has no timestamps, so the split `{current}` was replaced by a random one.")
        return f"random:{parsed.fraction:g}"
    if parsed.kind == "predefined" and parsed.name not in info["predefined"]:
        st.info(f"{info['name']} has no official split {parsed.name}; using a random 20% split instead.")
        return "random:0.2"
    return parsed.text


def _choose_split(spec: str, info: dict[str, Any]) -> None:
    committed = _fallback_split(state.get(state.SPLIT_SPEC), info)
    if committed != state.get(state.SPLIT_SPEC):
        state.put(state.SPLIT_SPEC, committed)
    parsed = parse_split_spec(committed)
    kinds = [k for k in SPLIT_KINDS if k != "predefined" or info["predefined"]]
    _seed("data_split_kind", parsed.kind if parsed.kind in kinds else "random")
    if st.session_state["data_split_kind"] not in kinds:  # left from a dataset with other splits
        st.session_state["data_split_kind"] = "random"
    _seed("data_split_frac", float(parsed.fraction or 0.1))
    _seed("data_split_k", int(parsed.k or 5))
    _seed("data_split_fold", int(parsed.fold or 1))
    _seed("data_seed", int(state.get(state.SEED)))

    def caption(kind: str) -> str:
        if kind.startswith("temporal") and not info["has_timestamps"]:
            return "unavailable: this dataset has no timestamps"
        return SPLIT_KINDS[kind][1]

    left, right = st.columns([2, 3])
    with left:
        kind = st.radio("Hold out test ratings by", kinds, key="data_split_kind",
                        format_func=lambda k: SPLIT_KINDS[k][0], captions=[caption(k) for k in kinds])
    with right:
        if kind in ("random", "user", "temporal", "temporal-user"):
            frac = st.slider("Test fraction", min_value=0.01, max_value=0.9, step=0.01, key="data_split_frac",
                             persist_state="page",
                             help="Share of the ratings held out for testing.")
            new = f"{kind}:{frac:g}"
        elif kind == "kfold":
            k = st.number_input("Folds K", min_value=2, max_value=20, step=1, key="data_split_k",
                                persist_state="page")
            if st.session_state["data_split_fold"] > k:
                st.session_state["data_split_fold"] = int(k)
            fold = st.number_input("Test fold", min_value=1, max_value=int(k), step=1, key="data_split_fold",
                                   persist_state="page")
            new = f"kfold:{int(k)}:{int(fold)}"
        else:
            if st.session_state.get("data_split_official") not in info["predefined"]:
                first = parsed.name if parsed.name in info["predefined"] else info["predefined"][0]
                st.session_state["data_split_official"] = first
            new = st.selectbox("Official split", info["predefined"], key="data_split_official")
        seed = int(st.number_input("Seed (split and model)", min_value=0, step=1, key="data_seed"))
        if not parse_split_spec(new).uses_seed:
            st.caption("This split ignores the seed; the seed still initialises the model.")

    if kind.startswith("temporal") and not info["has_timestamps"]:
        st.warning(
            f"Temporal splits are disabled: {info['name']} has no timestamps. "
            f"Choose a random or per-user split; still using `{committed}`."
        )
        new = committed
    state.put(state.SPLIT_SPEC, new)
    state.put(state.SEED, seed)
    try:
        with st.spinner("Splitting..."):
            report = datasets.split_summary(spec, new, seed)
    except MFError as exc:
        st.error(f"This split is not possible: {exc}")
        return
    c = st.columns(4)
    c[0].metric("Train ratings", f"{report['n_train']:,}")
    c[1].metric("Test ratings", f"{report['n_test']:,}", help=f"{report['test_fraction']:.1%} held out")
    c[2].metric("Cold users", f"{report['cold_users']:,}",
                help="Users in the test set with no rating in training.")
    c[3].metric("Cold items", f"{report['cold_items']:,}",
                help="Items in the test set with no rating in training.")
    cold = report["cold_user_ratings"] + report["cold_item_ratings"]
    st.caption(
        f"{parse_split_spec(new).describe().capitalize()}: {report['n_train']:,} train and "
        f"{report['n_test']:,} test ratings ({report['test_fraction']:.1%} held out). "
        + (f"{report['cold_user_ratings']:,} test ratings have a cold user and {report['cold_item_ratings']:,} "
           "a cold item: a model can only guess the mean plus the known bias for them."
           if cold else "Every test user and item also appears in training (no cold start).")
    )


# ----------------------------------------------------------------------------- page

st.title("Data")
st.caption("Choose the ratings to learn from, see what they look like, and hold some out for testing.")

st.subheader("1. Choose a dataset")
_seed("data_source", _source_of(state.get(state.DATASET_SPEC)))
source = st.radio("Source", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="data_source",
                  label_visibility="collapsed")
{"synthetic": _synthetic_chooser, "movielens": _movielens_chooser, "zip": _zip_chooser,
 "file": _file_chooser}[source]()

st.subheader("2. What the data is")
current_spec = state.get(state.DATASET_SPEC)
data_info = _show_data(current_spec)

if data_info is not None:
    st.subheader("3. Choose the split")
    _choose_split(current_spec, data_info)

datasets.show_current_choice()
