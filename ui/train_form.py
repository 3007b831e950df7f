"""The hyperparameter form of the train page: widgets -> validated configs.

Every widget keeps its value under a ``tf_*`` key in session state, so a preset button
(an ``on_click`` callback, which runs before the widgets are drawn) can fill the form by
writing those keys. Validation goes through the engine's own dataclasses: each value is
first tried alone against a known-good config (so every bad field gets its message at
once), then the whole configs are built (for the checks that need two fields). A
:class:`~mfcore.errors.ConfigError` carries ``.field``; :func:`field_error` shows its
message right below that field.

The help texts are written for students (:data:`STUDENT_HELP`); a field added to the engine
later falls back to its config docstring, read from the source once.
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, Callable

import streamlit as st

from mfcore import config as cfg
from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig
from mfcore.device import available_devices, describe_device, resolve_device
from mfcore.errors import ConfigError, MFError
from mfcore.presets import PRESETS, Preset

PREFIX = "tf_"
ERRORS = "tf__errors"  # dict field -> message, shown next to the fields
SOURCE_PRESET = "tf__preset"  # name of the preset that last filled the form

# Help for every field of the form, in a student's words (issue 10): what the setting does,
# what its special values mean, what it is good for. No Python values (None, True), no module
# paths. A field missing here falls back to its config docstring (see :func:`help_for`).
STUDENT_HELP = {
    # model
    "n_factors": "How many numbers describe each user and each movie (the length k of their vectors). "
                 "More factors can capture more taste, but overfit more easily.",
    "use_bias": "Biased: every user and movie also gets its own offset (a generous user, a loved movie) on top "
                "of the dot product. Plain: the prediction is the dot product of the two vectors alone.",
    "global_bias": "The overall average rating g added to every prediction: fixed to the training mean, "
                   "learned (starting at the mean), or left out.",
    "init": "How the vectors start before training: small random numbers from a normal (bell-shaped) or a "
            "uniform distribution.",
    "init_std": "Spread of the normal start values (used when Initialisation is normal). Small values, "
                "like 0.01 to 0.1, work best.",
    "init_low": "Smallest uniform start value (used when Initialisation is uniform).",
    "init_high": "Largest uniform start value (used when Initialisation is uniform).",
    "output": "Linear: the prediction is used as it is (clipped to the star scale when scored). Sigmoid: the "
              "prediction is squashed into a range, so it can never leave the scale.",
    "output_range": "Only with the sigmoid output. Unticked: the data's star scale, widened by half a star at "
                    "the top (fastai's 0 to 5.5), so that 5 stars can be reached.",
    # training
    "optimizer": "How the model learns. sgd, adam and the others take small steps down the error's slope, "
                 "a batch of ratings at a time; als solves for all user vectors, then all movie vectors, "
                 "in turn.",
    "lr": "Learning rate: how big each step is. Too big and the error jumps around or explodes; too small and "
          "learning crawls. Not used by als.",
    "epochs": "How many times the training goes through all the training ratings.",
    "batch_size": "Ratings per step. 1 = one rating at a time (classic SGD, the fastest here); "
                  "0 = all the training ratings in one step (full-batch gradient descent).",
    "l2": "Regularisation: how strongly the user and movie vectors are pulled towards zero, applied per rating "
          "(each rating of a user or movie adds this much pull). It fights overfitting; 0 turns it off.",
    "l2_bias": "The same pull towards zero for the user and movie offsets (biases); 0 turns it off.",
    "l2_count_power": "How the pull towards zero grows with how many ratings a user or movie has. 1: every "
                      "rating adds the same pull (classic). 0.5: it grows with the square root, so users and "
                      "movies with many ratings keep more of what they learned.",
    "implicit_feedback": "Also learn from which movies each user chose to rate, not only the stars they gave "
                         "(SVD++-style). Only with per-rating SGD (optimizer sgd, batch size 1). The model keeps "
                         "its usual form.",
    "l2_implicit": "Pull towards zero for what is learned from which movies were rated (with Implicit feedback).",
    "weight_decay": "Shrinks every weight a little at each step (the D2L and fastai way to regularise); "
                    "0 turns it off.",
    "momentum": "SGD only: keep part of the previous step's direction, which smooths and speeds up learning; "
                "0 turns it off.",
    "lr_decay": "The learning rate is multiplied by this after every epoch: 1 keeps it constant, 0.9 makes "
                "the steps 10% smaller each epoch.",
    "average_from": "From this epoch on, the model you get is the average of the weights after each epoch "
                    "(it smooths out the last steps' noise). 0 turns averaging off.",
    "early_stopping_patience": "Stop when the test error has not improved for this many epochs, and keep the "
                               "best epoch's model. 0 turns early stopping off.",
    "seed": "Chooses the random start values and the order of the ratings: the same seed gives the same run.",
    # runtime
    "device": "Where the run computes. auto picks a graphics card (CUDA or Apple MPS) when this server has one, "
              "else the processor (cpu).",
    "cpu_threads": "How many processor cores one run may use. 0 = the setting measured best on this server "
                   "(one core per run when several students share it; every core for the fast kernels on "
                   "very large data).",
    "progress_interval_s": "How often, in seconds of training, a long epoch sends a progress point to the "
                           "live chart (the dotted line).",
    "keep_snapshots": "Keep a copy of the vectors after every epoch, so the 2D map can animate how they moved. "
                      "auto: only for datasets up to ml-1m size (bigger ones would fill the disk).",
    "eval_ranking": "At the end, also measure how good the model is at ranking each user's movies "
                    "(precision and recall of the top picks). Takes one pass over every user and movie.",
    "label": "A name for this run in the runs list (optional).",
}


# The form's label of every config field: the Runs page names settings by these, never by
# their engine keys (``train.l2_count_power``).
FIELD_LABELS = {
    "n_factors": "Factors k", "use_bias": "Model type (biased)", "global_bias": "Global bias g",
    "init": "Initialisation", "init_std": "Initialisation std", "init_low": "Initialisation low",
    "init_high": "Initialisation high", "output": "Output", "output_range": "Sigmoid range",
    "optimizer": "Optimizer", "lr": "Learning rate", "epochs": "Epochs", "batch_size": "Batch size",
    "l2": "L2 (factors)", "l2_bias": "L2 (biases)", "l2_count_power": "L2 growth with rating count (power)",
    "implicit_feedback": "Implicit feedback", "l2_implicit": "L2 (implicit)", "weight_decay": "Weight decay",
    "momentum": "Momentum", "lr_decay": "LR decay per epoch", "average_from": "Average weights from epoch",
    "early_stopping_patience": "Early-stopping patience", "seed": "Model seed", "device": "Device",
    "cpu_threads": "CPU threads", "progress_interval_s": "Progress every (s)", "keep_snapshots": "Epoch snapshots",
    "eval_ranking": "Ranking metrics at the end",
}


def field_label(name: str) -> str:
    """The form's label of config field ``name`` (its words with spaces for a field the form lacks)."""
    return FIELD_LABELS.get(name, name.replace("_", " "))


