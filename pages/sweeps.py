"""Sweeps: vary one or two hyperparameters over the Train form's configuration and watch the
U-shape of over- and under-fitting appear as the runs end.

A sweep is a group of ordinary runs (``mfcore.sweeps``): each point is submitted through the
job runner with the sweep's id, so it queues fairly, may share an identical computation and
is inspectable like any run. A student's sweep counts against their queue share: only as
many points as they have free slots are submitted at once; the others wait in the sweep's
plan and are submitted by this page's live view as earlier points end.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mfcore import sweeps
from mfcore.config import ModelConfig, TrainConfig, config_from_dict
from mfcore.data.sources import DATASETS
from mfcore.errors import MFError
from ui import identity, jobs, projector, state, train_form
from ui.datasets import dataset_location, describe_spec
from ui.sweep_charts import sweep_1d, sweep_2d
from ui.text import md

ROOT = Path(__file__).resolve().parents[1]
CURRENT = "sweeps__current"  # the sweep id shown
NOTE = "sweeps__note"
NONE = "(none)"
DEFAULT_VALUES = {"n_factors": "2..64 doubling", "l2": "0.001..1 log 4", "lr": "0.001..0.1 log 3",
                  "epochs": "5, 10, 20, 40"}
REFRESH_S = 1.0


def book() -> sweeps.SweepBook:
    return sweeps.SweepBook(jobs.runs_dir())


# ---------------------------------------------------------------------------- actions (callbacks)
def _axis(slot: int) -> sweeps.SweepAxis | None:
    name = st.session_state.get(f"sw_p{slot}")
    if not name or name == NONE:
        return None
    return sweeps.parse_axis(name, st.session_state.get(f"sw_v{slot}", ""))


def _launch() -> None:
    result = train_form.validate(train_form.raw_values())
    if not result.ok:
        st.session_state[NOTE] = ("error", "The Train form has invalid values (" + ", ".join(result.errors)
                                  + "): fix them on the Train page first.")
        return
    try:
        axes = [a for a in (_axis(1), _axis(2)) if a is not None]
        plan = sweeps.make_plan(
            result.model, result.train, axes, dataset=state.get(state.DATASET_SPEC), split=state.get(state.SPLIT_SPEC),
            seed=int(state.get(state.SEED)), runtime=result.runtime, owner=identity.owner(),
            owner_name=identity.current().name,
        )
        sweep_book = book()
        sweep_book.save(plan)
        submitted = sweeps.top_up(plan, jobs.get_runner(), sweep_book)
    except MFError as exc:
        st.session_state[NOTE] = ("error", md(exc))
        return
    st.session_state[CURRENT] = plan.sweep_id
    waiting = len(plan.points) - submitted
    later = (f" {waiting} wait for a free slot of yours (each student may have "
             f"{jobs.get_runner().max_queued_per_owner} runs queued or running) and start as earlier points end."
             if waiting else "")
    st.session_state[NOTE] = ("success", f"Sweep `{plan.sweep_id}`: {len(plan.points)} points, {submitted} queued now."
                              + later)


def _open(run_id: str) -> None:
    state.put(state.SELECTED_RUN, run_id)
    state.put(state.ACTIVE_RUN, run_id)
    st.session_state[NOTE] = ("success", f"Run `{run_id}` is now followed on the Train page and shown on the "
                              "inspection pages.")


def _copy(run_id: str) -> None:
    try:
        record = jobs.get_store().get(run_id)
        model = config_from_dict(ModelConfig, record.model_config)
        train = config_from_dict(TrainConfig, record.train_config)
    except MFError as exc:
        st.session_state[NOTE] = ("error", md(exc))
        return
    train_form.apply_configs(model, train)
    st.session_state[train_form.SOURCE_PRESET] = None
    st.session_state[NOTE] = ("success", f"The Train form now holds run `{run_id}`'s settings "
                              f"({md(train_form.auto_label(model, train))}).")


def _stop_sweep(sweep_id: str) -> None:
    try:
        plan = book().load(sweep_id)
        sweeps.cancel_pending(plan, book())
        runner = jobs.get_runner()
        for run_id in plan.run_ids:
            snap = jobs.snapshot(run_id)
            if snap is not None and snap.is_active:
                runner.stop(run_id, identity.actor())
    except MFError as exc:
        st.session_state[NOTE] = ("error", md(exc))


def _reset_values(slot: int) -> None:
    """A newly chosen parameter starts with a sensible range of its own."""
    st.session_state[f"sw_v{slot}"] = DEFAULT_VALUES.get(st.session_state.get(f"sw_p{slot}"), "")


# ---------------------------------------------------------------------------- the page
def data_available(spec: str) -> bool:
    return spec not in DATASETS or dataset_location(spec) is not None


def setup() -> None:
    spec, split, seed = state.get(state.DATASET_SPEC), state.get(state.SPLIT_SPEC), state.get(state.SEED)
    result = train_form.validate(train_form.raw_values())
    base = train_form.auto_label(result.model, result.train) if result.ok else "invalid: fix it on the Train page"
    st.markdown(f"**Data:** {md(describe_spec(spec))} · **split** `{split}` · **seed** {seed}  \n"
                f"**Base configuration** (the Train form): {md(base)}")
    if not data_available(spec):
        st.warning(f"{md(spec)} is not on this machine: download it on the Data page first.", icon=":material/cloud_off:")
        st.page_link("pages/data.py", label="Open the Data page to download it", icon=":material/download:")
    names = list(sweeps.PARAMETERS)
    label = {n: sweeps.PARAMETERS[n][2] for n in names}
    label[NONE] = "(none: a 1-D sweep)"
    c1, c2 = st.columns(2)
    with c1:
        st.selectbox("Vary", names, key="sw_p1", format_func=label.get, on_change=_reset_values, args=(1,))
        st.session_state.setdefault("sw_v1", DEFAULT_VALUES[st.session_state["sw_p1"]])
        st.text_input("Values", key="sw_v1", help="A list (8, 16, 32) or a range: 2..256 doubling, 1..100 x3, "
                      "0.001..1 log 7 (log-spaced), 10..50 lin 5, 10..50 step 10.")
    with c2:
        st.selectbox("and (optional)", [NONE, *names], key="sw_p2", format_func=label.get, on_change=_reset_values,
                     args=(2,))
        p2 = st.session_state["sw_p2"]
        st.session_state.setdefault("sw_v2", DEFAULT_VALUES.get(p2, ""))
        st.text_input("Values of the second", key="sw_v2", disabled=p2 == NONE)
    try:
        axes = [a for a in (_axis(1), _axis(2)) if a is not None]
        size = 1
        for a in axes:
            size *= len(a.values)
        limit = sweeps.max_sweep_runs()
        values = "; ".join(f"{a.label}: " + ", ".join(f"{v:g}" for v in a.values) for a in axes)
        st.caption(f"{size} runs (limit {limit}) · {md(values)}")
        if size > limit:
            st.error(md(sweeps.SweepTooLargeError(size, limit)), icon=":material/error:")
    except MFError as exc:
        st.error(md(exc), icon=":material/error:")
    st.button("Launch sweep", type="primary", key="sw_launch", on_click=_launch, icon=":material/play_arrow:",
              disabled=not data_available(spec))
    note = st.session_state.pop(NOTE, None)
    if note:
        (st.error if note[0] == "error" else st.success)(note[1])


def _records(plan: sweeps.SweepPlan) -> dict:
    store = jobs.get_store()
    out = {}
    for run_id in plan.run_ids:
        try:
            out[run_id] = store.get_with_epochs(run_id)
        except MFError:
            continue
    return out


def sweep_view(was_live: bool) -> None:
    """The chosen sweep: tops up waiting points, draws the chart and the table (a fragment
    with a timer while any point is queued, running or waiting)."""
    with jobs.redraw_cost("sweeps"):
        live = _sweep_view()
    if was_live != live:
        st.rerun(scope="app")


def _sweep_view() -> bool:
    sweep_id = st.session_state.get(CURRENT)
    if not sweep_id:
        st.caption("No sweep yet: choose what to vary above and press Launch sweep.")
        return False
    sweep_book = book()
    try:
        plan = sweep_book.load(sweep_id)
        if plan.pending and plan.owner == identity.owner():
            sweeps.top_up(plan, jobs.get_runner(), sweep_book)
    except MFError as exc:
        st.error(md(exc))
        return False
    runs = _records(plan)
    frame = sweeps.results_frame(plan, runs)
    best = sweeps.best_point(frame)
    baselines = sweeps.baselines_of(r for r, _ in runs.values())
    active = frame["status"].isin(("queued", "running", "waiting"))
    ended = int((~active).sum())
    st.subheader(f"Sweep `{plan.sweep_id}` · {md(plan.describe())}", anchor=False)
    m = st.columns(3)
    m[0].metric("Points ended", f"{ended}/{len(frame)}")
    m[1].metric("Waiting for a slot", f"{int((frame['status'] == 'waiting').sum())}")
    best_row = frame[frame["point"] == best].iloc[0] if best is not None else None
    m[2].metric("Best test RMSE", f"{best_row['test_rmse']:.4f}" if best_row is not None else "–")
    if len(plan.axes) == 1:
        fig = sweep_1d(frame, plan.axes[0], baselines, best, title=f"Test and train RMSE vs {plan.axes[0].label}")
    else:
        fig = sweep_2d(frame, plan.axes, best, title=f"Test RMSE: {plan.axes[0].label} × {plan.axes[1].label}")
    event = st.plotly_chart(projector.figure(fig), width="stretch", key=f"sweep_chart_{plan.sweep_id}",
                            on_select="rerun", selection_mode="points")
    clicked = _clicked_run(event)
    if clicked:
        c1, c2 = st.columns(2)
        c1.button(f"Open run {clicked}", key="sw_open_clicked", on_click=_open, args=(clicked,),
                  icon=":material/open_in_new:")
        c2.button("Copy its config to the Train form", key="sw_copy_clicked", on_click=_copy, args=(clicked,),
                  icon=":material/content_copy:")
    if best_row is not None:
        values = ", ".join(f"{a.label} = {best_row[a.name]:g}" for a in plan.axes)
        st.success(f"Best so far: {md(values)} · test RMSE **{best_row['test_rmse']:.4f}** (run `{best_row['run_id']}`)."
                   " Click a point in the chart to open it.", icon=":material/star:")
        c1, c2, c3 = st.columns(3)
        c1.button("Open the best run", key="sw_open_best", on_click=_open, args=(best_row["run_id"],),
                  icon=":material/open_in_new:")
        c2.button("Copy its config to the Train form", key="sw_copy_best", on_click=_copy,
                  args=(best_row["run_id"],), icon=":material/content_copy:")
        if (ROOT / "pages" / "train.py").is_file():
            c3.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    live = bool(active.any())
    if live and plan.owner == identity.owner():
        st.button("Stop the sweep", key="sw_stop", on_click=_stop_sweep, args=(plan.sweep_id,), icon=":material/stop:",
                  help="Stops its queued and running points and drops the waiting ones; ended points are kept.")
    shown = frame.rename(columns={a.name: a.label for a in plan.axes})
    st.dataframe(shown, hide_index=True, width="stretch", key="sweep_table",
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in ("test_rmse", "best_test_rmse", "train_rmse")})
    return live


def _clicked_run(event) -> str | None:
    try:
        points = event.selection.points if event is not None else []
    except AttributeError:
        return None
    for p in points or []:
        data = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(data, list):
            data = data[0] if data else None
        if isinstance(data, str) and data:
            return data
    return None


def sweep_picker() -> None:
    try:
        mine = book().list(owner=identity.owner())
    except MFError:
        return
    if not mine:
        return
    ids = [p.sweep_id for p in mine]
    current = st.session_state.get(CURRENT)
    if current not in ids:
        current = ids[0]
        st.session_state[CURRENT] = current
    labels = {p.sweep_id: f"{p.sweep_id} · {p.describe()}" for p in mine}
    key = f"sw_pick_{current}"
    st.selectbox("Sweep", ids, index=ids.index(current), format_func=labels.get, key=key,
                 on_change=lambda: st.session_state.__setitem__(CURRENT, st.session_state[key]))


st.title("Sweeps")
st.caption("How many factors? How much regularisation? Vary one or two hyperparameters of the Train form and "
           "watch test error against train error as the runs end.")
train_form.init_form(seed=state.get(state.SEED))
setup()
st.divider()
sweep_picker()


def _is_live() -> bool:
    sweep_id = st.session_state.get(CURRENT)
    if not sweep_id:
        return False
    try:
        plan = book().load(sweep_id)
    except MFError:
        return False
    if plan.pending:
        return True
    return any(jobs.is_active(getattr(jobs.snapshot(r), "status", None)) for r in plan.run_ids)


_live = _is_live()
st.fragment(sweep_view, run_every=REFRESH_S if _live else None)(_live)
