"""Train: choose hyperparameters (or a preset), launch a run, watch it learn.

The page never trains. Launch validates the form with the engine's configs and submits a
request to the process-wide job runner (``ui.jobs``); the live view is a fragment that
redraws the followed run about once a second while it is queued or running, and is
drawn without a timer once the run has ended (see :func:`live_view`).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mfcore.errors import MFError
from mfcore.presets import PRESETS
from mfcore.training.steppers import updates_every_row
from ui import identity, jobs, projector, run_actions, state, train_form
from ui.datasets import describe_spec, table_rows
from ui.run_charts import learning_curve, outcome, overlay, throughput, worse_advice
from ui.text import md

ROOT = Path(__file__).resolve().parents[1]
DATA_PAGE = ROOT / "pages" / "data.py"
LAUNCH_NOTE = "train__launch_note"  # (kind, text) shown under the launch button after a click
# After Launch, wait this long at most for the first epoch, so that with an empty queue
# the page opens on a live point instead of one live-view tick (1 s) later.
FIRST_EPOCH_WAIT_S = 0.6
# From this many users + items on (ml-10m and up), a dense optimizer's epoch takes minutes.
DENSE_WARNING_ROWS = 20_000


# ---------------------------------------------------------------------------- actions (callbacks)
def _launch() -> None:
    """Validate the form and queue the run (an on_click callback: runs before the page redraws)."""
    values = train_form.raw_values()
    result = train_form.validate(values)
    st.session_state[train_form.ERRORS] = dict(result.errors)
    if not result.ok:
        fields = ", ".join(result.errors)
        st.session_state[LAUNCH_NOTE] = ("error", f"Nothing was queued: fix {fields} (see the message next to the field).")
        return
    from mfcore.runs.runner import RunRequest

    request = RunRequest(
        dataset=state.get(state.DATASET_SPEC),
        split=state.get(state.SPLIT_SPEC),
        seed=int(state.get(state.SEED)),
        model_config=result.model,
        train_config=result.train,
        runtime=result.runtime,
        owner=identity.owner(),
        owner_name=identity.current().name,
        label=str(values.get("label") or "").strip() or train_form.auto_label(result.model, result.train),
    )
    try:
        run_id = jobs.get_runner().submit(request)
    except MFError as exc:  # RunnerError (queue full, no GPU worker), ConfigError from the request
        st.session_state[LAUNCH_NOTE] = ("error", md(exc))
        return
    run_actions.follow(run_id)
    snap = jobs.wait_for_first_epoch(run_id, FIRST_EPOCH_WAIT_S)
    shared = f" It shares the computation of run `{snap.shared_from}` (identical settings)." \
        if snap is not None and snap.shared_from else ""
    st.session_state[LAUNCH_NOTE] = ("success", f"Queued run `{run_id}`.{shared}")


# ---------------------------------------------------------------------------- the page
def data_line() -> None:
    """The data and split chosen on the Data page, with a link to change them."""
    spec, split, seed = state.get(state.DATASET_SPEC), state.get(state.SPLIT_SPEC), state.get(state.SEED)
    c1, c2 = st.columns([5, 1], vertical_alignment="center")
    with c1:
        st.markdown(f"**Data:** {md(describe_spec(spec))} · **split** `{split}` · **split seed** {seed}")
    with c2:
        if DATA_PAGE.is_file():
            st.page_link(str(DATA_PAGE.relative_to(ROOT)), label="Change data", icon=":material/table_chart:")


COMPARE_PAIR = "train__compare_pair"  # (run followed, default run launched beside it) for the overlay


def _compare_with_default(run_id: str) -> None:
    """Launch the tuned default on the run's data and split, and overlay both curves."""
    from mfcore.runs.runner import RunRequest

    default = PRESETS["default"]
    try:
        record = jobs.get_store().get(run_id)
        new_id = jobs.get_runner().submit(RunRequest(
            dataset=record.dataset, split=record.split, seed=record.seed, model_config=default.model,
            train_config=default.train, owner=identity.owner(), owner_name=identity.current().name,
            label="tuned default (compare)"))
    except MFError as exc:
        st.session_state[LAUNCH_NOTE] = ("error", md(exc))
        return
    st.session_state[COMPARE_PAIR] = (run_id, new_id)
    st.session_state[LAUNCH_NOTE] = ("success", f"Queued the tuned default as run `{new_id}` on the same data and "
                                     "split; both curves are overlaid below.")