def setting_value(name: str, value: Any) -> str:
    """A config value as a student reads it: yes/no, off, auto; never None/True/False."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return {"average_from": "off", "output_range": "the data's scale", "keep_snapshots": "auto"}.get(name, "–")
    if name in ("average_from", "early_stopping_patience", "weight_decay", "l2", "l2_bias", "momentum") and value == 0:
        return "0 (off)"
    if isinstance(value, (list, tuple)):
        return " to ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass (the string right after each field), by name."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def help_for(name: str) -> str:
    """The help text of the form field ``name``: :data:`STUDENT_HELP`, else its config docstring."""
    if name in STUDENT_HELP:
        return STUDENT_HELP[name]
    doc = ""
    for cls in (ModelConfig, TrainConfig, RuntimeOptions):
        doc = field_docs(cls).get(name, "")
        if doc:
            break
    return doc or name.replace("_", " ")


# ---------------------------------------------------------------------------- values
def _defaults() -> dict[str, Any]:
    """Form values of the tuned default preset (plus runtime defaults)."""
    return preset_values(PRESETS["default"])


def preset_values(preset: Preset) -> dict[str, Any]:
    """The form's widget values (without the prefix) for a preset."""
    return config_values(preset.model, preset.train)


def config_values(m: ModelConfig, t: TrainConfig) -> dict[str, Any]:
    """The form's widget values (without the prefix) for a model and a train config."""
    rng = m.output_range
    return {
        "model_type": "biased" if m.use_bias else "plain",
        "n_factors": m.n_factors,
        "global_bias": m.global_bias,
        "init": m.init,
        "init_std": float(m.init_std),
        "init_low": float(m.init_low),
        "init_high": float(m.init_high),
        "output": m.output,
        "custom_range": rng is not None,
        "range_low": float(rng[0]) if rng else 0.0,
        "range_high": float(rng[1]) if rng else 5.5,
        "optimizer": t.optimizer,
        "lr": f"{t.lr:g}",
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "l2": float(t.l2),
        "l2_bias": float(t.l2_bias),
        "weight_decay": f"{t.weight_decay:g}",
        "momentum": float(t.momentum),
        "lr_decay": float(t.lr_decay),
        "average_from": t.average_from or 0,
        "early_stopping_patience": t.early_stopping_patience,
        "seed": t.seed,
        "l2_count_power": float(t.l2_count_power),
        "implicit_feedback": bool(t.implicit_feedback),
        "l2_implicit": float(t.l2_implicit),
        **{_extra_key(TrainConfig, name): _extra_value(getattr(t, name)) for name in extra_fields(TrainConfig)},
        **{_extra_key(ModelConfig, name): _extra_value(getattr(m, name)) for name in extra_fields(ModelConfig)},
    }


