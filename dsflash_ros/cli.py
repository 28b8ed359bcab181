"""The ``dsflash`` command: one sub-command per module in :mod:`dsflash_ros.commands`.

Each command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and
is imported only when used, so ``dsflash synth`` never loads ROS and ``dsflash demo`` never
loads the training code. Errors a user can act on are printed as one line (exit code 2):
``ValueError`` and ``OSError`` (bad values, files, models) and the project's own
``RuntimeError`` subclasses (``BackendError``, ``ExportError``, ``TrainingError``...).
Any other ``RuntimeError`` (a torch or library failure) is a bug and keeps its traceback;
``--debug`` shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dsflash_ros.commands._help import VersionAction, show_defaults

COMMANDS = ("demo", "infer", "synth", "train", "eval", "export", "bench", "model")


def is_user_error(error: BaseException) -> bool:
    """True for an error whose message tells the user what to fix (printed as one line)."""
    if isinstance(error, RuntimeError):  # only ours: torch's own are bugs to report
        return type(error).__module__.startswith("dsflash_ros.")
    return isinstance(error, ValueError | OSError)


def _command_module(name: str):
    return importlib.import_module(f"dsflash_ros.commands.{name}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser for ``argv``. Only the chosen command's module builds its options (which
    may import torch or rclpy); without one, ``--help`` and ``--version`` answer from the
    command summaries alone, so they never load a model library."""
    parser = argparse.ArgumentParser(
        prog="dsflash",
        description="Real-time panoptic scene graphs (DSFlash): demo, inference, training, "
        "evaluation, export and benchmarks.",
        epilog="Run 'dsflash COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name in COMMANDS:
        mod = _command_module(name)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        if name == chosen:
            mod.add_arguments(p)
            show_defaults(p)  # every option's help shows its default
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:  # bare `dsflash`: what it can do, not an error line
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("dsflash: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as e:
        if args.debug or not is_user_error(e):
            raise
        print(f"{args._prog}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
