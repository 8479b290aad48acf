"""Shared CLI plumbing: JSON in and out, stable error codes, exit statuses, no tracebacks."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from pharmacy.errors import BadInput, PharmosError

Handler = Callable[[argparse.Namespace], int]


def emit(args: argparse.Namespace, obj: Any, human: str | None = None) -> None:
    if getattr(args, "json", False) or human is None:
        print(json.dumps(obj, indent=None if getattr(args, "compact", False) else 2,
                         sort_keys=False, default=str))
    else:
        print(human)


def read_json_input(source: str) -> Any:
    """Read a JSON document from '-' (stdin) or a file path."""
    try:
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise BadInput(f"cannot read {source}: {e.strerror}", code="BAD_INPUT_FILE") from None
    except UnicodeDecodeError:
        raise BadInput(f"{source} is not UTF-8 text (JSON expected)", code="BAD_JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}",
                       code="BAD_JSON") from None
    except RecursionError:  # brackets nested thousands deep: no pharmos document is
        raise BadInput(f"the JSON in {source} is nested too deeply to be a pharmos document",
                       code="BAD_JSON") from None


def report_error(args: argparse.Namespace, err: PharmosError) -> int:
    if getattr(args, "json", False):
        print(json.dumps(err.to_json(), indent=2, default=str))
    else:
        print(f"error [{err.code}]: {err.message}", file=sys.stderr)
    return err.exit_code


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="terminal data directory (default: $PHARMOS_DATA_DIR)")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def secret_from_args(args: argparse.Namespace) -> tuple[str, str]:
    if args.password_stdin:
        text = sys.stdin.readline().rstrip("\r\n")
        return ("password", text)
    if args.pin_stdin:
        return ("pin", sys.stdin.readline().strip())
    if args.pin:
        return ("pin", args.pin)
    raise BadInput("give --pin, --pin-stdin or --password-stdin", code="BAD_ARGS")


def add_secret_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--pin", help="PIN (4-12 digits; visible in the process list: prefer "
                                 "--pin-stdin)")
    g.add_argument("--pin-stdin", action="store_true", help="read the PIN from stdin")
    g.add_argument("--password-stdin", action="store_true",
                   help="read a password (8+ characters) from stdin instead of a PIN")