def runtime_values(runtime: RuntimeOptions | None = None) -> dict[str, Any]:
    """The form's runtime widget values (defaults unless given)."""
    r = runtime or RuntimeOptions()
    return {
        "device": r.device,
        "cpu_threads": r.cpu_threads,
        "progress_interval_s": float(r.progress_interval_s),
        "keep_snapshots": {None: "auto", True: "yes", False: "no"}[r.keep_snapshots],
        "eval_ranking": bool(r.eval_ranking),
        **{_extra_key(RuntimeOptions, name): _extra_value(getattr(r, name)) for name in extra_fields(RuntimeOptions)},
    }


# Fields that have a widget of their own (or are set from one, like use_bias and output_range).
FORM_FIELDS = {
    ModelConfig: {"n_factors", "use_bias", "global_bias", "init", "init_std", "init_low", "init_high", "output",
                  "output_range"},
    TrainConfig: {"optimizer", "lr", "epochs", "batch_size", "l2", "l2_bias", "l2_count_power", "implicit_feedback",
                  "l2_implicit", "weight_decay", "momentum", "lr_decay", "average_from", "early_stopping_patience",
                  "seed"},
    RuntimeOptions: {"device", "cpu_threads", "progress_interval_s", "keep_snapshots", "eval_ranking"},
}


def extra_fields(cls: type) -> list[str]:
    """Config fields the form has no dedicated widget for (added to the engine later).

    They still get a plain widget (see :func:`draw_extra_fields`), so the form always
    covers every hyperparameter; a dedicated widget can replace it later.
    """
    return [f.name for f in fields(cls) if f.name not in FORM_FIELDS[cls]]


def _extra_key(cls: type, name: str) -> str:
    return f"x_{cls.__name__}_{name}"


def _extra_value(value: Any) -> Any:
    """Widget value of a config value: bools and numbers stay, the rest becomes text."""
    if isinstance(value, (bool, int, float)):
        return value
    return "" if value is None else str(value)


def init_form(seed: int | None = None) -> None:
    """Put the default values into session state (once per browser session)."""
    values = _defaults()
    if seed is not None:
        values["seed"] = int(seed)
    values.update(runtime_values(), label="")
    for name, value in values.items():
        st.session_state.setdefault(PREFIX + name, value)
    st.session_state.setdefault(ERRORS, {})


PRESET_DATA_MISSING = "tf__preset_data_missing"  # dataset name a preset wanted but this machine lacks
# The Data page's widgets that hold the dataset and split choice: dropped when a preset sets
# them, so that page starts again from the committed choice instead of writing its old one back.
_DATA_WIDGETS = ("data_source", "data_ml_name", "data_split_kind", "data_split_frac", "data_split_k",
                 "data_split_fold", "data_split_official")


def preset_data_available(preset: Preset) -> bool:
    """Whether the preset's dataset can be loaded here without a download."""
    from mfcore.data.synthetic_spec import is_synthetic
    from ui import datasets

    if is_synthetic(preset.dataset):
        return True
    try:
        return datasets.dataset_location(preset.dataset) is not None
    except Exception:  # noqa: BLE001 - an unknown name is simply not available
        return False


