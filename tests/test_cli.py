"""The command line's own plumbing: where its progress lines go."""


def test_the_cli_shows_each_progress_line_once_even_with_a_root_handler(capsys):
    """opacus calls ``logging.basicConfig`` on import; the CLI's lines must not reach that root handler too."""
    import logging

    from diffence_plugin.cli import _log_to_stderr

    root = logging.getLogger()
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    root.addHandler(handler)
    try:
        _log_to_stderr()
        logging.getLogger("diffence_plugin.attacks").info("one line")
    finally:
        root.removeHandler(handler)
        logging.getLogger("diffence_plugin").propagate = True
    assert capsys.readouterr().err.count("one line") == 1
    assert seen == []


def test_a_command_run_in_process_gives_the_library_logger_back_as_it_was(tmp_path, capsys):
    """``main`` stops propagation only for its own run, so callers' handlers (pytest's caplog) see the lines after."""
    import logging

    from diffence_plugin.cli import main

    assert main(["train-diffusion", "--out", str(tmp_path / "ddpm"), "--steps", "2", "--width", "8",
                 "--batch-size", "8", "--device", "cpu", "--no-progress"]) == 0
    assert capsys.readouterr().err.count("ddpm: 2 steps") == 1  # the CLI's own line, shown once
    assert logging.getLogger("diffence_plugin").propagate is True


def test_the_bare_command_and_every_help_answer_without_error(capsys):
    """``diffence``, ``diffence --help``, ``-h`` and every subcommand's ``--help`` print their help and exit 0
    (a command summary holding "1% FPR" once crashed the top-level help's %-formatting)."""
    import pytest

    from diffence_plugin.cli import build_parser, main

    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert {"demo", "evaluate", "reproduce", "train-target", "train-diffusion", "compare", "plugins"} <= set(commands)
    for argv in (["--help"], ["-h"], *([name, "--help"] for name in commands)):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0, argv
        out = capsys.readouterr().out
        assert out.startswith("usage: diffence"), argv
    assert "1% FPR" in main.__globals__["build_parser"]().format_help()