# Where a preset's figures come from, in words for students (the engine's text names a script).
PRESET_SOURCES = {
    "default": ("measured by MF Studio's quality benchmark on ml-100k (random 90/10 split, seed 0)",
                "MF Studio's own measurement: ml-100k, random 90/10 split, seed 0"),
}


def preset_reference(name: str) -> str:
    return PRESET_SOURCES.get(name, (PRESETS[name].reference, ""))[0]


def preset_source(name: str) -> str:
    return PRESET_SOURCES.get(name, ("", PRESETS[name].published_source))[1]


def preset_figures(name: str) -> str:
    """"Published test RMSE 1.066 · measured here about 0.907", each figure once (plain text)."""
    p = PRESETS[name]
    parts = [f"Published test RMSE {p.published_rmse:g}" if p.published_rmse is not None else "No published figure"]
    if p.measured_rmse is not None:
        parts.append(f"measured here about {p.measured_rmse:g}")
    return " · ".join(parts)


def preset_bar() -> None:
    st.markdown("**Presets** set the form, the data and the split to a tutorial's published setup:")
    cols = st.columns(len(PRESETS))
    for col, (name, preset) in zip(cols, PRESETS.items()):
        with col:
            st.button(preset.title.split(" (")[0], key=f"preset_{name}",
                      on_click=train_form.apply_preset, args=(name,),
                      help=f"{preset.title}: {preset.description} {preset_figures(name)} "
                           f"({preset_reference(name)}).", width="stretch")
    chosen = st.session_state.get(train_form.SOURCE_PRESET)
    if chosen not in PRESETS:
        return
    p = PRESETS[chosen]
    spec, split = state.get(state.DATASET_SPEC), state.get(state.SPLIT_SPEC)
    published = (f"**Published:** test RMSE **{p.published_rmse:g}** ({preset_source(chosen)})"
                 if p.published_rmse is not None else f"**Published:** no figure ({preset_source(chosen)})")
    measured = f" · **measured here:** about {p.measured_rmse:g}" if p.measured_rmse is not None else ""
    if p.keeps_data:
        data = f"Keeps your data: **{md(describe_spec(spec))}**, split `{split}`."
    elif (spec, split) == (p.dataset, p.split):
        data = f"Data set to its source's: **{md(p.dataset)}**, split `{p.split}`."
    else:
        data = f"Its source used **{md(p.dataset)}** with split `{p.split}`; you now train on {md(describe_spec(spec))}."
    st.info(f"**{p.title}** — {p.description}  \n**What this lesson shows:** {p.lesson}  \n"
            f"{published}{measured} ({preset_reference(chosen)})  \n{data}", icon=":material/tune:")
    missing = st.session_state.get(train_form.PRESET_DATA_MISSING)
    if missing and missing == p.dataset and (spec, split) != (p.dataset, p.split):
        st.warning(f"**{md(missing)}**, the data of this preset, is not on this machine, so the data was left as it "
                   f"is ({md(describe_spec(spec))}). Download it (or upload its zip) on the Data page, then press "
                   "the preset again.", icon=":material/cloud_off:")
        if DATA_PAGE.is_file():
            st.page_link(str(DATA_PAGE.relative_to(ROOT)), label=f"Download {missing} on the Data page",
                         icon=":material/download:")


def dense_update_warning() -> None:
    """Warn before a launch that would update every row of large tables on every batch."""
    rows = table_rows(state.get(state.DATASET_SPEC))
    if rows is None or rows < DENSE_WARNING_ROWS:
        return
    result = train_form.validate(train_form.raw_values())
    if result.ok and updates_every_row(result.model, result.train):
        st.warning(
            f"**{result.train.optimizer}** with these settings updates every row of both factor tables "
            f"({rows:,} rows: users and items) on every batch, so an epoch on this dataset can take minutes "
            "(measured on a 25M-rating set: 199 s for Adam, 1.4 s for per-rating SGD). "
            "Per-rating SGD (optimizer sgd, batch size 1), sparse_adam or ALS update only the rows each "
            "batch rates.", icon=":material/speed:")


