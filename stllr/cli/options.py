"""Options every ``stllr`` subcommand shares, and the parser that reads ``--set`` groups.

``--set`` takes one ``KEY=VALUE`` per use and may be repeated; :class:`Parser` also reads
the short form ``--set a=1 b=2`` by splitting it into ``--set a=1 --set b=2`` before
argparse sees it. The group ends at the first word that is not ``KEY=VALUE`` (``KEY`` a
name such as ``lr`` or ``adaptation.samples``), so ``stllr eval --set seed=1 CKPT`` leaves
``CKPT`` to the positional argument.

Importing this module must stay cheap: ``stllr --help`` builds every parser and must not
import torch.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

#: a ``--set`` item: a config key (letters, digits, ``_``, ``-``, ``.``), ``=``, a value
_SET_ITEM = re.compile(r"[A-Za-z_][\w.-]*=")

#: thread-count variables of the BLAS/OpenMP runtimes torch and numpy load; read when the
#: libraries are first imported, so they are set before the subcommand imports them
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def split_set_groups(argv: list[str]) -> list[str]:
    """``--set a=1 b=2 X`` → ``--set a=1 --set b=2 X``: one item per ``--set``."""
    out: list[str] = []
    grouping = False  # inside a --set group, past its first item
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return out + argv[i:]
        if word == "--set" and i + 1 < len(argv):
            out += argv[i : i + 2]
            grouping, i = True, i + 2
            continue
        if grouping and _SET_ITEM.match(word):
            out += ["--set", word]
        else:
            grouping = word.startswith("--set=")
            out.append(word)
        i += 1
    return out


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that splits ``--set`` groups (subparsers inherit the class)."""

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(split_set_groups(args), namespace)


def add_set_option(p: argparse.ArgumentParser, metavar: str, example: str, what: str) -> None:
    """``--set KEY=VALUE``, repeatable; ``--set a=1 b=2`` also works."""
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar=metavar,
        help=f"override {what}, e.g. --set {example}; repeat it or list several after one "
        "--set (the list ends at the first word that is not KEY=VALUE)",
    )


def add_common_options(p: argparse.ArgumentParser) -> None:
    """``--threads``, ``--device`` and ``--no-progress``, on every subcommand."""
    group = p.add_argument_group("common options")
    group.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="auto, cpu, cuda or cuda:N: where training, evaluation and the emulator run "
        "(shortcut for --set device=...; default: the config's, auto = CUDA when available)",
    )
    group.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="CPU threads of torch and the BLAS/OpenMP libraries (default 0: their choice)",
    )
    group.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they are also off when stderr is not a terminal)",
    )
    add_debug_option(group)


def device_option(args: argparse.Namespace) -> str | None:
    """``--device`` (None when not given); a value that is no device is a one-line error
    naming ``--device``."""
    from stllr.devices import check_device_spec

    device = getattr(args, "device", None)
    return None if device is None else check_device_spec(device, "--device")


def device_override(args: argparse.Namespace, key: str = "device") -> list[str]:
    """``["<key>=<--device>"]`` to append to a command's ``--set`` overrides ([] without
    ``--device``); ``key`` is where the setting lives (``train.device`` in a pipeline)."""
    device = device_option(args)
    return [] if device is None else [f"{key}={device}"]


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars only when asked for and stderr is a terminal."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def apply_threads(threads: int) -> None:
    """Use ``threads`` CPU threads (0: leave the libraries' defaults)."""
    from stllr.errors import UserError

    if threads < 0:
        raise UserError(f"--threads must be ≥ 0 (0 = the libraries' choice), got {threads}")
    if threads == 0:
        return
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


def add_debug_option(p: argparse.ArgumentParser) -> None:
    """``--debug``: tracebacks for user errors too (also ``STLLR_DEBUG=1``)."""
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,  # so the subcommand's default does not hide `stllr --debug`
        help="show the traceback of every error, user errors included (or STLLR_DEBUG=1)",
    )
