"""``python -m sync_server --db URL [--host H] [--port P] [--migrate]``."""

from __future__ import annotations

import argparse
import sys

from sync_server.app import DEFAULT_MAX_BODY, serve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sync_server")
    p.add_argument("--db", required=True, help="sqlite:///PATH or postgresql://...")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY)
    p.add_argument("--migrate", action="store_true", help="apply migrations at start")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--workers", type=int, default=1, help="server processes")
    args = p.parse_args(argv)
    serve(args.db, args.host, args.port, max_body=args.max_body, migrate=args.migrate,
          log_level=args.log_level, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