def apply_preset(name: str) -> None:
    """Fill the form with a preset, and choose its data and split (an ``on_click`` callback).

    The tuned default keeps the data chosen now. A preset whose data is not on this
    machine fills the form but leaves the data as it is and records the missing name
    (:data:`PRESET_DATA_MISSING`), so the page says so and offers the download instead of
    silently training on something else.
    """
    preset = PRESETS[name]
    apply_configs(preset.model, preset.train)
    st.session_state[SOURCE_PRESET] = name
    st.session_state.pop(PRESET_DATA_MISSING, None)
    if preset.keeps_data:
        return
    if not preset_data_available(preset):
        st.session_state[PRESET_DATA_MISSING] = preset.dataset
        return
    from ui import state

    changed = (state.get(state.DATASET_SPEC), state.get(state.SPLIT_SPEC)) != (preset.dataset, preset.split)
    state.put(state.DATASET_SPEC, preset.dataset)
    state.put(state.SPLIT_SPEC, preset.split)
    if changed:
        for key in _DATA_WIDGETS:
            st.session_state.pop(key, None)


def apply_configs(model: ModelConfig, train: TrainConfig) -> None:
    """Fill the form's model and training fields from configs (presets, a sweep's point)."""
    for key, value in config_values(model, train).items():
        st.session_state[PREFIX + key] = value
    st.session_state[ERRORS] = {}


def raw_values() -> dict[str, Any]:
    """The form's current widget values, without the prefix."""
    n = len(PREFIX)
    return {k[n:]: v for k, v in st.session_state.items() if isinstance(k, str) and k.startswith(PREFIX)
            and not k.startswith(PREFIX + "_")}


# ------------------------------------------------------------------------ validation
@dataclass(frozen=True)
class FormResult:
    model: ModelConfig | None
    train: TrainConfig | None
    runtime: RuntimeOptions | None
    errors: dict[str, str]
    """field -> message; empty when the three configs are valid together."""

    @property
    def ok(self) -> bool:
        return not self.errors


