"""What the CLI tests check about a user error: exactly one `error: ...` line on stderr, no traceback."""


def one_error_line(capsys) -> str:
    """The one error line the last `main(...)` call printed (progress log lines aside)."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("I ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]
