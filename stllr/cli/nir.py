"""stllr export / stllr import: the NIR interchange (docs/nir.md).

``stllr export CHECKPOINT --format nir --out model.nir`` writes the float model of a
checkpoint (written by ``stllr train``) as a NIR graph; ``stllr import model.nir`` builds
the toolkit's S-TLLR model from a NIR graph and prints its layers, or a one-line error
naming the node and field it cannot map exactly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stllr.cli import options


def _dt(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"--dt must be > 0 seconds, got {text}")
    return value


def add_export_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="write a trained checkpoint's float model as a NIR graph",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: stllr export runs/demo_stllr/trial_1/best.pt --out shd.nir",
    )
    p.add_argument("checkpoint", type=Path, help="best.pt or checkpoint.pt written by train")
    p.add_argument("--format", choices=("nir",), default="nir", help="the format (nir)")
    p.add_argument("--out", type=Path, required=True, help="the file to write")
    p.add_argument("--dt", type=_dt, default=None, help="time step in seconds (default 1e-3)")
    options.add_set_option(
        p, "KEY=VALUE", "data=/datasets", "config values stored in the checkpoint"
    )
    p.set_defaults(run=run_export)
    return p


def add_import_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "import",
        help="build an S-TLLR model from a NIR graph and list its layers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: stllr import model.nir",
    )
    p.add_argument("nir_file", type=Path, help="a NIR graph (HDF5, nir.write)")
    p.add_argument("--dt", type=_dt, default=None, help="time step (default: the graph's dt)")
    p.set_defaults(run=run_import)
    return p


def run_export(args: argparse.Namespace) -> int:
    from stllr.cli.checkpoint import load_checkpoint
    from stllr.nir_interop.export import write_nir
    from stllr.nir_interop.time_mapping import DEFAULT_DT

    ck = load_checkpoint(args.checkpoint, args.set)
    write_nir(ck.model, args.out, DEFAULT_DT if args.dt is None else args.dt)
    print(f"{type(ck.model).__name__} of {args.checkpoint} written to {args.out} (NIR)")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from stllr.nir_interop.load import NIRNetwork, read_nir

    model = read_nir(args.nir_file, args.dt)
    n = sum(p.numel() for p in model.parameters())
    print(
        f"{args.nir_file}: {type(model).__name__}, input {list(model.input_shape)}, "
        f"{model.num_classes} outputs, {n} parameters"
    )
    if isinstance(model, NIRNetwork):
        print("  (no toolkit model class fits: runs in float, not deployable)")
        for name in model.order:
            print(f"  {name} ← {' + '.join(model.sources[name])}: {model.units[name]!r}")
        return 0
    for name, module in model.named_modules():
        if name and not list(module.children()) and any(True for _ in module.parameters()):
            print(f"  {name}: {module!r}")
    return 0