def _number(text: Any, name: str) -> float:
    """A float from a text field ("1e-3", "0,01", "nan" -> NaN, which validation rejects)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    s = str(text).strip().replace(",", ".")
    try:
        return float(s)
    except ValueError:
        raise ConfigError(name, f"must be a number such as 0.01 or 1e-3, got {text!r}") from None


def _parse_extra(cls: type, name: str, value: Any) -> Any:
    """A generic widget's value back in the type of the field's default."""
    default = next(f.default for f in fields(cls) if f.name == name)
    if isinstance(value, (bool, int, float)) or not isinstance(value, str):
        return value
    text = value.strip()
    if text == "" and default is None:
        return None
    if isinstance(default, (int, float)) and not isinstance(default, bool) or default is None:
        try:
            number = float(text.replace(",", "."))
        except ValueError:
            if default is None:
                return text
            raise ConfigError(name, f"must be a number, got {value!r}") from None
        return int(number) if number.is_integer() and isinstance(default, int) else number
    return text


def _whole(value: Any, name: str) -> int:
    """An int from a number widget (which may hand over a float such as 64.0)."""
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ConfigError(name, f"must be a whole number, got {value!r}")
        return int(value)
    return value


def validate(values: dict[str, Any]) -> FormResult:
    """Build (ModelConfig, TrainConfig, RuntimeOptions) from form values, collecting every error."""
    errors: dict[str, str] = {}

    def attempt(name: str, make: Callable[[], Any]) -> Any:
        try:
            return make()
        except ConfigError as exc:
            errors.setdefault(exc.field if exc.field else name, _message(exc))
            return None

    def get(name: str, default: Any = None) -> Any:
        return values.get(name, default)

    # Parse: text fields and whole numbers.
    parsed: dict[str, Any] = {}
    for name in ("lr", "weight_decay"):
        parsed[name] = attempt(name, lambda n=name: _number(get(n), n))
    for name in ("n_factors", "epochs", "batch_size", "average_from", "early_stopping_patience", "seed", "cpu_threads"):
        parsed[name] = attempt(name, lambda n=name: _whole(get(n), n))

    model_kw: dict[str, Any] = {
        "n_factors": parsed["n_factors"],
        "use_bias": get("model_type", "biased") == "biased",
        "global_bias": get("global_bias"),
        "init": get("init"),
        "init_std": get("init_std"),
        "init_low": get("init_low"),
        "init_high": get("init_high"),
        "output": get("output"),
        "output_range": (
            (get("range_low"), get("range_high")) if get("output") == "sigmoid" and get("custom_range") else None
        ),
    }
    avg = parsed["average_from"]
    train_kw: dict[str, Any] = {
        "optimizer": get("optimizer"),
        "lr": parsed["lr"],
        "epochs": parsed["epochs"],
        "batch_size": parsed["batch_size"],
        "l2": get("l2"),
        "l2_bias": get("l2_bias"),
        "weight_decay": parsed["weight_decay"],
        "momentum": get("momentum"),
        "lr_decay": get("lr_decay"),
        "average_from": None if avg in (0, None) else avg,
        "early_stopping_patience": parsed["early_stopping_patience"],
        "seed": parsed["seed"],
        "l2_count_power": get("l2_count_power", 1.0),
        "implicit_feedback": bool(get("implicit_feedback", False)),
        "l2_implicit": get("l2_implicit", 1.5),
    }
    runtime_kw: dict[str, Any] = {
        "device": get("device", "auto"),
        "cpu_threads": parsed["cpu_threads"],
        "progress_interval_s": get("progress_interval_s", 1.0),
        "keep_snapshots": {"auto": None, "yes": True, "no": False}.get(get("keep_snapshots", "auto")),
        "eval_ranking": bool(get("eval_ranking", False)),
    }
    for cls, kw in ((ModelConfig, model_kw), (TrainConfig, train_kw), (RuntimeOptions, runtime_kw)):
        for name in extra_fields(cls):
            key = _extra_key(cls, name)
            if key in values:
                kw[name] = attempt(name, lambda n=name, v=values[key], c=cls: _parse_extra(c, n, v))
    if avg is None and "average_from" not in errors:
        errors["average_from"] = "must be a whole number"

    # Build each config; on an error, note it, put that field back to its default and
    # build again, so every bad field gets its message at once (and a check that needs
    # two fields, such as implicit feedback with Adam, is judged on the real values).
    built = {}
    for cls, kw in ((ModelConfig, model_kw), (TrainConfig, train_kw), (RuntimeOptions, runtime_kw)):
        built[cls] = _build_collecting(cls, kw, errors)

    if "device" not in errors:
        try:
            resolve_device(runtime_kw["device"])
        except MFError as exc:
            errors["device"] = str(exc)

    model, train, runtime = built[ModelConfig], built[TrainConfig], built[RuntimeOptions]
    check = getattr(cfg, "check_combination", None)
    if model is not None and train is not None and check is not None:
        attempt("optimizer", lambda: check(model, train))
    if not errors and model is not None and train is not None:
        shape = dataset_shape()
        if shape is not None:  # the engine's bounds on work, model and checkpoint size
            from mfcore.limits import check_run

            attempt("epochs", lambda: check_run(*shape, model, train, runtime.keep_snapshots is not False))
    if errors:
        return FormResult(None, None, None, errors)
    return FormResult(model, train, runtime, {})


def dataset_shape() -> tuple[int, int, int] | None:
    """(users, items, ratings) of the chosen dataset, or None when it is not loaded/loadable."""
    try:
        from ui import datasets, state

        data = datasets.load_data(state.get(state.DATASET_SPEC))
    except Exception:  # noqa: BLE001 - no estimate is better than a broken form
        return None
    return data.n_users, data.n_items, data.n_ratings


def draw_estimate() -> None:
    """The run's size before Launch: epochs x factors x table size, checkpoint and memory
    (mfcore.limits.estimate_run), with the engine's refusal when a bound is passed."""
    from mfcore.limits import estimate_run

    shape = dataset_shape()
    if shape is None:
        return
    try:
        model = ModelConfig(n_factors=int(st.session_state.get(_k("n_factors"), 64)))
        train = TrainConfig(epochs=int(st.session_state.get(_k("epochs"), 40)),
                            optimizer=str(st.session_state.get(_k("optimizer"), "sgd")))
    except (ConfigError, TypeError, ValueError):
        return
    est = estimate_run(*shape, model, train)
    problems = est.problems()
    if problems:
        st.warning(f"Too large for this server: {problems[0][1]}. ({est.describe()})", icon=":material/warning:")
    else:
        st.caption(f"Estimated size: {est.describe()}.")


