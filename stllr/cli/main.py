"""``stllr``: command-line entry point.

Subcommands import their heavy dependencies lazily, so ``stllr --help`` never imports
torch. Errors a user can fix (:class:`stllr.errors.UserError`, and the operating system's
errors about a path) are printed as one line prefixed ``stllr: error:`` with exit status
2. Anything else is a bug: it keeps its traceback, after a line that says so. ``--debug``
(or ``STLLR_DEBUG=1``) shows the traceback of user errors too.
"""

from __future__ import annotations

import argparse
import os
import sys

from stllr import progress
from stllr.cli import compare, demo, evaluate, flow_eval, nir, options, pipeline, quantize, train
from stllr.errors import UserError

#: errors printed as one line: bad input, and paths that are missing, not readable, or of
#: the wrong kind (almost always a path the user typed)
USER_ERRORS = (UserError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def version() -> str:
    """The installed package's version, else the one in the source tree's pyproject.toml."""
    from importlib import metadata

    try:
        return metadata.version("stllr")
    except metadata.PackageNotFoundError:
        import re
        from pathlib import Path

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
        return found.group(1) if found else "unknown"


class _Version(argparse.Action):
    """``--version``: the version is looked up only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"stllr {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = options.Parser(
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
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    options.add_debug_option(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (demo, train, evaluate, flow_eval, quantize, compare, pipeline):
        options.add_common_options(module.add_parser(sub))
    for add_parser in (nir.add_export_parser, nir.add_import_parser):
        options.add_common_options(add_parser(sub))
    return parser


def _debug(args: argparse.Namespace) -> bool:
    return getattr(args, "debug", False) or os.environ.get("STLLR_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options.apply_threads(args.threads)
        with progress.switched(options.show_progress(args)):
            return int(args.run(args) or 0)
    except USER_ERRORS as exc:
        if _debug(args):
            raise
        print(f"stllr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stllr: interrupted", file=sys.stderr)
        return 130
    except Exception:
        print(
            "stllr: internal error (a bug, not your input); please report it with the "
            "traceback below",
            file=sys.stderr,
        )
        raise


if __name__ == "__main__":
    sys.exit(main())
