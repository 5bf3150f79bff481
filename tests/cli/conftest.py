"""Helpers for driving the ``cocoon`` command in-process and checking its failures."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from cocoon.cli.main import app

runner = CliRunner()


def cocoon(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env=env)


def assert_one_line_error(result: Result, *fragments: str, code: int = 1) -> str:
    """A routine failure: exit ``code``, exactly one ``error: ...`` line, no traceback."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