def _build_collecting(cls: type, kw: dict[str, Any], errors: dict[str, str]) -> Any:
    """``cls(**kw)``, recording every ConfigError in ``errors``; None if any field was bad."""
    base = cls()
    kw = dict(kw)
    # Values that did not even parse (None where the field has a non-None default) go back
    # to the default, so the other fields can still be checked.
    for name, value in kw.items():
        if name in errors:
            kw[name] = getattr(base, name)
    failed = False
    for _ in range(len(kw) + 1):
        try:
            config = cls(**kw)
        except ConfigError as exc:
            failed = True
            errors.setdefault(exc.field, _message(exc))
            if exc.field not in kw or kw[exc.field] == getattr(base, exc.field):
                return None  # the default itself is refused here: nothing more to learn
            kw[exc.field] = getattr(base, exc.field)
            continue
        return None if failed else config
    return None


def _message(exc: ConfigError) -> str:
    """The message without the leading ``field:`` (it is shown under the field)."""
    text = str(exc)
    prefix = f"{exc.field}: "
    return text[len(prefix):] if text.startswith(prefix) else text


# Which widget shows the error of a config field that has no widget of its own.
_ERROR_HOME = {
    "use_bias": "model_type", "output_range": "range_high", "range_low": "range_high",
    "model": "n_factors", "train": "optimizer", "runtime": "device",
}


def error_home(field_name: str) -> str:
    """The widget (name without prefix) under which a config field's error is shown."""
    for cls in (ModelConfig, TrainConfig, RuntimeOptions):
        if field_name in extra_fields(cls):
            return _extra_key(cls, field_name)
    return _ERROR_HOME.get(field_name, field_name)


def field_error(name: str) -> None:
    """Show the validation message for field ``name`` (if any) right where it is called."""
    errors = st.session_state.get(ERRORS) or {}
    for field_name, message in errors.items():
        if error_home(field_name) == name:
            st.error(f"**{field_name}**: {message}", icon=":material/error:")


# ---------------------------------------------------------------------------- widgets
def _k(name: str) -> str:
    return PREFIX + name


def _kept(name: str) -> dict[str, str]:
    """Widget keyword arguments: the field's key, and its value kept for the whole
    session (Streamlit would otherwise forget it when the user visits another page)."""
    return {"key": PREFIX + name, "persist_state": "session"}


def _choices(options: tuple[str, ...], current: Any) -> list[str]:
    out = list(options)
    if current not in out and isinstance(current, str):
        out.append(current)  # keep an unknown value visible, validation will name it
    return out


def optimizer_choices() -> tuple[str, ...]:
    """The engine's optimizers (ALS only when the engine can train with it)."""
    return tuple(o for o in cfg.OPTIMIZERS if o != "als" or als_supported())


@lru_cache(maxsize=1)
def als_supported() -> bool:
    """True when the trainer has an ALS solver (config accepts "als" and a stepper exists)."""
    if "als" not in cfg.OPTIMIZERS:
        return False
    try:
        import importlib

        importlib.import_module("mfcore.training.als")
    except ImportError:
        return False
    return True


def device_choices() -> list[str]:
    found = available_devices()
    return ["auto", *found]


