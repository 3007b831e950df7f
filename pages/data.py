"""Data page: choose a dataset, see what it is, choose the train/test split.

The choices go to session state (``ui.state.DATASET_SPEC``, ``SPLIT_SPEC``, ``SEED``,
``SYNTHETIC_PARAMS``) for the Train page. A dataset is committed only once it loads, so
the state always names data that can be loaded. The state behind each step lives in
``ui.data_sources``, ``ui.column_mapping`` and ``ui.data_split``; loaders and statistics
in ``ui.datasets``; this file draws.
"""

from __future__ import annotations

import streamlit as st

from mfcore.data.custom import ROLES
from mfcore.data.sources import DATASET_NAMES, DATASETS
from mfcore.data.splits import parse_split_spec
from mfcore.errors import MFError
from ui import column_mapping, data_charts, datasets, state
from ui import data_sources as sources
from ui import data_split as split
from ui.data_sources import SOURCES, seed_widget, synthetic_key
from ui.data_split import SPLIT_KINDS, SplitOptions
from ui.text import md


def _load(spec: str) -> bool:
    """Load ``spec`` (cached) and commit it; show the error and return False if it fails."""
    try:
        with st.spinner(f"Loading {datasets.describe_spec(spec)}..."):
            datasets.load_data(spec)
    except MFError as exc:
        st.error(f"Could not load this dataset: {sources.load_failed_message(exc)}")
        return False
    sources.commit_dataset(spec)
    return True


def _other_sources(prefix: str) -> None:
    """Buttons to the sources that need no download (keys ``{prefix}_to_zip``/``_to_syn``)."""
    c1, c2 = st.columns(2)
    c1.button("Upload the zip instead", on_click=sources.use_source, args=("zip",), key=f"{prefix}_to_zip")
    c2.button("Use the synthetic dataset", on_click=sources.use_source, args=("synthetic",),
              key=f"{prefix}_to_syn")


# ----------------------------------------------------------------------------- 1. choose


def _synthetic_chooser() -> None:
    committed = sources.committed_synthetic_knobs()
    sources.seed_synthetic_widgets(committed)
    with st.form("data_synthetic"):
        st.markdown(
            "Ratings drawn from a planted low-rank model, so you know the answer a model should find. "
            "Works offline, at once."
        )
        c1, c2, c3, c4 = st.columns(4)
        c1.number_input("Users", min_value=10, max_value=300_000, step=100, key=synthetic_key("n_users"))
        c2.number_input("Items", min_value=10, max_value=100_000, step=100, key=synthetic_key("n_items"))
        c3.number_input("Density", min_value=0.0001, max_value=1.0, step=0.01, format="%.4f",
                        key=synthetic_key("density"), help="Share of all (user, item) pairs that have a rating: 0.05 = 5%.")
        c4.number_input("Rank", min_value=1, max_value=256, step=1, key=synthetic_key("rank"),
                        help="How many hidden factors the planted model has: each rating comes from "
                        "a user's and a movie's vectors of this length (plus noise).")
        c1.number_input("Noise", min_value=0.0, max_value=5.0, step=0.05, format="%.2f",
                        key=synthetic_key("noise"), help="Standard deviation of the Gaussian noise, in stars.")
        c2.number_input("Popularity skew", min_value=0.0, max_value=10.0, step=0.1, format="%.2f",
                        key=synthetic_key("popularity_skew"),
                        help="How unevenly the ratings fall on the items: 0 = every item equally often; "
                        "larger = a few hits and a long tail (a Zipf law). Users get half of this skew.")
        c3.number_input("Data seed", min_value=0, step=1, key=synthetic_key("seed"),
                        help="Seeds the planted factors and which cells are rated.")
        submitted = c4.form_submit_button("Generate", type="primary", width="stretch")
    form = sources.synthetic_form_knobs()
    try:
        spec = datasets.synthetic_spec(form)
    except MFError as exc:
        st.error(str(exc))
        return
    st.caption(f"About {sources.expected_ratings(form):,} ratings. Its name in the runs list: `{spec}`")
    target = sources.synthetic_to_generate(submitted, form, committed)
    if target is not None and _load(datasets.synthetic_spec(target)):
        sources.commit_synthetic_knobs(target)


