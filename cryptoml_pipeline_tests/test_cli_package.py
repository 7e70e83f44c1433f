"""The ``cli/`` package: one module per subcommand, one shared argument module, no import circle,
the ``cryptoml`` console script, one-line errors with exit code 2."""

import argparse
import ast
import tomllib
from pathlib import Path

import pytest

import cryptoml_pipeline
from cryptoml_pipeline.cli import SUBCOMMANDS, build_parser, main
from cryptoml_pipeline.cli.args import EXIT_BAD_INPUT

CLI = Path(cryptoml_pipeline.__file__).parent / "cli"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_console_script_points_at_the_package_main() -> None:
    project = tomllib.loads((CLI.parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["cryptoml"] == "cryptoml_pipeline.cli:main"
    assert callable(main)


def test_every_subcommand_is_a_module_sharing_the_argument_module() -> None:
    assert set(_subparsers(build_parser())) == {
        "run",
        "data",
        "paper",
        "signal",
        "dashboard",
        "experiment",
        "live",
        "parity",
    }
    assert set(SUBCOMMANDS) == {p.stem for p in CLI.glob("*.py")} - {"__init__", "__main__", "args"}
    for module in CLI.glob("*.py"):
        if module.stem in ("__init__", "__main__"):
            continue
        imported = {
            node.module
            for node in ast.walk(ast.parse(module.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module
        }
        from_cli = {m for m in imported if m.startswith("cryptoml_pipeline.cli")}
        # no circle: a subcommand imports only the shared arguments; args imports no subcommand
        assert from_cli <= ({"cryptoml_pipeline.cli.args"} if module.stem != "args" else set())
        if module.stem != "args":
            assert "cryptoml_pipeline.cli.args" in from_cli, module.name


@pytest.mark.parametrize(
    ("flag", "default", "commands"),
    [
        ("--output_dir", "output", {"run", "paper", "signal", "dashboard", "live", "parity"}),
        # paper/live take timeframe and settings from the model's manifest (live/loader.py)
        ("--timeframe", "1h", {"run", "data", "dashboard"}),
        ("--profile", "demo", {"run", "dashboard"}),
        ("--data_dir", None, {"run", "paper", "signal", "live"}),
    ],
)
def test_shared_arguments_have_one_default(flag: str, default, commands: set[str]) -> None:
    subs = _subparsers(build_parser())
    for name in commands:
        (action,) = [a for a in subs[name]._actions if a.dest == flag.removeprefix("--")]
        assert action.default == default, name


def test_bad_argument_is_one_line_and_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--profile", "huge"])
    assert exc.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("cryptoml: error:") and "\n" not in err
    assert main(["data", "--symbols", "BTCUSDT"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err == "cryptoml: error: symbol 'BTCUSDT' is not a ccxt symbol like BTC/USDT"