def draw_form() -> None:
    """Draw every hyperparameter widget (values under ``tf_*`` keys; no return value).

    Call :func:`init_form` first. Errors from the last launch attempt are shown next to
    their fields.
    """
    ss = st.session_state
    model_col, train_col = st.columns(2, gap="large")
    with model_col:
        st.subheader("Model", divider="gray")
        st.radio("Model type", ["biased", "plain"], **_kept("model_type"), horizontal=True,
                 help=help_for("use_bias"))
        field_error("model_type")
        st.number_input("Factors k", min_value=1, max_value=1024, step=1, **_kept("n_factors"),
                        help=help_for("n_factors"))
        field_error("n_factors")
        st.selectbox("Global bias g", _choices(cfg.GLOBAL_BIASES, ss.get(_k("global_bias"))),
                     **_kept("global_bias"), help=help_for("global_bias"))
        field_error("global_bias")
        c1, c2 = st.columns(2)
        with c1:
            st.selectbox("Output", _choices(cfg.OUTPUTS, ss.get(_k("output"))), **_kept("output"),
                         help=help_for("output"))
            field_error("output")
        with c2:
            sigmoid = ss.get(_k("output")) == "sigmoid"
            st.checkbox("Custom sigmoid range", **_kept("custom_range"), disabled=not sigmoid,
                        help=help_for("output_range"))
        c1, c2 = st.columns(2)
        custom = sigmoid and bool(ss.get(_k("custom_range")))
        with c1:
            st.number_input("Range low", min_value=-1e6, max_value=1e6, step=0.5, format="%g",
                            **_kept("range_low"), disabled=not custom)
        with c2:
            st.number_input("Range high", min_value=-1e6, max_value=1e6, step=0.5, format="%g",
                            **_kept("range_high"), disabled=not custom)
            field_error("range_high")
        st.selectbox("Initialisation", _choices(cfg.INITS, ss.get(_k("init"))), **_kept("init"),
                     help=help_for("init"))
        field_error("init")
        normal = ss.get(_k("init")) == "normal"
        c1, c2, c3 = st.columns(3)
        with c1:
            st.number_input("std", min_value=0.0, max_value=10.0, step=0.01, format="%g",
                            **_kept("init_std"), disabled=not normal, help=help_for("init_std"))
            field_error("init_std")
        with c2:
            st.number_input("low", min_value=-10.0, max_value=10.0, step=0.01, format="%g",
                            **_kept("init_low"), disabled=normal, help=help_for("init_low"))
            field_error("init_low")
        with c3:
            st.number_input("high", min_value=-10.0, max_value=10.0, step=0.01, format="%g",
                            **_kept("init_high"), disabled=normal, help=help_for("init_high"))
            field_error("init_high")

        st.subheader("Runtime", divider="gray")
        c1, c2 = st.columns(2)
        with c1:
            st.selectbox("Device", _choices(tuple(device_choices()), ss.get(_k("device"))), **_kept("device"),
                         help=help_for("device"))
            field_error("device")
        with c2:
            st.number_input("CPU threads", min_value=0, max_value=1024, step=1, **_kept("cpu_threads"),
                            help=help_for("cpu_threads"))
            field_error("cpu_threads")
        st.caption("Found: " + ", ".join(available_devices()) + f" · auto = {_auto_device()}")
        c1, c2 = st.columns(2, vertical_alignment="bottom")
        with c1:
            st.number_input("Progress every (s)", min_value=0.05, max_value=3600.0, step=0.5, format="%g",
                            **_kept("progress_interval_s"), help=help_for("progress_interval_s"))
            field_error("progress_interval_s")
        with c2:
            st.selectbox("Epoch snapshots", ["auto", "yes", "no"], **_kept("keep_snapshots"),
                         help=help_for("keep_snapshots"))
            field_error("keep_snapshots")
        st.checkbox("Ranking metrics at the end", **_kept("eval_ranking"), help=help_for("eval_ranking"))
        field_error("eval_ranking")
        st.text_input("Run label", **_kept("label"), max_chars=80, help=help_for("label"),
                      placeholder="e.g. k=32, lr=0.005")

    with train_col:
        st.subheader("Training", divider="gray")
        c1, c2 = st.columns(2)
        with c1:
            st.selectbox("Optimizer", _choices(optimizer_choices(), ss.get(_k("optimizer"))),
                         **_kept("optimizer"), help=help_for("optimizer"))
            field_error("optimizer")
        with c2:
            st.text_input("Learning rate", **_kept("lr"), help=help_for("lr") + " Accepts 0.01 or 1e-2.")
            field_error("lr")
        c1, c2 = st.columns(2)
        with c1:
            st.number_input("Epochs", min_value=1, max_value=100_000, step=1, **_kept("epochs"),
                            help=help_for("epochs"))
            field_error("epochs")
        with c2:
            st.number_input("Batch size", min_value=0, max_value=100_000_000, step=64, **_kept("batch_size"),
                            help=help_for("batch_size"))
            field_error("batch_size")
        c1, c2 = st.columns(2)
        with c1:
            st.number_input("L2 (factors)", min_value=0.0, max_value=1e4, step=0.01, format="%g",
                            **_kept("l2"), help=help_for("l2"))
            field_error("l2")
        with c2:
            st.number_input("L2 (biases)", min_value=0.0, max_value=1e4, step=0.01, format="%g",
                            **_kept("l2_bias"), help=help_for("l2_bias"))
            field_error("l2_bias")
        c1, c2 = st.columns(2)
        with c1:
            st.number_input("L2 growth with rating count (power)", min_value=0.0, max_value=1.0, step=0.05,
                            format="%g", **_kept("l2_count_power"), help=help_for("l2_count_power"))
            field_error("l2_count_power")
        with c2:  # the switch right above the number it enables
            st.checkbox("Implicit feedback", **_kept("implicit_feedback"), help=help_for("implicit_feedback"))
            field_error("implicit_feedback")
            st.number_input("L2 (implicit)", min_value=0.0, max_value=1e4, step=0.1, format="%g",
                            **_kept("l2_implicit"), disabled=not ss.get(_k("implicit_feedback")),
                            help=help_for("l2_implicit"))
            field_error("l2_implicit")
        c1, c2 = st.columns(2)
        with c1:
            st.text_input("Weight decay", **_kept("weight_decay"), help=help_for("weight_decay"))
            field_error("weight_decay")
        with c2:
            st.number_input("Momentum", min_value=0.0, max_value=0.999, step=0.05, format="%g",
                            **_kept("momentum"), help=help_for("momentum"))
            field_error("momentum")
        c1, c2 = st.columns(2)
        with c1:
            st.number_input("LR decay per epoch", min_value=0.0, max_value=1.0, step=0.01, format="%g",
                            **_kept("lr_decay"), help=help_for("lr_decay"))
            field_error("lr_decay")
        with c2:
            st.number_input("Average weights from epoch", min_value=0, max_value=100_000, step=1,
                            **_kept("average_from"), help=help_for("average_from"))
            field_error("average_from")
        c1, c2 = st.columns(2)
        with c1:
            st.number_input("Early-stopping patience", min_value=0, max_value=100_000, step=1,
                            **_kept("early_stopping_patience"), help=help_for("early_stopping_patience"))
            field_error("early_stopping_patience")
        with c2:
            st.number_input("Model seed", min_value=0, max_value=2**32 - 1, step=1, **_kept("seed"),
                            help=help_for("seed"))
            field_error("seed")
    draw_extra_fields()
    draw_estimate()
    # Errors for fields without a widget of their own, so nothing is ever lost.
    known = {PREFIX + k for k in raw_values()}
    for field_name, message in (ss.get(ERRORS) or {}).items():
        if PREFIX + error_home(field_name) not in known:
            st.error(f"**{field_name}**: {message}")