def _movielens_chooser() -> None:
    current = state.get(state.DATASET_SPEC)
    seed_widget("data_ml_name", current if current in DATASETS else "ml-100k")
    name = st.selectbox(
        "MovieLens dataset", DATASET_NAMES, key="data_ml_name",
        format_func=lambda n: f"{n}: {DATASETS[n].title}, {DATASETS[n].ratings:,} ratings",
    )
    info = DATASETS[name]
    where = datasets.dataset_location(name)
    if where is None:
        broken = datasets.incomplete_folder(name)
        if broken is not None:  # issue 10: name the missing file, not "not on this machine yet"
            folder, missing, partial = broken
            instead = f" (only {md(partial)}, a part of them)" if partial else ""
            st.warning(
                f"The folder {md(folder)} is here, but its ratings file **{missing}** is missing{instead}, so "
                f"{name} cannot be loaded from it. Put the complete extracted {name} folder there, or download "
                f"it once from GroupLens ({info.zip_mb:g} MB zip) into the server's download cache:",
                icon=":material/folder_off:")
        else:
            st.info(
                f"{name} is not on this machine yet. It is downloaded once from GroupLens "
                f"({info.zip_mb:g} MB zip, {info.ratings:,} ratings) and kept in the server's download cache."
            )
        if not st.button(f"Download {name} ({info.zip_mb:g} MB)", key="data_ml_download", type="primary"):
            return
        bar = st.progress(0.0, text=f"Connecting to {datasets.official_url(name)} ...")

        def progress(done: int, total: int | None) -> None:
            share, text = datasets.download_progress(done, total)
            bar.progress(share, text=text)

        try:
            datasets.download_dataset(name, progress)
        except MFError as exc:
            bar.empty()
            st.error(sources.download_failed_message(name, exc))
            _other_sources("data_dl")
            return
        bar.empty()
        where = "download cache"
    st.caption(f"Found in the {where}.")
    _load(name)


def _in_use_caption(source: str) -> None:
    """Before anything is uploaded: say which upload is in use, if one is."""
    if sources.committed_source() == source:
        st.caption(f"In use: {md(datasets.describe_spec(state.get(state.DATASET_SPEC)))}")


def _zip_chooser() -> None:
    st.markdown(
        "Upload an official MovieLens zip as published by GroupLens (for example "
        "`ml-100k.zip` or `ml-latest-small.zip`). It is checked and extracted safely."
    )
    upload = st.file_uploader("MovieLens zip", type=["zip"], key="data_zip")
    if upload is None:
        _in_use_caption("zip")
        return
    done = sources.upload_memo()
    try:
        if upload.file_id not in done:
            with st.spinner(f"Checking and loading {upload.name}..."):
                done[upload.file_id] = datasets.load_uploaded_zip(upload.name, upload.getvalue())
        spec = done[upload.file_id]
    except (MFError, OSError) as exc:
        st.error(sources.zip_refused_message(md(upload.name), exc))
        return
    sources.commit_dataset(spec)
    st.success(f"Loaded {md(upload.name)}.")


def _file_chooser() -> None:
    st.markdown(
        "Upload your own ratings as CSV/TSV (also `;`, `|` or `::` separated), one rating per line "
        "with a user, an item and a rating column (a timestamp is optional)."
    )
    upload = st.file_uploader("Ratings file", type=["csv", "tsv", "txt", "dat", "data"], key="data_file")
    if upload is None:
        _in_use_caption("file")
        return
    done = sources.upload_memo()
    try:
        if upload.file_id not in done:
            done[upload.file_id] = datasets.stage_ratings_upload(upload.name, upload.getvalue())
        path, preview = done[upload.file_id]
    except (MFError, OSError) as exc:
        st.error(sources.ratings_unreadable_message(md(upload.name), exc))
        return
    st.caption(column_mapping.detected_caption(preview))
    st.dataframe(preview.rows.head(10), hide_index=True, width="stretch")

    key = column_mapping.upload_key(path)  # a new file gets fresh selectboxes
    column_mapping.seed_widgets(preview, key)
    options = column_mapping.options(preview)
    choices = {
        role: col.selectbox(column_mapping.label(role), options, key=column_mapping.widget_key(role, key))
        for col, role in zip(st.columns(len(ROLES)), ROLES)
    }
    mapping = column_mapping.mapping_of(choices)
    if missing := column_mapping.missing_message(mapping):
        st.warning(missing)
        return
    if not st.button("Load with this mapping", type="primary", key=column_mapping.load_button_key(key)):
        return
    try:
        with st.spinner(f"Loading {upload.name}..."):
            spec = datasets.load_uploaded_ratings(path, preview, mapping)
    except (MFError, OSError) as exc:
        st.error(sources.mapping_failed_message(md(upload.name), exc))
        return
    sources.commit_dataset(spec)
    st.success(f"Loaded {md(upload.name)}.")


# ----------------------------------------------------------------------------- 2. what it is


