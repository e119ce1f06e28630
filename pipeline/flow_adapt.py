"""Stage ``adaptation`` of the flow pipeline: the deployed FSFN meets a shifted sensor and
its finest flow head learns on device (docs/flow.md §10–11).

The shifted condition (``flow.shift``, :mod:`pipeline.flow_config`) is the stand-in's
recordings seen by another sensor: same scenes, motion and gt (:mod:`pipeline.flow_data`).
The head ``flow1`` gets a ``LearningSpec`` (:func:`quantization.learning.attach_learning`,
calibrated on the original training windows, ``adaptation.lr`` in its units,
``flow.signal_max``); the first ``adaptation.samples`` shifted training windows (random
crops and flips drawn with ``adaptation.seed``) stream through the integer emulator,
``flow.adapt_epochs`` times, each giving the third factor at its last step: the 8-bit flow
error where the window has events (:func:`quantization.flow_eval.adapt_flow_head`).

Before and after, every test window of the shifted and of the original condition is
scored by the emulator; the change is paired per window (:mod:`pipeline.flow_stats`).
With Lava enabled, the first ``adaptation.lava_eval_samples`` windows of the stream are
replayed in Lava ``fixed_pt`` with the same integer signals, its learned head compared
with the emulator's after the same windows. Writes ``adaptation/adaptation.json`` and
``adaptation/weights.pt`` (the learned head's integer weights).
"""

from __future__ import annotations

import time

from pipeline import artefacts as A
from pipeline import flow_data
from pipeline.flow_deploy import integer_predictor, summed, window_aees
from pipeline.flow_stats import paired_aee_change, pooled
from pipeline.runner import Context, StageOutput
from stllr.run import atomic_json, atomic_save


def run(ctx: Context) -> StageOutput:
    from quantization.emulator import IntegerEmulator
    from quantization.flow_eval import FINEST, adapt_flow_head
    from quantization.learning import attach_learning
    from stllr.flow.dataset import collate

    cfg, a, f = ctx.cfg, ctx.cfg.adaptation, ctx.cfg.flow
    original, shifted = flow_data.load(ctx), flow_data.load(ctx, shifted=True)
    qnet = A.load_qnet(ctx.run_dir)
    plastic = attach_learning(qnet, [FINEST], flow_data.calibration(original), lr=a.lr,
                              signal_max=f.signal_max, seed=a.seed)  # fmt: skip
    bs = cfg.train.val_batch_size
    tests = {"shifted": shifted.test, "original": original.test}
    before = {c: window_aees(integer_predictor(plastic), t, bs) for c, t in tests.items()}
    shifted.train.reseed(a.seed)
    n = min(a.samples, len(shifted.train))
    windows = [collate([shifted.train[i]]) for i in range(n)]
    emu = IntegerEmulator(plastic)
    t0 = time.perf_counter()
    for _ in range(f.adapt_epochs):
        adapt_flow_head(emu, windows, event_mask=f.event_mask)
    seconds = time.perf_counter() - t0
    adapted = emu.to_qnetwork()
    after = {c: window_aees(integer_predictor(adapted), t, bs) for c, t in tests.items()}
    w0, w1 = plastic.node(FINEST).weight, emu.weights(FINEST)["w"]
    result: dict = {
        "shift": f.shift,
        "shift_setting": {"noise_rate": f.noise_rate} if f.shift == "sensor_noise"
        else {"contrast": f.contrast},
        "lr": a.lr, "signal_max": f.signal_max, "event_mask": f.event_mask,
        "windows": n, "epochs": f.adapt_epochs, "seconds": seconds,
        "weights_moved": int((w1 != w0).sum()), "of": int(w0.numel()),
        "conditions": {},
    }  # fmt: skip
    for c in tests:
        result["conditions"][c] = {
            "sum_aee_before": summed(before[c])[0],
            "sum_aee_after": summed(after[c])[0],
            "sequence_aee_before": summed(before[c])[1],
            "sequence_aee_after": summed(after[c])[1],
            "paired": paired_aee_change(pooled(before[c]), pooled(after[c])).as_dict(),
            "window_aee_before": before[c],
            "window_aee_after": after[c],
        }
    k = min(a.lava_eval_samples, n)
    if cfg.lava.enabled and k:
        from lava_models.flow import replay_flow_head

        rep = replay_flow_head(plastic, windows[:k], f.event_mask, cfg.lava.timeout_s)
        result["lava_replay"] = {
            "windows": k,
            "differing_weights": rep.differing,
            "weights_moved": rep.moved,
            "of": int(rep.before.size),
        }
    out = ctx.stage_dir("adaptation")
    atomic_save({"flow1": w1.clone(), "deployed": w0.clone()}, out / "weights.pt")
    atomic_json(result, out / "adaptation.json")
    s, o = result["conditions"]["shifted"], result["conditions"]["original"]
    ps, po = s["paired"], o["paired"]
    summary = {k: v for k, v in result.items() if k != "conditions"}
    summary["conditions"] = {c: {k: v for k, v in d.items() if not k.startswith("window_")}
                             for c, d in result["conditions"].items()}  # fmt: skip
    replay = result.get("lava_replay")
    line = (
        f"{f.shift}: summed AEE {s['sum_aee_before']:.3f} → {s['sum_aee_after']:.3f} "
        f"(window mean {ps['delta']:+.3f} ± {ps['se']:.3f} px, paired SE, n={ps['n']}); "
        f"original {o['sum_aee_before']:.3f} → {o['sum_aee_after']:.3f} "
        f"({po['delta']:+.3f} ± {po['se']:.3f} px); {n} windows × {f.adapt_epochs}"
        + ("" if replay is None else
           f"; Lava replay of {replay['windows']}: {replay['differing_weights']} weights differ")
    )  # fmt: skip
    return StageOutput(summary, line, (A.ADAPT_JSON, A.ADAPT_WEIGHTS))
