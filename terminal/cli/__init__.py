"""`pharmos` command line. Each area registers its subcommands from its own module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn

from pharmacy.errors import PharmosError
from terminal.cli._common import report_error

# Modules under terminal.cli, each with register(subparsers).
AREAS = ("core", "clinical", "hw", "models", "policy", "gui", "sync")


# Commands on a start-up path that should not wait for every area's parser.
FAST_PATH = {"terminal": "gui"}


class UsageError(Exception):
    """A command line argparse cannot read: bad input (exit 1), not a domain refusal."""


class Parser(argparse.ArgumentParser):
    """argparse, except that a usage error is bad input: exit 1 (argparse's own is 2, the
    code a refusal by a domain rule has), and a JSON error when ``--json`` was asked for."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser(areas: tuple[str, ...] = AREAS) -> argparse.ArgumentParser:
    parser = Parser(prog="pharmos", description="pharmos pharmacy system")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for area in areas:
        importlib.import_module(f"terminal.cli.{area}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fast = FAST_PATH.get(argv[0]) if argv else None
    parser = build_parser((fast,) if fast else AREAS)
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        print(f"{err}\n(pharmos --help, or COMMAND --help, lists the arguments)",
              file=sys.stderr)
        if "--json" in argv:
            import json

            print(json.dumps({"error": {"code": "BAD_ARGS", "message": str(err)}}))
        return 1
    try:
        return int(args.handler(args) or 0)
    except PharmosError as err:
        return report_error(args, err)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `pharmos stock | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # not a domain error: log it with its traceback, exit 70
        logging.basicConfig()
        logging.getLogger("pharmos").exception("internal error")
        err_json = {"error": {"code": "INTERNAL", "message": f"internal error: {err}"}}
        if getattr(args, "json", False):
            import json

            print(json.dumps(err_json))
        return 70


if __name__ == "__main__":
    sys.exit(main())
