"""jobs/make_data.py: synth, foregrounds and manifest subcommands, exit code 2 on bad arguments."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "jobs" / "make_data.py"


@pytest.fixture(scope="module")
def make_data():
    spec = importlib.util.spec_from_file_location("make_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synth_then_manifest(make_data, tmp_path, capsys):
    out = tmp_path / "synth"
    assert make_data.main(["synth", "--out", str(out), "--n", "4", "--size", "64", "--seed", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "comp1k" / "manifest.parquet") in printed
    assert str(out / "plain" / "manifest.parquet") in printed
    assert (out / "plain" / "train" / "image").is_dir()
    assert make_data.main(["manifest", str(out / "plain")]) == 0
    assert "plain" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["synth", "--out", "X", "--n", "0"],
        ["synth", "--out", "X", "--n", "3", "--size", "8"],
        ["synth", "--out", "X", "--n", "3", "--val-fraction", "0.7", "--test-fraction", "0.5"],
        ["synth", "--n", "3"],
        ["manifest", "/definitely/not/here"],
        ["foregrounds", "--data", "/definitely/not/here", "--out", "X"],
        ["foregrounds", "--data", ".", "--out", "X", "--bg-per-fg", "0"],
        [],
    ],
)
def test_bad_arguments_exit_2_with_one_line(make_data, argv, capsys):
    with pytest.raises(SystemExit) as err:
        make_data.main(argv)
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "error" in message


def test_manifest_of_unknown_layout_exits_2(make_data, tmp_path, capsys):
    assert make_data.main(["manifest", str(tmp_path)]) == 2
    assert "expected" in capsys.readouterr().err.lower()


def test_foregrounds_from_a_synthetic_plain_folder(make_data, synth_dir, tmp_path, capsys):
    out = tmp_path / "fg"
    assert (
        make_data.main(
            ["foregrounds", "--data", str(synth_dir / "plain"), "--out", str(out), "--bg-per-fg", "2", "--quiet"]
        )
        == 0
    )
    n_fg = len(list((synth_dir / "plain" / "train" / "image").iterdir()))
    assert f"({2 * n_fg} rows)" in capsys.readouterr().out
    assert len(list((out / "train" / "bg").iterdir())) == 2 * n_fg


def test_foregrounds_of_a_folder_without_photos_exit_2(make_data, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert make_data.main(["foregrounds", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "error" in capsys.readouterr().err
