"""How much can learning the readout on the shifted stream gain at all? The float
ceilings of on-device adaptation on the SHD stand-in (docs/adaptation.md §5).

On a deployed pipeline run (``--run``: a ``stllr pipeline --skip-lava`` folder of the
SHD stand-in) and the scenario of its config (seeded by ``--seeds``), the float twin of
the deployed network (:class:`pipeline.float_learner.FloatLearner`: raw weights equal to
Ŵ) learns the ``--samples`` shifted stream samples with the plastic ``--layers`` and is
scored, after every pass, on the same held-out shifted samples and original-condition
samples as the adaptation stage (paired Δ in points, :func:`pipeline.adapt_stats.paired_change`):

* ``--mode oracle``: offline fine-tuning, the learner a device cannot run: Adam
  (``--optimizer sgd``: plain SGD, what a device that accumulates its updates over 32
  samples would run) at ``--lr``, shuffled mini-batches of 32, S-TLLR gradients over
  the last ``window`` steps (:func:`stllr.training.train_batch`), ``--passes`` passes
  over the stream;
* ``--mode online``: the device's rule in float, one sample at a time in stream order
  (SGD step ``--lr`` at every step of the window, the adaptation stage's float learner),
  ``--passes`` passes over the same stream (a host that rehearses its buffer of
  labelled shifted samples).

Prints JSON: per seed and pass, shifted and original Δ ± paired SE; per pass mean ± std.
``--quick``: a one-epoch run trained into a temporary folder, 8 stream samples, 2 passes,
one seed (a smoke test of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import emit, environment


def _setup(run: Path, samples: int, seed: int, quick: bool = False):
    from pipeline import artefacts as A
    from pipeline.adapt_device import prepare
    from pipeline.adapt_mechanisms import Mechanisms
    from pipeline.config import config_path_for_task, load_pipeline_config
    from stllr.tasks import load_task

    sets = [f"adaptation.samples={samples}", f"adaptation.seed={seed}", "lava.enabled=false"]
    if quick:
        sets += ["adaptation.eval_samples=8", "train.standin_train=40", "train.standin_test=20"]
    cfg = load_pipeline_config(config_path_for_task("shd-standin"), sets, run)
    data = load_task(cfg.train)
    qnet = A.load_qnet(run)
    model, _ = A.load_float_model(run, cfg.train, data)
    return cfg.adaptation, model, prepare(cfg.adaptation, data, qnet, Mechanisms())


def one_seed(run: Path, mode, layers, lr, samples, passes, seed, quick=False, optimizer="adam"):
    """Per pass: ``{"pass", "shifted": PairedChange dict, "original": ...}``."""
    import torch

    from pipeline.adapt_stats import paired_change
    from pipeline.float_learner import FloatLearner, plastic_parameters
    from stllr.training import train_batch

    a, model, prep = _setup(run, samples, seed, quick)
    fl = FloatLearner(model, layers, lr if mode == "online" else 0.0, a.window)
    pe0, pc0 = fl.predict(prep.xe, prep.le), fl.predict(prep.xc, prep.lc)
    xs, ys = prep.xs, prep.y_all  # no replay: the stream's own labels
    n = xs.shape[1]
    make = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    opt = make(plastic_parameters(fl.model, layers), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for p in range(passes):
        if mode == "online":
            for i in range(n):
                fl.learn_sample(xs[:, i : i + 1], int(ys[i]))
        else:
            perm = torch.randperm(n, generator=gen)
            for s in range(0, n, 32):
                idx = perm[s : s + 32]
                train_batch(fl.model, xs[:, idx], ys[idx], opt, mode="stllr", window=a.window)
            fl.model.eval()
        sh = paired_change(pe0, fl.predict(prep.xe, prep.le), prep.ye)
        orig = paired_change(pc0, fl.predict(prep.xc, prep.lc), prep.yc)
        rows.append({"pass": p + 1, "shifted": sh.as_dict(), "original": orig.as_dict()})
        print(
            f"seed {seed} pass {p + 1}: shifted {sh.delta:+.1f} ± {sh.se:.1f}, "
            f"original {orig.delta:+.1f} ± {orig.se:.1f}",
            file=sys.stderr,
            flush=True,
        )
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=None, help="a stllr pipeline run of shd-standin")
    p.add_argument("--mode", choices=("oracle", "online"), default="oracle")
    p.add_argument("--layers", default="readout")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--passes", type=int, default=4)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.run is None and not args.quick:
        p.error("--run is needed (a stllr pipeline --skip-lava run of shd-standin)")

    import torch

    from pipeline.adapt_stats import mean_std

    torch.set_num_threads(1)
    layers = tuple(args.layers.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    tmp = None
    if args.quick:
        import tempfile

        from adaptation import ensure_run

        tmp = tempfile.TemporaryDirectory(prefix="stllr_ceiling_")
        args.run = str(ensure_run("shd-standin", Path(tmp.name), None, True))
        args.samples, args.passes, seeds = 8, 2, seeds[:1]
    run = Path(args.run)
    per_seed = {
        s: one_seed(
            run,
            args.mode,
            layers,
            args.lr,
            args.samples,
            args.passes,
            s,
            args.quick,
            args.optimizer,
        )  # fmt: skip
        for s in seeds
    }
    if tmp is not None:
        tmp.cleanup()
    passes = []
    for k in range(args.passes):
        row = {"pass": k + 1}
        for cond in ("shifted", "original"):
            m, sd = mean_std([per_seed[s][k][cond]["delta"] for s in seeds])
            se, _ = mean_std([per_seed[s][k][cond]["se"] for s in seeds])
            row[cond] = {"delta_mean": round(m, 2), "delta_std": round(sd, 2), "se": round(se, 2)}
        passes.append(row)
    result = {
        "benchmark": "adaptation_ceiling",
        "config": vars(args),
        "environment": environment(torch.device("cpu")),
        "per_seed": {str(s): v for s, v in per_seed.items()},
        "passes": passes,
    }
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
