"""``stllr``: command-line entry point.

Subcommands import their heavy dependencies lazily. Errors a user can fix (bad
paths, bad options) are printed as one line prefixed ``stllr: error:`` with exit
status 2, not as a traceback.
"""

from __future__ import annotations

import argparse
import sys

from stllr.cli import compare, demo, evaluate, pipeline, quantize, train


class UserError(Exception):
    """An error caused by the user's input; printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stllr",
        description=(
            "Train spiking neural networks with S-TLLR (a three-factor, temporally local "
            "learning rule), quantize them and run on-device learning in Lava."
        ),
        epilog=(
            "Examples: stllr demo --method stllr-dfa --epochs 3 · stllr pipeline (train → "
            "quantize → Lava → on-device adaptation → report, on built-in stand-in data)"
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo.add_parser(sub)
    train.add_parser(sub)
    evaluate.add_parser(sub)
    quantize.add_parser(sub)
    compare.add_parser(sub)
    pipeline.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (UserError, ValueError, TypeError, FileNotFoundError, PermissionError) as exc:
        print(f"stllr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stllr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