def launch_bar() -> None:
    c1, c2 = st.columns([1, 4], vertical_alignment="center")
    with c1:
        st.button("Launch", type="primary", key="train_launch", on_click=_launch, icon=":material/play_arrow:",
                  width="stretch")
    with c2:
        note = st.session_state.pop(LAUNCH_NOTE, None)
        if note:
            kind, text = note
            (st.error if kind == "error" else st.success)(text)


def _picked(key: str) -> None:
    state.put(state.ACTIVE_RUN, st.session_state[key])


def run_picker() -> None:
    """Which of this person's runs the live view follows, newest first (when there are several).

    The widget's key carries the followed run, so a Launch (which follows the new run)
    draws a fresh box showing it; a stale widget value can never be written back.
    """
    try:
        mine = jobs.get_store().list_runs(owner=identity.owner(), limit=20)
    except MFError:
        return
    current = state.get(state.ACTIVE_RUN)
    if current is None and mine:
        current = mine[0].id
        state.put(state.ACTIVE_RUN, current)
    if len(mine) < 2:
        return
    ids = [r.id for r in mine]
    # No status in the labels: the picker is outside the live fragment, so it would go stale.
    labels = {r.id: f"{r.label} ({r.id})" if r.label else r.id for r in mine}
    if current not in ids:
        ids.insert(0, current)
        labels[current] = current
    key = f"train_follow_{current}"
    st.selectbox("Follow run", ids, index=ids.index(current), format_func=labels.get, key=key,
                 on_change=_picked, args=(key,))


def draw_run(snap, live: bool) -> None:
    """Numbers and charts of one run (used inside the live fragment).

    The layout is the same in every state (the Stop button is only disabled once the
    run has ended), so a redraw never shifts elements around.
    """
    title = snap.label or snap.run_id
    h1, h2 = st.columns([5, 1], vertical_alignment="bottom")
    with h1:
        st.subheader(f"{jobs.status_text(snap.status)} · {md(title)}", anchor=False)
    with h2:
        may_stop = identity.actor().may_change(snap.owner)
        st.button("Stop", key=f"stop_{snap.run_id}", on_click=run_actions.stop, args=(snap.run_id, LAUNCH_NOTE),
                  icon=":material/stop:",
                  disabled=not (live and may_stop), width="stretch",
                  help="Ends the run after the current batch; the completed epochs are kept." if may_stop
                  else f"{md(snap.owner_name)}'s run: only they (or the teacher) can stop it.")
    where = f" · runs on **{md(snap.placement)}**" if snap.placement and snap.placement != "local" else ""
    same = f" · same as run `{snap.shared_from}`" if snap.shared_from else ""
    st.caption(f"Run `{snap.run_id}` by {md(snap.owner_name)} · {md(snap.dataset)} · split {md(snap.split)} · "
               f"device **{snap.device or 'not yet chosen'}**{where}{same}")
    progress = snap.progress or {}
    m = st.columns(5)
    m[0].metric("Epoch", f"{snap.epochs_done}/{snap.epochs_planned}")
    eps = progress.get("examples_per_second") if progress else None
    if eps is None and snap.history is not None and len(snap.history):
        eps = float(snap.history["examples_per_second"].iloc[-1])
    m[1].metric("Ratings / s", jobs.rate(eps))
    m[2].metric("Elapsed", jobs.duration(snap.elapsed_s))
    m[3].metric("ETA", jobs.duration(snap.eta_s) if snap.status == "running" else "–")
    rmse = jobs.latest_test_rmse(snap)
    base = (snap.baselines or {}).get("baseline_rmse")
    delta = None
    if rmse is not None and isinstance(base, (int, float)):
        delta = f"{rmse - base:+.3f} vs biases"
    m[4].metric("Test RMSE", jobs.fmt(rmse), delta=delta, delta_color="inverse",
                help="Latest test RMSE; the delta compares it with the bias-only baseline (lower is better).")
    status_slot(snap, rmse, base)

    points = jobs.remember_progress(snap.run_id, snap.progress) if live else \
        st.session_state.get(jobs.PROGRESS_POINTS, {}).get(snap.run_id, [])
    log_y, tail = chart_options()
    fig = learning_curve(snap.history, snap.baselines, progress=points, epochs_planned=snap.epochs_planned,
                         title=f"Learning curve · {snap.dataset} · {snap.split}", log_y=log_y, tail=tail,
                         floor=noise_floor(snap.dataset))
    st.plotly_chart(projector.figure(fig), width="stretch", key=f"curve_{snap.run_id}")
    compare_view(snap)
    with st.expander("Throughput per epoch"):
        st.plotly_chart(throughput(snap.history), width="stretch", key=f"speed_{snap.run_id}")


