"""Runs: every training run on this server, this session's first, then the class's.

Overlay several runs' curves, compare their configurations with the differences
highlighted, download a run's checkpoint or metrics, delete a run. Everything is read
from the run store (``ui.jobs.get_store()``), so runs of closed tabs and of a server
that was restarted (shown as *interrupted*, with their completed epochs) are here too.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from mfcore.errors import MFError
from ui import downloads, identity, jobs, run_actions, state
from ui.datasets import describe_spec
from ui.run_charts import overlay
from ui.text import md
from ui.train_form import field_label, setting_value

TRAIN_PAGE = Path(__file__).resolve().parent / "train.py"
COMPARE_WIDGET = "runs_compare"  # the multiselect; mirrored into state.COMPARE_RUNS
DETAIL_WIDGET = "runs_detail"
CONFIRM_DELETE = "runs_confirm_delete"  # run id awaiting confirmation
NOTE = "runs_note"
# The table redraws this often while any run is queued or running (seconds).
RUNS_REFRESH_S = 2.0

METRICS = {
    "test RMSE": "test_rmse",
    "train RMSE (√ loss)": "train_loss",
    "test MAE": "test_mae",
    "ratings / second": "examples_per_second",
}


def data_name(spec: str) -> str:
    """A dataset as a table cell: "synthetic" (with its knobs' spec when changed), a MovieLens
    name, or an upload's own file name (never a server cache path)."""
    if spec.strip().lower() == "synthetic" or spec.strip().lower().startswith("synthetic:"):
        return spec.strip()
    return describe_spec(spec)


def short_data_name(spec: str) -> str:
    """:func:`data_name`, a MovieLens release by its short name ("ml-100k"): a narrow cell."""
    name = spec.strip().lower()
    return name if name.startswith("ml-") and ":" not in name and "/" not in name else data_name(spec)


# The Runs table's columns without "All columns": what fits beside the sidebar on a 1280 px screen.
MAIN_COLUMNS = ["status", "owner", "label", "dataset", "split", "test RMSE", "epochs"]


def _created(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "–"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _label(run) -> str:
    return f"{run.label or run.id} ({run.id[:6]})" if run.label else run.id


def _test_rmse(run) -> float | None:
    """The final test RMSE, or the last epoch's while a run is active (one query per active run)."""
    final = _num((run.metrics or {}).get("test_rmse"))
    if final is not None or run.epochs_done == 0 or not run.is_active:
        return final
    try:
        epochs = jobs.get_store().epochs(run.id)
    except MFError:
        return None
    return _num(epochs["test_rmse"].iloc[-1]) if len(epochs) else None


def runs_table(runs: list, me: str) -> pd.DataFrame:
    rows = []
    for r in runs:
        rows.append({
            "status": r.status,
            "owner": f"{r.who} (you)" if r.owner == me else r.who,
            "label": r.label,
            "dataset": short_data_name(r.dataset),
            "split": r.split,
            "test RMSE": _test_rmse(r),
            "biases only": _num((r.baselines or {}).get("baseline_rmse")),
            "global mean": _num((r.baselines or {}).get("global_mean_rmse")),
            "epochs": f"{r.epochs_done}/{r.epochs_planned}",
            "device": r.device,
            "where": {"local": "this server", "": "–"}.get(r.placement, r.placement),
            "same as": r.shared_from or "",
            "created": _created(r.created_at),
            "run id": r.id,
        })
    return pd.DataFrame(rows)


def leaderboard(runs: list) -> pd.DataFrame:
    """Every ended run with a test RMSE, best first: owner, what differs from the default preset, link."""
    from mfcore.presets import PRESETS

    default = PRESETS["default"]
    base = {**{f"model.{k}": v for k, v in _as_dict(default.model).items()},
            **{f"train.{k}": v for k, v in _as_dict(default.train).items()}}
    rows = []
    for r in runs:
        rmse = _num((r.metrics or {}).get("test_rmse"))
        if rmse is None:
            continue
        values = {**{f"model.{k}": v for k, v in (r.model_config or {}).items()},
                  **{f"train.{k}": v for k, v in (r.train_config or {}).items()}}
        diff = [f"{field_label(k.split('.', 1)[1])} {setting_value(k.split('.', 1)[1], v)}"
                for k, v in values.items() if k in base and base[k] != v]
        rows.append({"test RMSE": rmse, "owner": r.who, "label": r.label, "dataset": data_name(r.dataset), "split": r.split,
                     "differs from the default": ", ".join(diff) or "(the default)",
                     "inspect": identity.run_link(r.id, as_me=True)})
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values("test RMSE", kind="stable").reset_index(drop=True)
        frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame


def _as_dict(config) -> dict:
    from mfcore.config import config_to_dict

    return config_to_dict(config)


def config_frame(records: list) -> pd.DataFrame:
    """One column per run, one row per setting (data, split, every model/train/runtime field)."""
    columns = {}
    for r in records:
        values: dict[str, Any] = {"Dataset": data_name(r.dataset), "Split": r.split, "Split seed": str(r.seed)}
        for section in (r.model_config, r.train_config, r.runtime):  # the Train form's labels and words (issue 10)
            values.update({field_label(k): json.dumps(v) if isinstance(v, dict) else setting_value(k, v)
                           for k, v in (section or {}).items()})
        columns[_label(r)] = values
    return pd.DataFrame(columns).fillna("–")


def differing_rows(frame: pd.DataFrame) -> pd.Series:
    """True for the settings on which the runs differ."""
    if frame.shape[1] < 2:
        return pd.Series(False, index=frame.index)
    return frame.nunique(axis=1, dropna=False) > 1


def _highlight(frame: pd.DataFrame):
    diff = differing_rows(frame)

    def style(row: pd.Series) -> list[str]:
        return ["background-color: rgba(255, 193, 7, 0.35); font-weight: 600" if diff[row.name] else ""] * len(row)

    return frame.style.apply(style, axis=1)


# ---------------------------------------------------------------------------- actions
def _ask_delete(run_id: str) -> None:
    st.session_state[CONFIRM_DELETE] = run_id


def _cancel_delete() -> None:
    st.session_state.pop(CONFIRM_DELETE, None)


def _delete(run_id: str) -> None:
    st.session_state.pop(CONFIRM_DELETE, None)
    try:
        jobs.get_runner().delete(run_id, identity.actor())  # refuses others' and active runs
    except MFError as exc:
        st.session_state[NOTE] = ("error", md(exc))
        return
    for key in (state.ACTIVE_RUN, state.SELECTED_RUN):
        if st.session_state.get(key) == run_id:
            state.put(key, None)
    state.put(state.COMPARE_RUNS, [r for r in state.get(state.COMPARE_RUNS) if r != run_id])
    if COMPARE_WIDGET in st.session_state:
        st.session_state[COMPARE_WIDGET] = [r for r in st.session_state[COMPARE_WIDGET] if r != run_id]
    st.session_state[NOTE] = ("success", f"Deleted run `{run_id}`.")


def _rename(run_id: str, key: str) -> None:
    try:
        jobs.get_runner().rename(run_id, st.session_state.get(key, ""), identity.actor())
    except MFError as exc:
        st.session_state[NOTE] = ("error", md(exc))


def _follow(run_id: str) -> None:
    state.put(state.ACTIVE_RUN, run_id)


def _projector_zip(run_id: str) -> bytes:
    """The run's vectors and metadata for the Embedding Projector (mfcore.export), built on click."""
    from mfcore.export import projector_zip
    from ui import datasets

    trained = jobs.get_runner().load_model(run_id)
    try:
        data = datasets.load_data(trained.dataset or jobs.get_store().get(run_id).dataset)
    except MFError:
        data = None  # the vectors still export, with ids only
    return projector_zip(trained, data)


def _history_csv(run_id: str) -> str:
    from mfcore.export import history_csv

    return history_csv(jobs.get_store().epochs(run_id))


# ---------------------------------------------------------------------------- sections
def compare_section(runs: list, labels: dict[str, str]) -> None:
    st.subheader("Compare")
    ids = [r.id for r in runs]
    if COMPARE_WIDGET not in st.session_state:
        st.session_state[COMPARE_WIDGET] = [r for r in state.get(state.COMPARE_RUNS) if r in ids]
    else:  # drop runs deleted elsewhere
        st.session_state[COMPARE_WIDGET] = [r for r in st.session_state[COMPARE_WIDGET] if r in ids]
    short = {r.id: _label(r) for r in runs}  # a chosen run's tag shows its label, not cut off (issue 10)
    chosen = st.multiselect("Runs to overlay", ids, format_func=short.get, key=COMPARE_WIDGET,
                            placeholder="choose two or more runs")
    state.put(state.COMPARE_RUNS, list(chosen))
    if not chosen:
        st.caption("Choose runs above to overlay their learning curves and compare their settings.")
        return
    store = jobs.get_store()
    records, curves = [], []
    for run_id in chosen:
        try:
            record, history = store.get_with_epochs(run_id)
        except MFError:
            continue
        records.append(record)
        curves.append({"label": _label(record), "history": history, "baselines": record.baselines})
    metric_name = st.radio("Metric", list(METRICS), horizontal=True, key="runs_metric")
    st.plotly_chart(overlay(curves, metric=METRICS[metric_name]), width="stretch", key="runs_overlay")
    frame = config_frame(records)
    diff = differing_rows(frame)
    only = st.toggle("Only the settings that differ", value=len(records) > 1 and bool(diff.any()), key="runs_only_diff")
    shown = frame[diff] if only and diff.any() else frame
    n_diff = int(diff.sum())
    st.caption(f"{n_diff} setting{' differs' if n_diff == 1 else 's differ'} (highlighted)." if len(records) > 1 else
               "Choose a second run to see the differences.")
    st.dataframe(_highlight(shown), width="stretch", key="runs_configs",  # setting names in full (issue 10)
                 column_config={"_index": st.column_config.TextColumn("setting", width=250)})


def detail_section(runs: list, labels: dict[str, str]) -> None:
    st.subheader("Run details, downloads, delete")
    ids = [r.id for r in runs]
    selected = state.get(state.SELECTED_RUN)
    if selected not in ids:
        selected = ids[0]
        state.put(state.SELECTED_RUN, selected)
    # The key carries the selection, so a run chosen elsewhere (a ?run= link, Launch) shows here.
    key = f"{DETAIL_WIDGET}_{selected}"
    st.selectbox("Run", ids, index=ids.index(selected), format_func=labels.get, key=key,
                 on_change=lambda: state.put(state.SELECTED_RUN, st.session_state[key]))
    run = next(r for r in runs if r.id == selected)
    where = f" · ran on {'this server' if run.placement == 'local' else run.placement}" if run.placement else ""
    st.markdown(
        f"{jobs.status_text(run.status)} · by **{md(run.who)}** · **{md(data_name(run.dataset))}** · split {md(run.split)} · "
        f"{run.epochs_done}/{run.epochs_planned} epochs · device {run.device or '–'}{where} · "
        f"created {_created(run.created_at)}"
    )
    if run.shared_from:
        st.caption(f"Same data, split, seed and settings as run `{run.shared_from}`: it shares that computation.")
    st.caption(f"Link for anyone to open this run (read-only): `{identity.run_link(run.id)}`")
    if run.status == "interrupted":
        st.warning(f"Interrupted: {md(run.message)}. Its {run.epochs_done} completed epoch(s) are kept"
                   + (" and the last checkpoint can be downloaded." if run.checkpoint_path else "."),
                   icon=":material/warning:")
    elif run.status == "failed":
        st.error(f"Failed: {md(run.message)}\n\n**What to change:** {jobs.failure_advice(run.message)}",
                 icon=":material/error:")
    elif run.message:
        st.caption(md(run.message))

    c1, c2, c3, c4 = st.columns(4)
    with c1:
        # on click, a link to the file served from disk by Streamlit's static route (ui/downloads.py)
        downloads.checkpoint_button(run.checkpoint_path, file_name=f"mfstudio-{run.id}.pt", key=f"dl_ckpt_{run.id}")
    with c2:
        st.download_button(
            "Learning history (.csv)", data=partial(_history_csv, run.id), on_click="ignore",
            file_name=f"mfstudio-{run.id}-history.csv", mime="text/csv", key=f"dl_hist_{run.id}",
            icon=":material/show_chart:", help="One row per epoch: training loss, test RMSE and MAE, seconds.")
    # issue 9: the vectors for the Embedding Projector
    st.download_button(
        "Embedding Projector files (.zip)", data=partial(_projector_zip, run.id), on_click="ignore",
        file_name=f"mfstudio-{run.id}-projector.zip", mime="application/zip", key=f"dl_proj_{run.id}",
        icon=":material/scatter_plot:", disabled=not run.checkpoint_path,
        help="Item and user vectors with their metadata (title, genres, year, rating count) as TSV files for "
             "projector.tensorflow.org.")
    may_change = identity.actor().may_change(run.owner)
    active = jobs.is_active(run.status)
    with c3:
        if active and may_change:
            st.button("Stop", key=f"runs_stop_{run.id}", on_click=run_actions.stop, args=(run.id, NOTE), icon=":material/stop:")
        elif state.get(state.ACTIVE_RUN) == run.id and TRAIN_PAGE.is_file():
            st.page_link("pages/train.py", label="Follow on Train", icon=":material/model_training:")
        elif not active:
            st.button("Launch again", key=f"runs_relaunch_{run.id}", on_click=run_actions.relaunch, args=(run.id, NOTE),
                      icon=":material/replay:", help="A new run of yours with this run's data, split and settings.")
            resumable = run.status in ("interrupted", "stopped") and run.epochs_done < run.epochs_planned
            if may_change and resumable and run.checkpoint_path:
                st.button("Resume", key=f"runs_resume_{run.id}", on_click=run_actions.resume, args=(run.id, NOTE),
                          icon=":material/play_circle:", help="Go on from its last checkpoint to the planned epochs.")
    with c4:
        if may_change:
            st.button("Delete…", key=f"runs_delete_{run.id}", on_click=_ask_delete, args=(run.id,),
                      disabled=active, icon=":material/delete:",
                      help="Stop the run first." if active else "Deletes the run, its metrics and checkpoint.")
        else:
            st.caption(f"{md(run.who)}'s run: you can view and inspect it; only they can stop or delete it.")
    if may_change:
        rename_key = f"runs_rename_{run.id}"
        st.text_input("Label", value=run.label, key=rename_key, on_change=_rename, args=(run.id, rename_key),
                      max_chars=80)
    if may_change and st.session_state.get(CONFIRM_DELETE) == run.id:
        mine = run.owner == identity.owner()
        st.warning(f"Delete run **{md(labels.get(run.id))}**" + ("" if mine else f", which {md(run.who)} launched,")
                   + " with its metrics and checkpoint? This cannot be undone.")
        d1, d2, _ = st.columns([1, 1, 4])
        d1.button("Yes, delete", type="primary", key="runs_delete_yes", on_click=_delete, args=(run.id,))
        d2.button("Cancel", key="runs_delete_no", on_click=_cancel_delete)


def cluster_panel() -> None:
    """Where runs execute: local threads, or the Dask cluster's workers (busy/free, GPUs)."""
    try:
        status = jobs.get_runner().cluster_status()
    except Exception as exc:  # noqa: BLE001 - a cluster that cannot be asked must not break the page
        st.warning(f"The cluster's status could not be read: {md(exc)}", icon=":material/lan:")
        return
    if status.error:
        st.error(f"The Dask scheduler at {status.address} cannot be reached: {status.error}. Runs wait in the "
                 "queue; nothing is lost.", icon=":material/lan:")
    busy = sum(w.busy for w in status.workers)
    title = ("Runs execute on this server" if status.kind == "local" else
             f"Cluster {status.address}: {len(status.workers)} worker(s), {status.threads} thread(s), "
             f"{status.gpus} GPU(s)")
    with st.expander(f"{title} · {busy} busy, {max(0, status.threads - busy)} free", icon=":material/lan:"):
        for w in status.workers:
            gpus = f", {w.gpus} GPU(s)" if w.gpus else ""
            st.text(f"{w.name} ({w.address}): {w.threads} thread(s){gpus}, {w.busy} busy")


def runs_view(was_live: bool) -> None:
    """Everything that changes while runs train; a fragment redrawn while any run is active."""
    with jobs.redraw_cost("runs"):
        live = _runs_view()
    if was_live != live:
        st.rerun(scope="app")  # a full run re-registers the fragment with (or without) its timer


def _runs_view() -> bool:
    """Draws the Runs page's changing part; returns whether any run is queued or running."""
    note = st.session_state.pop(NOTE, None)
    if note:
        (st.error if note[0] == "error" else st.success)(note[1])
    me = identity.owner()
    try:
        all_runs = jobs.get_store().list_runs()
    except MFError as exc:
        st.error(f"The run store could not be read: {md(exc)}")
        return False
    runs = [r for r in all_runs if r.owner == me] + [r for r in all_runs if r.owner != me]
    if not runs:
        st.info("No runs yet. Launch one on the Train page.", icon=":material/info:")
        if TRAIN_PAGE.is_file():
            st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
        return False
    live = any(r.is_active for r in runs)
    st.caption(f"{sum(r.owner == me for r in runs)} of yours, {sum(r.owner != me for r in runs)} from the class; "
               "newest first within each. Runs keep going when their tab closes."
               + (" This list refreshes while runs are queued or running." if live else ""))
    every_column = st.toggle("All columns", key="runs_all_columns",
                             help="Also the baselines' RMSEs, device, where it ran, shared computation, "
                                  "creation time and run id.")
    st.dataframe(
        runs_table(runs, me), width="stretch", hide_index=True, key="runs_table",
        column_order=None if every_column else MAIN_COLUMNS,
        column_config={
            "test RMSE": st.column_config.NumberColumn(format="%.4f"),
            "biases only": st.column_config.NumberColumn(format="%.4f", help="RMSE of the bias-only baseline"),
            "global mean": st.column_config.NumberColumn(format="%.4f", help="RMSE of predicting the train mean"),
            "where": st.column_config.TextColumn(help="Where the run executes: this server, or a cluster worker"),
            "same as": st.column_config.TextColumn(help="The run whose identical computation this one shares"),
        },
    )
    if identity.current().is_teacher:
        st.subheader("Class leaderboard")
        board = leaderboard(runs)
        if len(board):
            st.dataframe(board, hide_index=True, width="stretch", key="runs_leaderboard",
                         column_config={"test RMSE": st.column_config.NumberColumn(format="%.4f"),
                                        "inspect": st.column_config.LinkColumn(display_text="open")})
        else:
            st.caption("No run has a test RMSE yet.")
    labels = {r.id: f"{_label(r)} · {r.who} · {data_name(r.dataset)} · {r.status}" for r in runs}
    compare_section(runs, labels)
    st.divider()
    detail_section(runs, labels)
    return live


st.title("Runs")
cluster_panel()
try:
    _live = any(r.is_active for r in jobs.get_store().list_runs(statuses=("queued", "running"), limit=1))
except MFError:
    _live = False
st.fragment(runs_view, run_every=RUNS_REFRESH_S if _live else None)(_live)
