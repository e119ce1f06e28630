"""Stages ``quantize`` and ``lava`` of the flow pipeline (:mod:`pipeline.flow_stages`).

``quantize``: 8-bit PTQ of the trained FSFN (:func:`quantization.ptq.quantize_model`,
input format calibrated on every 8th training window), and the AEE of every test window
(docs/flow.md §3) for the float model, the integer emulator (the finest head's ``o`` at the
last step, :mod:`quantization.flow_eval`) and zero flow; the same for each width of
``quantize.sweep_bits``. Writes ``quantize/quantized.pt``, ``quantize/quantization.json``
(summed AEE, per sequence, per window) and ``quantize/sweep.json``.

``lava``: the first ``lava.samples`` test windows of every sequence through Lava
``fixed_pt``: the finest flow at the last step compared with the emulator's bit for bit,
and its AEE; one window through ``floating_pt`` (the float graph in float64) against the
torch model in float64: max |Δ flow| of the four heads over every step. Writes
``lava/lava.json`` and ``lava/flows.npz`` (per sequence, the last Lava window: float,
8-bit and Lava flows, gt and the evaluation mask: the report's pictures).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from pipeline import artefacts as A
from pipeline import flow_data
from pipeline.runner import Context, StageOutput
from stllr.run import atomic_json

FLOWS = "lava/flows.npz"
#: Lava floating_pt vs torch (float64): the flows' bound, px (a warning beyond it)
FLOAT_FLOW_TOL = 1e-5


def window_aees(predict, tests: dict, batch_size: int, limit: int | None = None) -> dict:
    """Sequence name → AEE of each of its (first ``limit``) windows (NaN: empty mask);
    ``predict(x [T, B, C, H, W]) → flow [B, 2, h, w]`` in pixels."""
    from stllr.flow.dataset import collate
    from stllr.flow.metrics import window_errors

    out = {}
    for name, data in tests.items():
        n = len(data) if limit is None else min(limit, len(data))
        errs = []
        for s in range(0, n, batch_size):
            batch = collate([data[i] for i in range(s, min(s + batch_size, n))])
            pred = predict(batch.x).to(batch.flow.dtype)
            errs += [e.aee for e in window_errors(pred, batch.flow, batch.events)]
        out[name] = errs
    return out


def summed(per_window: dict) -> tuple[float, dict]:
    """(summed AEE, sequence → AEE): each sequence's mean over its windows with a
    non-empty mask (:func:`stllr.flow.metrics.sequence_score`), summed."""
    seq = {}
    for name, errs in per_window.items():
        ok = [e for e in errs if not math.isnan(e)]
        seq[name] = sum(ok) / len(ok) if ok else math.nan
    return sum(seq.values()), seq


def float_predictor(model):
    from stllr.flow.training import predict_flow

    def predict(x):
        with torch.no_grad():
            return predict_flow(model, x.to(next(model.parameters()).dtype))

    return predict


def integer_predictor(qnet):
    from quantization.emulator import IntegerEmulator
    from quantization.flow_eval import integer_flow

    emu = IntegerEmulator(qnet, delay=0)
    return lambda x: integer_flow(emu, x)


def quantize(ctx: Context) -> StageOutput:
    from quantization.ptq import PTQConfig, quantize_model

    q, train = ctx.cfg.quantize, ctx.cfg.train
    data = flow_data.load(ctx)
    model = A.load_float_model(ctx.run_dir, train, data)[0]
    calib = flow_data.calibration(data)
    bs = train.val_batch_size
    per = {"float": window_aees(float_predictor(model), data.test, bs)}
    per["zero"] = window_aees(lambda x: torch.zeros(x.shape[1], 2, 1, 1), data.test, bs)
    widths = sorted(set(q.sweep_bits) | {q.bits})
    sweep, deployed = {}, None
    for b in widths:
        qnet, reports = quantize_model(
            model, calib, PTQConfig(weight_bits=b, percentile=q.percentile)
        )
        errs = window_aees(integer_predictor(qnet), data.test, bs)
        sweep[b] = summed(errs)[0]
        if b == q.bits:
            deployed, per[f"int{b}"], clipped = qnet, errs, sum(r.clipped for r in reports)
    out = ctx.stage_dir("quantize")
    deployed.save(out / "quantized.pt")
    sums = {k: summed(v) for k, v in per.items()}
    key = f"int{q.bits}"
    result = {
        "weight_bits": q.bits,
        "percentile": q.percentile,
        "calib_windows": len(calib),
        "clipped_weights": clipped,
        "sum_aee": {k: s for k, (s, _) in sums.items()},
        "sequence_aee": {k: seq for k, (_, seq) in sums.items()},
        "window_aee": per,
        "deployed": key,
    }
    atomic_json(result, out / "quantization.json")
    atomic_json({"bits": widths, "sum_aee": {str(b): sweep[b] for b in widths},
                 "float_sum_aee": sums["float"][0]}, out / "sweep.json")  # fmt: skip
    f, i, z = sums["float"][0], sums[key][0], sums["zero"][0]
    summary = {"bits": q.bits, "float_sum_aee": f, "int_sum_aee": i, "zero_sum_aee": z,
               "rel_change": i / f - 1.0, "sweep": {str(b): sweep[b] for b in widths},
               "test_windows": sum(len(v) for v in per["float"].values())}  # fmt: skip
    cells = ", ".join(f"{b}b {sweep[b]:.3f}" for b in widths)
    line = (f"{q.bits}-bit PTQ (integer emulator) summed AEE {i:.3f} vs float {f:.3f} "
            f"({100 * (i / f - 1):+.1f} %; zero flow {z:.3f}); sweep: {cells}")  # fmt: skip
    return StageOutput(summary, line, (A.QNET, A.QUANT_JSON, A.SWEEP_JSON))


def _lava_fixed(qnet, tests: dict, n: int, timeout_s: float):
    """Lava ``fixed_pt`` on the first ``n`` windows per sequence
    (:func:`lava_models.flow.lava_flow`): (sequence → Lava flows ``[n, 2, h, w]`` px,
    sequence → emulator flows, seconds)."""
    from lava_models.flow import lava_flow
    from quantization.emulator import IntegerEmulator
    from quantization.flow_eval import integer_flow
    from stllr.flow.dataset import collate

    lava, emu, t0 = {}, {}, time.perf_counter()
    for name, data in tests.items():
        x = collate([data[i] for i in range(min(n, len(data)))]).x  # [T, k, C, H, W]
        lava[name] = lava_flow(qnet, x, timeout_s=timeout_s)
        emu[name] = integer_flow(IntegerEmulator(qnet), x)
    return lava, emu, time.perf_counter() - t0


def _lava_float(model, window, timeout_s: float) -> float:
    """max |Δ flow| (px) of the four heads over every step: Lava ``floating_pt`` running
    the float graph of ``model`` (float64) vs the torch model in float64."""
    import copy

    from lava_models.float_exporter import float_network
    from lava_models.runner import run_lava

    m = copy.deepcopy(model).double().eval()
    x = window.x.double()  # [T, C, H, W]
    m.reset_state()
    with torch.no_grad():
        flows = [m(x[t][None]) for t in range(x.shape[0])]
    res = run_lava(float_network(m), x.numpy(), timeout_s=timeout_s)
    worst = 0.0
    for k in range(len(flows[0])):
        ref = torch.stack([f[k][0] for f in flows]).numpy()
        got = res.outputs[f"flow{k + 1}"].reshape(ref.shape)
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def _stored(flows: dict):
    """A predictor for ``window_aees(…, batch_size=n, limit=n)``, which sees each
    sequence as one batch, in order: it returns the stored flows of each sequence in turn."""
    it = iter(flows.values())
    return lambda x: next(it)


def lava(ctx: Context) -> StageOutput:
    from stllr.flow.dataset import collate
    from stllr.flow.metrics import eval_mask, upsample_flow

    cfg = ctx.cfg
    out = ctx.stage_dir("lava")
    data = flow_data.load(ctx)
    model = A.load_float_model(ctx.run_dir, cfg.train, data)[0]
    qnet = A.load_qnet(ctx.run_dir)
    n = cfg.lava.samples
    result: dict = {"enabled": cfg.lava.enabled, "windows_per_sequence": n}
    lava_flows = {}
    if cfg.lava.enabled:
        lava_flows, emu_flows, secs = _lava_fixed(qnet, data.test, n, cfg.lava.timeout_s)
        differ = sum(int((lava_flows[k] != emu_flows[k]).sum()) for k in lava_flows)
        per = {"lava": window_aees(_stored(lava_flows), data.test, n, limit=n),
               "int": window_aees(_stored(emu_flows), data.test, n, limit=n),
               "float": window_aees(float_predictor(model), data.test, n, limit=n)}  # fmt: skip
        t0 = time.perf_counter()
        dflow = _lava_float(model, next(iter(data.test.values()))[0], cfg.lava.timeout_s)
        result.update({
            "windows": sum(len(v) for v in lava_flows.values()),
            "fixed_differing_flows": differ,
            "fixed_seconds": secs,
            "sum_aee": {k: summed(v)[0] for k, v in per.items()},
            "window_aee": per,
            "float_max_abs_dflow": dflow,
            "float_seconds": time.perf_counter() - t0,
        })  # fmt: skip
        if differ:
            ctx.log(f"  WARNING: Lava fixed_pt flows differ from the emulator's in {differ} values")
        if dflow > FLOAT_FLOW_TOL:
            ctx.log(f"  WARNING: Lava floating_pt flows differ from torch by {dflow:.3g} px")
    # the pictured window of each sequence: the last one Lava ran
    pics = {}
    int_pred, float_pred = integer_predictor(qnet), float_predictor(model)
    for name, d in data.test.items():
        k = min(n, len(d)) - 1
        b = collate([d[k]])
        size = tuple(b.flow.shape[-2:])
        preds = {"float": float_pred(b.x), "int": int_pred(b.x)}
        if name in lava_flows:
            preds["lava"] = lava_flows[name][k : k + 1]
        for key, f in preds.items():
            pics[f"{name}__{key}"] = upsample_flow(f.double(), size)[0].numpy()
        pics[f"{name}__gt"] = torch.nan_to_num(b.flow[0].double()).numpy()
        pics[f"{name}__mask"] = eval_mask(b.flow, b.events)[0].numpy()
    np.savez(out / "flows.npz", **pics)
    atomic_json(result, out / "lava.json")
    if cfg.lava.enabled:
        s = result["sum_aee"]
        same = "flows equal the emulator's" if not differ else "flows NOT equal the emulator's"
        line = (f"Lava fixed_pt on {result['windows']} windows: {same} "
                f"({differ} differ); summed AEE Lava {s['lava']:.3f}, emulator {s['int']:.3f}, "
                f"float {s['float']:.3f}; floating_pt vs torch max |Δflow| "
                f"{result['float_max_abs_dflow']:.1e} px")  # fmt: skip
    else:
        line = "skipped (--skip-lava): no Lava run; pictures of float and 8-bit flows only"
    summary = {k: v for k, v in result.items() if k != "window_aee"}
    return StageOutput(summary, line, (A.LAVA_JSON, FLOWS))
