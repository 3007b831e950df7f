"""Words for students, not developers, and a Data page that tells the truth (issue 10).

* every help text of the Train form reads as English for a student: no Python values (None,
  True, False), no module paths or scripts, no "engine's choice";
* the presets' box and buttons name no script (``benchmarks/quality.py``);
* counts agree with their nouns ("1 rating", never "1 ratings"; never "1.0 times less memory");
  the split's caption repeats the cold counts its metrics show;
* the Runs page compares runs by the form's labels, never by engine keys (``train.l2_count_power``);
* the Data page: after a failed download it says the MovieLens choice is not in use and which
  data is; a MovieLens folder without its ratings file names the missing file.

Nothing here reaches the internet: the download base is a closed local port.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig
from mfcore.presets import PRESETS
from mfcore.runs.runner import RunRequest
from tests.app_support import app_runner
from ui import datasets, train_form
from ui.train_form import FORM_FIELDS, help_for

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
CLOSED_PORT = "http://127.0.0.1:9"

# What a student should never have to read in a help text or a note.
DEVELOPER_WORDS = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\bmfcore\b|\w+\.py\b|engine's choice|\bkwargs?\b"
                             r"|\b[a-z]+_[a-z_]+\b")  # snake_case names: model keys, functions


def texts(elements) -> str:
    """The elements' text as a reader sees it: Markdown escapes and bold marks removed."""
    return "\n".join(re.sub(r"\\(.)", r"\1", str(e.value).replace("**", "")) for e in elements)


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("MFSTUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MFSTUDIO_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MFSTUDIO_DOWNLOAD_BASE", CLOSED_PORT)
    monkeypatch.delenv("MFSTUDIO_DATA_DIR", raising=False)
    return tmp_path