def status_slot(snap, rmse: float | None, base: float | None) -> None:
    """One element whatever the state (queued note, progress bar, outcome), so the chart
    below never changes position between redraws."""
    slot = st.empty()
    progress = snap.progress or {}
    if snap.status == "queued":
        pos = snap.queue_position
        wait = snap.estimated_wait_s
        eta = f" (about {jobs.duration(wait)} to wait)" if wait else ""
        slot.info(f"Queued: position **{pos if pos is not None else '?'}** in the queue{eta}. Runs are taken "
                  "in turn across students. You can leave this page meanwhile.", icon=":material/hourglass_top:")
    elif snap.status == "running":
        if progress.get("total"):
            done, total = int(progress.get("done") or 0), int(progress["total"])
            note = f" · {md(snap.message)}" if snap.message else ""
            slot.progress(min(1.0, done / total), text=f"epoch {progress.get('epoch')} of {snap.epochs_planned}: "
                          f"{done:,} of {total:,} ratings{note}")
        else:
            # issue 10: "starting" only before the first epoch, not for the whole run
            words = (f"{snap.epochs_done} of {snap.epochs_planned} epochs done" if snap.epochs_done
                     else f"starting (0 of {snap.epochs_planned} epochs)")
            note = f" · {md(snap.message)}" if snap.message else ""
            slot.progress(min(1.0, snap.epochs_done / max(1, snap.epochs_planned)), text=words + note)
    elif snap.status == "failed":
        slot.error(f"**The run failed:** {md(snap.message)}\n\n**What to change:** {jobs.failure_advice(snap.message)}",
                   icon=":material/error:")
    elif snap.status in ("interrupted", "stopped"):
        with slot.container():
            if snap.status == "interrupted":
                st.warning(f"Interrupted: {md(snap.message)}. The completed epochs are kept below.",
                           icon=":material/warning:")
            else:
                st.info(f"Stopped after {snap.epochs_done} completed epoch(s); they are kept, with a checkpoint when "
                        "at least one epoch completed.", icon=":material/stop_circle:")
            if identity.actor().may_change(snap.owner):
                b1, b2, _ = st.columns([1, 1, 2])
                b1.button("Resume", key=f"resume_{snap.run_id}", on_click=run_actions.resume,
                          args=(snap.run_id, LAUNCH_NOTE),
                          icon=":material/play_circle:",
                          disabled=not snap.checkpoint_path or snap.epochs_done >= snap.epochs_planned,
                          help="Go on from its last checkpoint to the planned epochs (this run, in place).")
                b2.button("Launch it again", key=f"relaunch_{snap.run_id}", on_click=run_actions.relaunch,
                          args=(snap.run_id, LAUNCH_NOTE), icon=":material/replay:",
                          help="A new run with the same data, split and settings.")
    elif snap.status == "finished":
        gm = (snap.baselines or {}).get("global_mean_rmse")
        worse = outcome(rmse, snap.baselines)
        numbers = f"test RMSE **{jobs.fmt(rmse)}** · biases only {jobs.fmt(base)} · global mean {jobs.fmt(gm)}"
        if worse:
            slot.warning(f"**Finished {worse}:** {numbers}. A model that cannot beat "
                         f"{'predicting the average rating' if 'mean' in worse else 'user and movie biases alone'} "
                         f"has learned nothing useful. **Why, probably:** {worse_advice(snap.history, snap.train_config)}",
                         icon=":material/warning:")
        else:
            slot.success(f"Finished: {numbers}. Compare runs on the Runs page.", icon=":material/check_circle:")