def draw_extra_fields() -> None:
    """Plain widgets for engine fields the form does not know yet (none, normally)."""
    extras = [(cls, name) for cls in (ModelConfig, TrainConfig, RuntimeOptions) for name in extra_fields(cls)]
    if not extras:
        return
    with st.expander(f"Other engine settings ({len(extras)})", expanded=True):
        for cls, name in extras:
            key = _k(_extra_key(cls, name))
            default = next(f.default for f in fields(cls) if f.name == name)
            st.session_state.setdefault(key, _extra_value(default))
            label = f"{cls.__name__}.{name}"
            if isinstance(st.session_state[key], bool):
                st.checkbox(label, key=key, persist_state="session", help=help_for(name))
            else:
                st.text_input(label, key=key, persist_state="session", help=help_for(name))
            field_error(_extra_key(cls, name))


@lru_cache(maxsize=1)
def _auto_device() -> str:
    """What "auto" picks; a GPU with its name (CPU thread counts belong to each job)."""
    try:
        device = resolve_device("auto")
    except MFError as exc:
        return str(exc)
    return "cpu" if device.type == "cpu" else describe_device(device)


def auto_label(model: ModelConfig, train: TrainConfig) -> str:
    """A short default run label naming what usually differs between runs."""
    kind = "biased" if model.use_bias else "plain"
    lr = "" if train.optimizer == "als" else f" lr={train.lr:g}"
    batch = {0: "full", 1: "1"}.get(train.batch_size, str(train.batch_size))
    return f"{kind} k={model.n_factors} {train.optimizer}{lr} b={batch} l2={train.l2:g}"


__all__ = [
    "ERRORS", "FORM_FIELDS", "FormResult", "PREFIX", "PRESET_DATA_MISSING", "apply_configs", "apply_preset",
    "config_values", "preset_data_available", "auto_label", "extra_fields", "runtime_values", "draw_form", "field_docs", "field_error",
    "help_for", "init_form", "optimizer_choices", "preset_values", "raw_values", "validate",
]