def open_page(page: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    if page != "pages/data.py":
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


# ---------------------------------------------------------------------------- help texts
@pytest.mark.parametrize("field", sorted({f for names in FORM_FIELDS.values() for f in names} | {"epochs", "label"}))
def test_every_form_help_text_is_for_students(field):
    text = help_for(field)
    assert len(text) >= 25, f"{field}: {text!r} explains nothing"
    bad = DEVELOPER_WORDS.findall(text)
    assert not bad, f"{field}: {text!r} has developer words {bad}"


def test_the_quoted_examples_of_the_issue_are_gone():
    shown = " ".join(help_for(f) for names in FORM_FIELDS.values() for f in names)
    for phrase in ("None = off", "0 = off.", "resolve_device", "auto = the engine's choice", "(None)"):
        assert phrase not in shown
    # the special values are still explained, in words
    assert "0 turns averaging off" in help_for("average_from")
    assert "auto" in help_for("device") and "graphics card" in help_for("device")
    assert "auto" in help_for("keep_snapshots") and "2D map" in help_for("keep_snapshots")


def test_the_train_page_shows_only_student_help_and_no_script_names(offline):
    at = open_page("pages/train.py", dataset_spec="synthetic")
    helps = [(w.label, w.help) for kind in ("number_input", "selectbox", "text_input", "checkbox", "radio", "toggle")
             for w in at.get(kind) if getattr(w, "help", None)]
    helps += [(b.label, b.help) for b in at.button if b.help]
    assert len(helps) >= 25, helps
    for label, text in helps:
        assert not re.search(r"\bNone\b|mfcore\.|\w+\.py\b|engine's choice", text), f"{label}: {text}"
    at.button(key="preset_default").click().run()
    info = texts(at.info)
    assert "What this lesson shows" in info
    assert ".py" not in info and "benchmarks/" not in info, info
    assert "MF Studio's own measurement" in info
    # each preset button's tooltip names the preset in full and credits no script
    tips = [b.help for b in at.button if b.key and b.key.startswith("preset_")]
    assert len(tips) == len(PRESETS) and not [t for t in tips if ".py" in t], tips


# ---------------------------------------------------------------------------- counts and nouns
def test_counts_agree_with_their_nouns():
    assert datasets.plural(1, "rating") == "1 rating"
    assert datasets.plural(2, "rating") == "2 ratings"
    assert datasets.plural(1_682, "movie") == "1,682 movies"
    stats = {"summary": {"users": 3, "items": 3, "density": 0.9, "ratings": 8, "has_timestamps": False},
             "memory": {"dense": 100, "sparse": 98}, "is_movielens": False}
    sentence = datasets.memory_sentence(stats)
    assert "about the same memory" in sentence and "1.0 times" not in sentence
    stats["memory"] = {"dense": 1000, "sparse": 400}
    assert "2.5 times less memory" in datasets.memory_sentence(stats)


def test_the_split_caption_repeats_the_cold_counts_of_its_metrics(offline, shared_data, monkeypatch):
    monkeypatch.setenv("MFSTUDIO_DATA_DIR", str(shared_data))
    at = open_page("pages/data.py", dataset_spec="ml-100k", split_spec="user:0.5")
    metrics = {m.label: m.value for m in at.metric}
    caption = texts(at.caption)
    cold_items = int(metrics["Cold items"].replace(",", ""))
    assert cold_items > 0, metrics  # a split that leaves some movies only in the test set
    assert re.search(rf"\b{metrics['Cold items']} cold items? \(", caption), (metrics, caption)
    assert re.search(rf"\b{metrics['Cold users']} cold users? \(", caption), (metrics, caption)


# ---------------------------------------------------------------------------- the Runs page
def test_the_runs_compare_table_uses_the_forms_labels(tmp_path, shared_data, monkeypatch):
    folder = tmp_path / "runs"
    with app_runner(folder, shared_data) as runner:
        ids = []
        for l2 in (0.05, 0.2):
            rid = runner.submit(RunRequest("synthetic", "random:0.1", 0, ModelConfig(n_factors=4),
                                           TrainConfig(optimizer="als", epochs=2, l2=l2), runtime=RuntimeOptions(),
                                           label=f"l2 {l2}"))
            assert runner.wait(rid, timeout=120).status == "finished"
            ids.append(rid)
        at = open_page("pages/runs.py", compare_runs=ids)
        at.multiselect(key="runs_compare").set_value(ids).run()
        assert not at.exception, at.exception
        frame = next(d.value for d in at.dataframe if "L2 (factors)" in list(d.value.index))
        assert list(frame.index) == ["L2 (factors)"]  # only the setting that differs, by its form label
        at.toggle(key="runs_only_diff").set_value(False).run()
        frame = next(d.value for d in at.dataframe if "L2 (factors)" in list(d.value.index))
        rows = list(frame.index)
        assert not [r for r in rows if "." in r or "_" in r], rows  # no train.l2_count_power
        assert {"Factors k", "Learning rate", "Epochs", "L2 growth with rating count (power)", "Device"} <= set(rows)
        assert set(frame.loc["L2 (factors)"]) == {"0.05", "0.2"}
        assert "None" not in frame.to_string() and "True" not in frame.to_string()


# ---------------------------------------------------------------------------- the Data page's states
def test_after_a_failed_download_the_page_says_which_data_is_in_use(offline):
    at = open_page("pages/data.py")
    at.radio(key="data_source").set_value("movielens").run()
    at.selectbox(key="data_ml_name").set_value("ml-latest-small").run()
    at.button(key="data_ml_download").click().run()
    assert not at.exception, at.exception
    assert "Could not download ml-latest-small" in texts(at.error)
    truth = texts(at.warning)
    assert "ml-latest-small is not in use" in truth and "still uses" in truth and "Synthetic" in truth, truth
    assert at.session_state["dataset_spec"] == "synthetic"
    # once the synthetic set is chosen again, nothing is pending
    at.button(key="data_dl_to_syn").click().run()
    assert "is not in use" not in texts(at.warning)


def test_a_movielens_folder_without_its_ratings_file_names_the_missing_file(offline, monkeypatch):
    data = offline / "data"
    (data / "ml-latest-small").mkdir(parents=True)
    (data / "ml-latest-small" / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Animation\n")
    (data / "ml-1m").mkdir()
    (data / "ml-1m" / "movies.dat").write_text("1::Toy Story (1995)::Animation\n")
    (data / "ml-1m" / "ratings.users1-20.partial.dat.gz").write_bytes(b"")
    monkeypatch.setenv("MFSTUDIO_DATA_DIR", str(data))
    at = open_page("pages/data.py")
    at.radio(key="data_source").set_value("movielens").run()
    at.selectbox(key="data_ml_name").set_value("ml-latest-small").run()
    assert not at.exception, at.exception
    warning = texts(at.warning)
    assert "ratings.csv" in warning and str(data / "ml-latest-small") in warning, warning
    assert "not on this machine yet" not in texts(at.info)
    at.selectbox(key="data_ml_name").set_value("ml-1m").run()
    warning = texts(at.warning)
    assert "ratings.dat" in warning and "ratings.users1-20.partial.dat.gz" in warning, warning
    # a name with no folder at all still says it is not here yet
    at.selectbox(key="data_ml_name").set_value("ml-100k").run()
    assert "not on this machine yet" in texts(at.info)