def chart_options() -> tuple[bool, bool]:
    """The learning curve's view toggles (log y axis, zoom to the tail); kept for the session."""
    c1, c2, c3 = st.columns([1, 1, 2])
    log_y = c1.toggle("Log y axis", key="train_log_y", persist_state="session")
    tail = c2.toggle("Zoom to the tail", key="train_tail", persist_state="session",
                     help="Leave out the first fifth of the epochs: a first epoch far above the rest squashes the curve.")
    if not projector.active():
        c3.caption("Shaded: the train–test gap. ★ the best test epoch.")
    return log_y, tail


def noise_floor(spec: str) -> float | None:
    """The planted noise of a synthetic dataset (the RMSE no model can beat), else None."""
    from mfcore.data.synthetic_spec import is_synthetic, parse_synthetic_spec

    try:
        return float(parse_synthetic_spec(spec)["noise"]) if is_synthetic(spec) else None
    except MFError:
        return None


def _compare_active(run_id: str) -> bool:
    pair = st.session_state.get(COMPARE_PAIR)
    other = jobs.snapshot(pair[1]) if pair and pair[0] == run_id else None
    return other is not None and jobs.is_active(other.status)


def compare_view(snap) -> None:
    """"Compare with the tuned default": the button, then both curves overlaid."""
    pair = st.session_state.get(COMPARE_PAIR)
    if pair and pair[0] == snap.run_id:
        curves = []
        for run_id, name in ((pair[0], snap.label or pair[0]), (pair[1], "tuned default")):
            other = jobs.snapshot(run_id)
            if other is not None:
                curves.append({"label": name, "history": other.history, "baselines": other.baselines})
        st.plotly_chart(projector.figure(overlay(curves, title="This run vs the tuned default (test RMSE)")),
                        width="stretch", key=f"compare_{snap.run_id}")
        return
    if not jobs.is_active(snap.status) and snap.owner == identity.owner():
        st.button("Compare with the tuned default", key=f"compare_default_{snap.run_id}",
                  on_click=_compare_with_default, args=(snap.run_id,), icon=":material/compare_arrows:",
                  help="Launches the tuned default on the same data and split and overlays both curves.")


def live_view(was_live: bool) -> None:
    """The followed run. Wrapped by ``st.fragment`` below, with a timer only while it is live.

    A fragment's ``run_every`` is fixed when it is called in a full run, and the browser
    keeps firing it until the next full run (which clears every timer and re-registers
    the fragments that ask for one). So: while the run is queued/running the page calls
    this fragment with ``run_every``; when a timed redraw finds the run over, it asks
    for one full rerun (``st.rerun(scope="app")``), in which the fragment is called
    without a timer, and the redraws stop.
    """
    with jobs.redraw_cost("train"):
        run_id = state.get(state.ACTIVE_RUN)
        snap = jobs.snapshot(run_id)
        if snap is None:
            if run_id:
                state.put(state.ACTIVE_RUN, None)
            st.caption("No run yet: choose hyperparameters above and press Launch. Runs keep going when you "
                       "switch pages or close the tab; find them all on the Runs page.")
            return
        live = jobs.is_active(snap.status)
        draw_run(snap, live)
        live = live or _compare_active(snap.run_id)  # the overlaid tuned default still training
    if was_live != live:
        st.rerun(scope="app")  # one full run that draws the fragment without a timer


st.title("Train")
jobs.get_runner().prefetch(state.get(state.DATASET_SPEC))  # a first Launch need not wait for the file
train_form.init_form(seed=state.get(state.SEED))
data_line()
preset_bar()
train_form.draw_form()
dense_update_warning()
launch_bar()
st.divider()
run_picker()

_followed = jobs.snapshot(state.get(state.ACTIVE_RUN))
_live = _followed is not None and (jobs.is_active(_followed.status) or _compare_active(_followed.run_id))
st.fragment(live_view, run_every=jobs.LIVE_INTERVAL_S if _live else None)(_live)
