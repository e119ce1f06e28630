"""VGG-9 Gesture S-TLLR training step: this tree vs the public S-TLLR code (issue #19).

The setting of ``benchmarks/vgg_step.py``: VGG-9 at 2×32×32, full widths, batch 16, T = 20,
learning window 5, Bernoulli input frames (``--density``, default 5 %, generator seed 1),
every conv's weight-standardisation gain ``--gain`` (default 1, as initialised; 1.5 makes
the deeper layers spike), Adam with lr = 0 so that every call does the same work (as
``_step_worker.py``), ``--threads`` (default 1)
(``--quick``: T = 4, window 2, batch 2). Two training steps on the same batch:

``public``  the public code's ``dvs_vgg_stllr`` network (``models/VGG_STDP.py``:
            ``Conv2dSTLLR`` layers with the ``STLLRConv2dGrad`` Function, MaxPool, BP
            feedback, factors (0.2, 0.75, −1, 1), leak 0, Ψ the default linear spike),
            run as its ``utils/train.py`` runs a training batch in the default S-TLLR
            mode: ``reset_states``, ``zero_grad``, T forward steps with a graph each, a
            ``CE(o[t], y)`` + ``backward()`` at each of the last ``window`` steps (its
            ``--delay-ls``), one optimizer step. Imported at run time from ``--official
            PATH`` (an extracted checkout of github.com/mapolinario94/S-TLLR); nothing of
            it is in this repository. Without ``--official`` the script exits with a
            message and writes nothing.
``new``     this tree's ``stllr.training.train_batch`` on ``VGGSTLLR()`` (the same
            network, docs/rule.md §10a) with ``event_inputs = --mode`` (default auto).

The calls are interleaved (public, new, public, new, ...) in this one process after a
warm-up of each; it reports medians of wall and CPU seconds, public / new for both, and
the load average before and after. ``gradients`` aligns the two networks (the public one
gets this tree's initial parameters, layer by layer), runs one step of each on the same
batch and compares every parameter's gradient and the summed logits: max |Δ| and max |Δ|
over max |g|. Prints one JSON document (``--out FILE`` too).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import emit, environment, load_average, set_threads, summary, target
from event_driven import cpu_wall

from stllr.models.vgg import VGGSTLLR
from stllr.training import train_batch

TARGET = 3.0
# the public network's conv attribute names, in order (models/VGG_STDP.py)
PUBLIC_CONVS = ("conv1", "conv2", "conv3", "conv4", "conv8", "conv9", "conv11", "conv12")


def sizes(quick: bool) -> dict:
    if quick:
        return {"T": 4, "batch": 2, "window": 2}
    return {"T": 20, "batch": 16, "window": 5}


def batch(sz: dict, density: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``[T, B, 2, 32, 32]`` Bernoulli(density), ``y`` ``[B]``: as _step_worker.py."""
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(sz["T"], sz["batch"], 2, 32, 32, generator=g) < density).float()
    return x, torch.randint(0, 11, (sz["batch"],), generator=g)


def load_public(path: str):
    """The public ``models`` package (``models/VGG_STDP.py`` and its layers) from ``path``."""
    root = Path(path).resolve()
    if not (root / "models" / "VGG_STDP.py").is_file():
        raise SystemExit(f"--official {path}: models/VGG_STDP.py not found (extract it there)")
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("models.VGG_STDP")
    finally:
        sys.path.remove(str(root))


def public_model(vgg_stdp, ours: VGGSTLLR | None = None):
    """The public DVS Gesture VGG-9 (as ``dvs_vgg_stllr`` builds it for the README's command:
    BP feedback, MaxPool, factors 0.2 0.75 −1 1, default activation); with ``ours`` its
    parameters are copied from this tree's network."""
    net = vgg_stdp.VGG(
        n_inputs=2, labels=11, activation=None, feedback_mode="BP",
        factors=[0.2, 0.75, -1.0, 1.0], pool="MAX",
    )  # fmt: skip
    if ours is not None:
        with torch.no_grad():
            for name, conv in zip(PUBLIC_CONVS, ours.convs, strict=True):
                layer = getattr(net, name)
                layer.weight.copy_(conv.weight)
                layer.bias.copy_(conv.bias)
                layer.gain.copy_(conv.gain)
            net.linear16.weight.copy_(ours.head.weight)
            net.linear16.bias.copy_(ours.head.bias)
    return net


def public_step(net, x: torch.Tensor, y: torch.Tensor, opt, window: int) -> torch.Tensor:
    """One batch as the public ``utils/train.py`` trains it in its default S-TLLR mode."""
    net.train()
    net.reset_states()
    opt.zero_grad()
    pred = 0
    steps = x.shape[0]
    for t in range(steps):
        out = net(x[t], y)
        pred = pred + out.detach()
        if steps - t <= window:
            F.cross_entropy(out, y).backward()
    opt.step()
    return pred