def _show_data(spec: str) -> SplitOptions | None:
    """Counts, histogram, memory and long tails of ``spec``; what its split step may offer."""
    try:
        with st.spinner("Counting..."):
            data = datasets.load_data(spec)
            stats = datasets.dataset_stats(spec)
    except MFError as exc:
        st.error(f"The chosen dataset cannot be loaded any more: {sources.load_failed_message(exc)}")
        _other_sources("data_broken")
        return None
    s = stats["summary"]
    st.markdown(f"**{md(datasets.describe_spec(spec))}**")
    if datasets.is_synthetic(spec):  # issue 9: the planted answer, and the floor no model can beat
        knobs = datasets.parse_synthetic_spec(spec)
        st.info(f"Planted rank **{knobs['rank']}** and noise **{knobs['noise']:g}** stars: no model can reach a test "
                f"RMSE below about {knobs['noise']:g} here (the Train page draws it as the floor).", icon=":material/target:")
    if stats["source"]:
        st.caption(md(datasets.friendly_text(stats["source"])))
    if note := datasets.duplicates_note(stats):
        st.info(note)
    c = st.columns(5)
    c[0].metric("Ratings", f"{s['ratings']:,}")
    c[1].metric("Users", f"{s['users']:,}")
    c[2].metric(f"{datasets.item_word(stats).capitalize()}s", f"{s['items']:,}")
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
    left.plotly_chart(data_charts.long_tail(stats["per_item"], datasets.item_word(stats), log_y=log_y),
                      key="data_tail_items")
    left.caption(datasets.item_tail_sentence(stats))
    right.plotly_chart(data_charts.long_tail(stats["per_user"], "user", log_y=log_y), key="data_tail_users")
    right.caption(datasets.user_tail_sentence(stats))
    return SplitOptions.of(data)


# ----------------------------------------------------------------------------- 3. split


def _choose_split(spec: str, options: SplitOptions) -> None:
    committed, note = split.fallback_split(state.get(state.SPLIT_SPEC), options)
    if note:
        st.info(note)
    if committed != state.get(state.SPLIT_SPEC):
        state.put(state.SPLIT_SPEC, committed)
    parsed = parse_split_spec(committed)
    split.seed_widgets(parsed, options, state.get(state.SEED))

    left, right = st.columns([2, 3])
    with left:
        kind = st.radio("Hold out test ratings by", options.kinds, key=split.KIND_KEY,
                        format_func=lambda k: SPLIT_KINDS[k][0], captions=[options.caption(k) for k in options.kinds])
    with right:
        if kind in split.FRACTION_KINDS:
            frac = st.slider("Test fraction", min_value=0.01, max_value=0.9, step=0.01, key=split.FRACTION_KEY,
                             persist_state="page", help="Share of the ratings held out for testing.")
            new = f"{kind}:{frac:g}"
        elif kind == "kfold":
            k = st.number_input("Folds K", min_value=2, max_value=20, step=1, key=split.K_KEY,
                                persist_state="page")
            split.clamp_fold(k)
            fold = st.number_input("Test fold", min_value=1, max_value=int(k), step=1, key=split.FOLD_KEY,
                                   persist_state="page")
            new = f"kfold:{int(k)}:{int(fold)}"
        else:
            split.seed_official(parsed, options)
            new = st.selectbox("Official split", options.predefined, key=split.OFFICIAL_KEY)
        seed = int(st.number_input("Seed (split and model)", min_value=0, step=1, key=split.SEED_KEY))
        if not parse_split_spec(new).uses_seed:
            st.caption("This split ignores the seed; the seed still initialises the model.")

    if options.unavailable(kind):
        st.warning(
            f"Temporal splits are disabled: {options.name} has no timestamps. "
            f"Choose a random or per-user split; still using `{committed}`."
        )
        new = committed
    state.put(state.SPLIT_SPEC, new)
    state.put(state.SEED, seed)
    try:
        with st.spinner("Splitting..."):
            report = datasets.split_summary(spec, new, seed)
    except MFError as exc:
        st.error(f"This split is not possible: {datasets.friendly_text(str(exc))}")
        return
    c = st.columns(4)
    c[0].metric("Train ratings", f"{report['n_train']:,}")
    c[1].metric("Test ratings", f"{report['n_test']:,}", help=f"{report['test_fraction']:.1%} held out")
    c[2].metric("Cold users", f"{report['cold_users']:,}",
                help="Users in the test set with no rating in training.")
    c[3].metric("Cold items", f"{report['cold_items']:,}",
                help="Items in the test set with no rating in training.")
    st.caption(split.split_sentence(report, new))


# ----------------------------------------------------------------------------- page

st.title("Data")
st.caption("Choose the ratings to learn from, see what they look like, and hold some out for testing.")

st.subheader("1. Choose a dataset")
seed_widget(sources.SOURCE_KEY, sources.committed_source())
source = st.radio("Source", list(SOURCES), format_func=SOURCES.get, horizontal=True, key=sources.SOURCE_KEY,
                  label_visibility="collapsed")
{"synthetic": _synthetic_chooser, "movielens": _movielens_chooser, "zip": _zip_chooser,
 "file": _file_chooser}[source]()

current_spec = state.get(state.DATASET_SPEC)
st.subheader("2. What the data is")
if pending := sources.pending_choice(source, current_spec):  # issue 10: say which data is really in use
    st.warning(pending, icon=":material/info:")
split_options = _show_data(current_spec)

if split_options is not None:
    st.subheader("3. Choose the split")
    _choose_split(current_spec, split_options)

datasets.show_current_choice()
