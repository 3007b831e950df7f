"""The CLI: one JSON line for scripts, exit status 2 and one line for bad input."""

import io
import json
import math

import pytest

from mfcore import checkpoint
from mfcore.cli import main

SMALL = ["--dataset", "synthetic:n_users=150,n_items=120,density=0.2,rank=3,noise=0.2,popularity_skew=1.0,seed=0",
         "--epochs", "3", "--factors", "4"]


def _run(args):
    out, err = io.StringIO(), io.StringIO()
    code = main(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_json_summary_is_the_last_line(tmp_path):
    save = tmp_path / "model.pt"
    code, out, err = _run(["train", *SMALL, "--json", "--save", str(save)])
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    for key in ("test_rmse", "test_mae", "baseline_rmse", "global_mean_rmse", "epochs", "train_seconds",
                "examples_per_second", "device"):
        assert key in summary
    assert summary["epochs"] == 3 and summary["device"].startswith("cpu")
    assert math.isfinite(summary["test_rmse"]) and summary["test_rmse"] < summary["global_mean_rmse"]
    trained = checkpoint.load(save)
    assert trained.model_config.n_factors == 4 and len(trained.history["epoch"]) == 3


def test_human_output_has_a_line_per_epoch():
    code, out, _ = _run(["train", *SMALL, "--optimizer", "adam", "--lr", "0.01", "--batch-size", "64"])
    assert code == 0
    assert sum(line.startswith("epoch ") for line in out.splitlines()) == 3
    assert "done (completed): test RMSE" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "nan"], "lr: must be a finite number, got nan"),
        (["--lr", "-0.5"], "lr: must be above 0.0"),
        (["--factors", "0"], "n_factors: must be between 1 and 1024, got 0"),
        (["--epochs", "0"], "epochs: must be between 1"),
        (["--optimizer", "rmsprop"], "optimizer: unknown value 'rmsprop'"),
        (["--split", "random:1.5"], "fraction must be strictly between 0 and 1"),
        (["--split", "random:nan"], "fraction must be strictly between 0 and 1"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message, capsys, tmp_path):
    save = tmp_path / "never.pt"
    if args[0] == "--lr" and args[1] == "abc":
        with pytest.raises(SystemExit) as info:
            main(["train", *SMALL, *args])
        assert info.value.code == 2
        err = capsys.readouterr().err
    else:
        code, _, err = _run(["train", *SMALL, *args, "--save", str(save)])
        assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not save.exists()


def test_bad_files_exit_2(tmp_path):
    bad_csv = tmp_path / "ratings.csv"
    bad_csv.write_text("user,item,rating\n1,2,4\n1,3,not-a-number\n")
    code, _, err = _run(["train", "--dataset", str(bad_csv), "--epochs", "1"])
    assert code == 2 and "ratings.csv" in err and "line 3" in err
    fake_zip = tmp_path / "ml-100k.zip"
    fake_zip.write_bytes(b"PK\x03\x04 this is not really a zip")
    code, _, err = _run(["train", "--dataset", str(fake_zip), "--epochs", "1"])
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    code, _, err = _run(["train", "--dataset", str(tmp_path / "missing.csv")])
    assert code == 2 and "no such file or folder" in err


def test_a_diverging_run_exits_1_naming_the_learning_rate():
    code, _, err = _run(["train", *SMALL, "--lr", "90", "--l2", "0", "--json"])
    assert code == 1
    assert "diverged" in err and "learning rate 90" in err


def test_presets_and_datasets_listings(shared_data):
    code, out, _ = _run(["presets"])
    assert code == 0 and all(name in out for name in ("default", "d2l", "pytorch-basics", "mf-advanced", "lowrank"))
    code, out, _ = _run(["datasets", "--data-dir", str(shared_data)])
    assert code == 0 and "ml-100k" in out and str(shared_data / "ml-100k") in out


def test_implicit_feedback_follows_the_optimizer(tmp_path):
    """The default preset learns from implicit feedback; another optimizer turns it off
    (it needs per-rating SGD) unless asked for, and asking for it wrongly exits 2."""
    save = tmp_path / "m.pt"
    code, _, err = _run(["train", *SMALL, "--optimizer", "adam", "--batch-size", "64", "--save", str(save)])
    assert code == 0, err
    assert checkpoint.load(save).train_config.implicit_feedback is False
    code, _, err = _run(["train", *SMALL, "--save", str(save)])
    assert code == 0 and checkpoint.load(save).train_config.implicit_feedback is True
    code, _, err = _run(["train", *SMALL, "--optimizer", "adam", "--implicit"])
    assert code == 2 and "implicit_feedback: needs per-rating SGD" in err
