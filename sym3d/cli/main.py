"""Entry point: builds the typer app, mounts plugin commands, maps errors to exit codes.

Exit codes: 0 success; 1 a sym3d error that is not the user's fault (or any unexpected error);
2 a user mistake (bad option, bad file, bad config, an output folder that cannot be written);
130 interrupted (Ctrl-C). Errors print one line on stderr; the traceback only with ``--debug``
(or ``SYM3D_DEBUG=1``). sym3d's own warnings (:class:`~sym3d.errors.Sym3DWarning`) print as one
``warning: ...`` line.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence

import typer

from sym3d.env import env_flag
from sym3d.errors import Sym3DError, UserInputError


def _click_exception_types() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(Exit, Abort, ClickException) classes of click and of typer's vendored click (typer >= 0.2x)."""
    exits: list[type] = [typer.Exit]
    aborts: list[type] = [typer.Abort]
    clicks: list[type] = []
    try:
        import click.exceptions as ce

        exits.append(ce.Exit)
        aborts.append(ce.Abort)
        clicks.append(ce.ClickException)
    except ImportError:  # pragma: no cover
        pass
    try:
        import typer._click.exceptions as tce  # type: ignore[import-not-found]

        clicks.append(tce.ClickException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(exits), tuple(aborts), tuple(clicks)


def _debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or env_flag("SYM3D_DEBUG")


def _print_error(exc: BaseException, *, code: int) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    label = "error: " if code == 2 else "failed: "
    console.print(Text.assemble((label, "bold red"), str(exc).strip() or type(exc).__name__))


INTERRUPTED = "interrupted; re-run the same command to resume."
"""The line printed on Ctrl-C (exit code 130). Interrupted inversions and batches resume from
their checkpoints when the same command runs again."""

_USER_OS_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR)
"""OSErrors about a path the user chose (exit 2); others, such as a full disk, exit 1."""


def _unexpected_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"


def _os_error_line(exc: OSError) -> str:
    """``<path>: <reason>`` for an OSError about a path the user chose (permissions, ...)."""
    names = [n for n in (exc.filename, exc.filename2) if n]
    where = f"{names[0]}: " if names else ""
    return f"{where}{exc.strerror or exc} (check the path you passed and its permissions)."


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Show :class:`~sym3d.errors.Sym3DWarning` as one ``warning: <message>`` line."""
    from sym3d.errors import Sym3DWarning

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if isinstance(category, type) and issubclass(category, Sym3DWarning):
            print(f"warning: {message}", file=file or sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


@contextlib.contextmanager
def _watch_sigint() -> Iterator[list[bool]]:
    """Yield a list that becomes ``[True]`` once SIGINT arrives (it still raises KeyboardInterrupt).

    Installed only over Python's default handler in the main thread: an ignored SIGINT stays
    ignored, and a command that installs its own handler (``sym3d batch``) prints its own line.
    """
    seen: list[bool] = []
    main_thread = threading.current_thread() is threading.main_thread()
    if not main_thread or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield seen
        return

    def handler(signum, frame):  # noqa: ANN001, ANN202
        seen.append(True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit code (also raises SystemExit when run as a script)."""
    from sym3d.cli.app import build_app

    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    exit_types, abort_types, click_types = _click_exception_types()
    try:
        app = build_app()
        with _one_line_warnings(), _watch_sigint() as sigint:
            result = app(args=args, prog_name="sym3d", standalone_mode=False)
        code = result if isinstance(result, int) else 0
        if code == 130 and sigint:  # typer turns Ctrl-C into a silent exit code 130
            print(INTERRUPTED, file=sys.stderr)
    except exit_types as exc:
        code = getattr(exc, "exit_code", 0)
    except abort_types:  # a declined or cancelled prompt
        print("Aborted.", file=sys.stderr)
        code = 130
    except click_types as exc:
        exc.show()
        code = 2
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        code = 130
    except Sym3DError as exc:
        if debug:
            raise
        code = 2 if isinstance(exc, UserInputError) else 1
        _print_error(exc, code=code)
    except OSError as exc:
        if debug:
            raise
        code = 2 if exc.errno in _USER_OS_ERRORS else 1
        line = _os_error_line(exc) if code == 2 else _unexpected_line(exc)
        _print_error(RuntimeError(line), code=code)
    except Exception as exc:  # unexpected: one line plus how to see more
        if debug:
            raise
        _print_error(
            RuntimeError(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"),
            code=1,
        )
        code = 1
    if argv is None:
        raise SystemExit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    main()