def our_model(mode: str, gain: float) -> VGGSTLLR:
    """This tree's VGG-9 (seed 0), every conv's standardisation gain set to ``gain``."""
    torch.manual_seed(0)
    model = VGGSTLLR()
    with torch.no_grad():
        for conv in model.convs:
            conv.gain.fill_(gain)
    from stllr.spike_events import set_event_inputs

    set_event_inputs(model, mode)
    return model


def gradients(vgg_stdp, sz: dict, x, y, mode: str, gain: float) -> dict:
    """Both steps once from the same parameters; per-parameter gradient agreement."""
    ours = our_model(mode, gain)
    net = public_model(vgg_stdp, ours)
    sgd = torch.optim.SGD(ours.parameters(), lr=0.0)
    logits_new = train_batch(ours, x, y, sgd, window=sz["window"]).logits
    logits_pub = public_step(net, x, y, torch.optim.SGD(net.parameters(), lr=0.0), sz["window"])

    pairs = []
    for i, name in enumerate(PUBLIC_CONVS):
        for p in ("weight", "bias", "gain"):
            mine, theirs = getattr(ours.convs[i], p), getattr(getattr(net, name), p)
            pairs.append((f"conv{i + 1}.{p}", mine, theirs))
    pairs += [("head.weight", ours.head.weight, net.linear16.weight)]
    pairs += [("head.bias", ours.head.bias, net.linear16.bias)]
    rows = {}
    for label, a, b in pairs:
        ga = torch.zeros_like(a) if a.grad is None else a.grad
        gb = torch.zeros_like(b) if b.grad is None else b.grad
        diff = float((ga.double() - gb.double()).abs().max())
        scale = float(gb.double().abs().max())
        rows[label] = {"max_abs_diff": diff, "max_abs_public": scale,
                       "rel": diff / scale if scale > 0 else diff}  # fmt: skip
    worst = max(r["rel"] for r in rows.values())
    return {
        "per_parameter": rows,
        "max_rel_diff": worst,
        "logits_max_abs_diff": float((logits_new - logits_pub).abs().max()),
        "logits_max_abs": float(logits_pub.abs().max()),
        "agree_to_float32_rounding": worst < 1e-4,
    }


def measure(args, sz: dict, vgg_stdp, x, y) -> dict:
    ours = our_model(args.mode, args.gain)
    net = public_model(vgg_stdp, ours)
    pub_opt = torch.optim.Adam(net.parameters(), lr=0.0)
    our_opt = torch.optim.Adam(ours.parameters(), lr=0.0)
    steps = {
        "public": lambda: public_step(net, x, y, pub_opt, sz["window"]),
        "new": lambda: train_batch(ours, x, y, our_opt, window=sz["window"]),
    }
    for fn in steps.values():  # warm-up
        fn()
    load_before = load_average()
    times = {name: {"wall": [], "cpu": []} for name in steps}
    for _ in range(args.repeats):
        for name, fn in steps.items():
            wall, cpu = cpu_wall(fn)
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
    load_after = load_average()
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    return {
        "public": {k: summary(v) for k, v in times["public"].items()},
        "new": {k: summary(v) for k, v in times["new"].items()},
        "load_average_before": load_before,
        "load_average_after": load_after,
        "speedup_cpu": target(
            med["public"]["cpu"] / med["new"]["cpu"], ">=", TARGET, applicable=not args.quick
        ),
        "speedup_wall": target(
            med["public"]["wall"] / med["new"]["wall"], ">=", TARGET, applicable=not args.quick
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", default=None, help="extracted public S-TLLR checkout")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    ap.add_argument("--mode", default="auto", choices=("dense", "sparse", "auto"))
    ap.add_argument("--density", type=float, default=0.05, help="input frame density")
    ap.add_argument("--gain", type=float, default=1.0, help="every conv's WS gain (both)")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved timed calls")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not args.official:
        print("vgg_public: skipped, no --official PATH (an extracted checkout of "
              "github.com/mapolinario94/S-TLLR) given")  # fmt: skip
        return
    vgg_stdp = load_public(args.official)
    if args.quick:
        args.repeats = min(args.repeats, 2)
    set_threads(args.threads, args.quick)
    sz = sizes(args.quick)
    x, y = batch(sz, args.density)
    result = {
        "benchmark": "vgg_public",
        "quick": args.quick,
        "environment": environment(torch.device("cpu")),
        "config": {
            **sz,
            "input": [2, 32, 32],
            "density": args.density,
            "mode": args.mode,
            "gain": args.gain,
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
            "public": "github.com/mapolinario94/S-TLLR models/VGG_STDP.py VGG "
            "(dvs_vgg_stllr), utils/train.py default mode",
        },  # fmt: skip
        "gradients": gradients(vgg_stdp, sz, x, y, args.mode, args.gain),
    }
    result["step"] = measure(args, sz, vgg_stdp, x, y)
    result["environment"]["load_average_at_end"] = load_average()
    emit(result, args.out)


if __name__ == "__main__":
    main()
