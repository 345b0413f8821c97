"""`descentlab list schedules` and `descentlab plot-schedule`, through main() in process."""

import pytest

from descentlab import schedules
from descentlab.cli import main
from descentlab.commands.values import parse_value


def test_list_schedules(capsys):
    assert main(["list", "schedules"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == schedules.available()


def test_plot_schedule_writes_a_png(tmp_path, capsys):
    out = tmp_path / "lr.png"
    code = main(["plot-schedule", "one_cycle", "max_lr=0.5", "total_steps=200", "--steps", "200", "--out", str(out)])
    assert code == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["plot-schedule", "cosin", "--steps", "10", "--out", "x.png"], "did you mean 'cosine'"),
        (["plot-schedule", "cosine", "total_steps=0", "--steps", "10", "--out", "x.png"], "invalid total_steps=0"),
        (["plot-schedule", "cosine", "total_steps", "--steps", "10", "--out", "x.png"], "expected KEY=VALUE"),
        (["plot-schedule", "constant", "--steps", "0", "--out", "x.png"], "invalid --steps 0"),
        (["plot-schedule", "constant", "--steps", "5", "--out", "x.jpg"], "expected a .png file"),
        (["plot-schedule", "step", "step_size=5", "gama=0.5", "--steps", "5", "--out", "x.png"], "gama"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir()), "nothing is written on bad input"


@pytest.mark.parametrize(
    "text,value",
    [("3", 3), ("0.5", 0.5), ("1e-3", 1e-3), ("true", True), ("None", None), ("[10, 20]", [10, 20]),
     ("(0.9,0.99)", (0.9, 0.99)), ("triangular2", "triangular2"), ("__import__('os')", "__import__('os')")],
)
def test_values_are_parsed_without_eval(text, value):
    assert parse_value(text) == value
