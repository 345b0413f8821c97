"""`descentlab list` and the command's error handling, run as a real subprocess."""

import subprocess
import sys

from descentlab import optim


def descentlab(*args):
    return subprocess.run([sys.executable, "-m", "descentlab", *args], capture_output=True, text=True, timeout=120)


def test_list_optimizers_prints_every_name_with_a_description():
    proc = descentlab("list", "optimizers")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == optim.available()
    assert all(len(line.split(None, 1)) == 2 for line in lines)


def test_usage_error_is_one_line_with_exit_status_2():
    proc = descentlab("list", "nonsense")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("descentlab: error:")
    assert "Traceback" not in proc.stderr


def test_help():
    proc = descentlab("--help")
    assert proc.returncode == 0 and "list" in proc.stdout
    proc = descentlab("list", "--help")
    assert proc.returncode == 0


def test_list_suites_names_the_benchmark_suites_and_their_workloads(capsys):
    from descentlab.benchmark import suites
    from descentlab.cli import main

    assert main(["list", "suites"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(suites.BUILTIN)
    for line, name in zip(lines, suites.BUILTIN):
        assert all(e.name in line for e in suites.load(name).entries)
