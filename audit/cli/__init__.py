"""The `audit` command line: a Typer app whose commands live one group per module."""

from __future__ import annotations

import json
import sys

import typer

from audit.errors import AuditError, Terminated


def build_app() -> typer.Typer:
    from audit.cli import history, inspect, review, running, signoff

    app = typer.Typer(
        name="audit",
        help="Audit trained classifiers before they ship: bias, robustness, attribution faithfulness, with reports a reviewer can sign.",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    running.register(app)
    inspect.register(app)
    history.register(app)
    review.register(app)
    signoff.register(app)
    from audit.plugins import get_plugin_manager

    get_plugin_manager().register_commands(app)
    return app


def _print_version(value: bool) -> None:
    if value:
        import audit

        print(f"audit {audit.__version__}")
        raise typer.Exit(0)


def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
) -> None:
    """Audit trained classifiers before they ship."""


_argv: list[str] = []


def current_argv() -> list[str]:
    """The command line as typed, for the run's reproducibility record."""
    return ["audit", *_argv]


def _click_module():
    """Typer >= 0.25 vendors click as typer._click; older Typer uses click itself."""
    import importlib

    if getattr(typer, "_click", None) is not None:
        return importlib.import_module("typer._click.exceptions")
    return importlib.import_module("click.exceptions")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; bad usage and bad input end in one `Error:` line and exit code 2."""
    click = _click_module()

    global _argv
    _argv = list(sys.argv[1:] if argv is None else argv)
    try:
        app = build_app()
        result = app(args=argv, prog_name="audit", standalone_mode=False)
    except AuditError as error:
        _reject(str(error))
    except click.NoArgsIsHelpError as error:
        print(error.ctx.get_help() if error.ctx else str(error))
        sys.exit(0)
    except click.UsageError as error:
        hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
        _reject(f"{error.format_message()}{hint}")
    except typer.Abort:
        print("Error: aborted", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print("Error: terminated (SIGTERM)", file=sys.stderr)
        sys.exit(143)
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)


def _reject(message: str) -> None:
    """Exit 2 with one `Error:` line on stderr; with --json, also a JSON document on stdout, so a CI
    step that parses stdout reads why nothing ran instead of failing on empty input."""
    print(f"Error: {message}", file=sys.stderr)
    options = _argv[: _argv.index("--")] if "--" in _argv else _argv
    if "--json" in options:
        print(json.dumps({"status": "rejected", "exit_code": 2, "error": message}, indent=2))
    sys.exit(2)
