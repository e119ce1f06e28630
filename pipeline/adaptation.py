"""Stage ``adaptation``: the deployed network meets a shifted condition and adapts on device.

The scenario (:mod:`pipeline.shift`: a noisy sensor, sensor read-out noise, a held-out
user) says which labelled samples stream in and which held-out samples of the shifted
condition measure the network. The stream arrives one sample at a time; the network
learns from it with only its third-factor port (:mod:`pipeline.learners`: the host sends
``softmax − onehot`` of each step's logits during the last ``window`` steps; to a
first-spike network's spiking output layer, the first-spike teaching signal of the output
spikes so far, :mod:`stllr.functional.first_spike_teacher`). Accuracy
is measured on the scenario's held-out samples before, during (the learning curve, every
``eval_every`` samples) and after, and on samples of the original condition after (what
the adaptation cost there).

The host's stabilising mechanisms (:mod:`pipeline.adapt_mechanisms`: a decaying rate,
an error gate, replay of original-condition samples, consolidation toward the deployed
weights, pseudo-labels for a label-scarce stream) act on the stream and on the signals
(:mod:`pipeline.adapt_loop`). Every accuracy change is a paired change on the same
samples (:mod:`pipeline.adapt_stats`: Δ ± paired SE, samples gained and lost), for the
shifted and for the original condition, and both learning curves are recorded.

Three implementations of the same adaptation:

* **emulator** — :class:`~pipeline.learners.DeviceLearner`: integer on-device S-TLLR;
* **float** — :class:`~pipeline.learners.FloatLearner`: S-TLLR updates of Ŵ in float;
* **Lava** — (:mod:`pipeline.adapt_lava`) the same stream, or with
  ``lava_stream_samples = K`` its first ``K`` samples, and the emulator's recorded integer
  signals fed to :func:`lava_models.runner.run_lava` (host signals are computed from
  outputs that Lava reproduces bit for bit, so they are Lava's own). Checked: every node's
  output at every step and the learned weights equal the emulator's (after the same
  samples). Lava then runs the first ``lava_eval_samples`` shifted test samples with the
  weights *it* learned (the emulator's final weights when it learned only ``K``), and with
  the deployed weights (before).

The stream's frames are zero-padded to one length (Lava resets every ``T`` steps), so the
window counts from the end of the padded sample, as in training; the evaluation samples
are padded to their own common length, and every accuracy (emulator, float, Lava) scores
each evaluation sample over its own steps only (:mod:`stllr.padding`), as if run alone.

Writes ``adaptation/adaptation.json`` (accuracies, curves, parity, settings) and
``adaptation/weights.pt`` (plastic weights in float units: float, fixed point as deployed,
after on-device learning, after float learning; for the report's histograms).
"""

from __future__ import annotations

import dataclasses
import io
import time

import torch

from pipeline import artefacts as A
from pipeline.adapt_device import accuracy as _acc
from pipeline.adapt_device import prepare, run_device
from pipeline.adapt_lava import lava_line, lava_part
from pipeline.adapt_loop import learn_stream
from pipeline.adapt_mechanisms import Mechanisms
from pipeline.adapt_stats import gained_lost, mean_std, paired_change
from pipeline.first_spike import adaptation_teacher
from pipeline.float_fs_learner import FloatFSLearner
from pipeline.float_learner import FloatLearner, module_name
from pipeline.runner import Context, StageOutput
from pipeline.shift import make_shift
from stllr.devices import resolve_device
from stllr.errors import UserError
from stllr.progress import bar as progress_bar
from stllr.run import atomic_json, atomic_write_bytes

_SIGNAL_TEXT = {
    "host": "host-computed error",
    "dfa": "on-device error + DFA",
    "sdfa": "on-device error + sign-DFA",
}


def _over_seeds(a, runs) -> dict:
    """The emulator's runs over seeds ``a.seed, a.seed + 1, …``: per seed the paired changes
    and curves, and mean ± std of the changes (std 0 for one run)."""
    out = {"seeds": [a.seed + r for r in range(len(runs))]}
    for cond in ("shifted", "original"):
        changes = [getattr(d, cond) for d in runs]
        out[cond] = [c.as_dict() for c in changes]
        for key in ("delta", "se", "after"):
            m, sd = mean_std([getattr(c, key) for c in changes])
            out[f"{cond}_{key}_mean"], out[f"{cond}_{key}_std"] = m, sd
    out["curves_shifted"] = [d.curves.shifted for d in runs]
    out["curves_original"] = [d.curves.original for d in runs]
    return out


def _float_weights(qnet, names) -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for name in names:
        n = qnet.node(name)
        d = {"w": n.weight.double() * n.weight_lsb}
        if getattr(n, "weight_rec", None) is not None:
            d["w_rec"] = n.weight_rec.double() * n.weight_lsb
        out[name] = d
    return out


def _twin_weights(model, names) -> dict[str, dict[str, torch.Tensor]]:
    """Copies, float64 on the CPU, of the plastic Ŵ of ``model`` (on any device)."""
    snap = lambda w: w.detach().to("cpu", torch.float64, copy=True)  # noqa: E731
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        m = modules[module_name(model, name)]
        if hasattr(m, "standardized_weights"):
            w, w_rec = m.standardized_weights()
            out[name] = {"w": snap(w), "w_rec": snap(w_rec)}
        elif hasattr(m, "standardized_weight"):
            out[name] = {"w": snap(m.standardized_weight())}
        elif hasattr(m, "effective_weights"):
            out[name] = {"w": snap(m.effective_weights()[0])}
        elif name == "fc" and isinstance(getattr(model, "rec", None), torch.nn.Linear):
            # FSConvNet's recurrent FC layer: W (self.fc) and W_rec (self.rec)
            out[name] = {"w": snap(m.weight), "w_rec": snap(model.rec.weight)}
        else:  # a plain nn.Linear head
            out[name] = {"w": snap(m.weight)}
    return out


def run(ctx: Context) -> StageOutput:
    a, train = ctx.cfg.adaptation, ctx.cfg.train
    from pipeline.deployable import is_first_spike

    fs = is_first_spike(train)
    if fs and a.signal != "host":
        raise UserError(
            f"{ctx.cfg.source or 'pipeline config'}: adaptation.signal = {a.signal!r} with "
            'readout first_spike: its teaching signal is host-computed; expected signal = "host"'
        )
    data = ctx.data
    qnet = A.load_qnet(ctx.run_dir)
    model, _ = A.load_float_model(ctx.run_dir, train, data)
    shift = make_shift(a)
    mech = Mechanisms.from_section(a)
    layers = tuple(a.layers) or (qnet.nodes[-1].name,)  # empty: the output node alone

    prep = prepare(a, data, qnet, mech)
    teacher = adaptation_teacher(train, int(prep.x_all.shape[0])) if fs else None
    # the stream's signals and outputs are recorded only for Lava (they are large), and only
    # for the samples Lava learns (adaptation.lava_stream_samples)
    dev = run_device(ctx, a, qnet, layers, prep, mech, ctx.cfg.lava.enabled, teacher)
    xe, ye, le, xc, yc, lc = prep.xe, prep.ye, prep.le, prep.xc, prep.yc, prep.lc
    schedule, x_all, y_all = prep.schedule, prep.x_all, prep.y_all
    n_stream, n_eval, n_replay, steps = prep.n_stream, prep.n_eval, prep.n_replay, prep.steps
    plastic, plan, learned = dev.plastic, dev.plan, dev.learned
    emu_shift, emu_orig, curves_emu = dev.shifted, dev.original, dev.curves
    emu_seconds = dev.seconds
    ctx.log(
        f"  emulator: shifted {emu_shift.before:.1f}% → {emu_shift.after:.1f}% "
        f"({emu_shift.delta:+.1f} ± {emu_shift.se:.1f}); original {emu_orig.before:.1f}% → "
        f"{emu_orig.after:.1f}% ({emu_orig.delta:+.1f} ± {emu_orig.se:.1f}) [{emu_seconds:.0f} s]"
    )

    # --- the same adaptation with further seeds (emulator): the spread --------------------
    runs = [dev]
    for r in range(1, a.repeats):
        a_r = dataclasses.replace(a, seed=a.seed + r)
        prep_r = prepare(a_r, data, qnet, mech)
        dev_r = run_device(ctx, a_r, qnet, layers, prep_r, mech, False, teacher)
        ctx.log(
            f"  emulator, seed {a_r.seed}: shifted {dev_r.shifted.delta:+.1f} ± "
            f"{dev_r.shifted.se:.1f}; original {dev_r.original.delta:+.1f} ± "
            f"{dev_r.original.se:.1f} [{dev_r.seconds:.0f} s]"
        )
        runs.append(dev_r)

    # --- the same adaptation in float ---------------------------------------------------
    fl = None
    if a.compare_float:
        fl, fl_shift, fl_orig, curves_float, float_seconds = _float_part(
            ctx, model, layers, plan, x_all, y_all, schedule, mech, xe, ye, le, xc, yc, lc,
            teacher, plastic.node(layers[-1]).learning.pre_shift,
        )  # fmt: skip

    # --- Lava: the same stream and signals, then before/after on held-out samples -------
    lava = None
    if ctx.cfg.lava.enabled:
        lava = lava_part(ctx, qnet, dev, prep, layers, fs)

    # --- results -------------------------------------------------------------------------
    names = list(layers)
    weights = {
        "float_before": _twin_weights(model, names),
        "fixed_before": _float_weights(qnet, names),
        "device_after": _float_weights(learned, names),
    }
    if fl is not None:
        weights["float_after"] = _twin_weights(fl.model, names)
    buf = io.BytesIO()
    torch.save(weights, buf)
    out = ctx.stage_dir("adaptation")
    atomic_write_bytes(out / "weights.pt", buf.getvalue())

    def n_changed(name: str) -> int:  # W and, of a recurrent layer, W_rec
        a, b = learned.node(name), qnet.node(name)
        n = int((a.weight != b.weight).sum())
        if getattr(b, "weight_rec", None) is not None:
            n += int((a.weight_rec != b.weight_rec).sum())
        return n

    changed = {name: n_changed(name) for name in names}

    def acc_block(sh, orig):
        return {
            "before": sh.before,
            "after": sh.after,
            "clean_before": orig.before,
            "clean_after": orig.after,
            "shifted": sh.as_dict(),
            "original": orig.as_dict(),
        }

    result = {
        "scenario": a.scenario,
        "description": shift.describe(),
        "mechanisms": mech.describe(),
        "settings": {
            "layers": names,
            "signal": a.signal,
            "first_spike_teacher": None if teacher is None else teacher._asdict(),
            "lr": a.lr,
            "window": a.window,
            "steps": steps,
            "stream_steps": int(x_all.shape[0]),
            "stream_samples": n_stream,
            "replay_samples": n_replay,
            "labelled_samples": a.labelled or n_stream,
            "learned_steps": dev.learned_steps,
            "eval_samples": n_eval,
            "eval_set": prep.eval_name,
            "clean_set": prep.clean_name,
            "mechanisms": dataclasses.asdict(mech),
        },
        "accuracy": {
            "emulator": acc_block(emu_shift, emu_orig),
            "float": None if fl is None else acc_block(fl_shift, fl_orig),
            "lava": None if lava is None else lava["accuracy"],
        },
        "curves": {
            "samples": curves_emu.samples,
            "emulator": curves_emu.shifted,
            "float": None if fl is None else curves_float.shifted,
            "emulator_original": curves_emu.original,
            "float_original": None if fl is None else curves_float.original,
        },
        "seeds": _over_seeds(a, runs),
        "weights_changed": changed,
        "lava": lava,
        "seconds": {"emulator": emu_seconds, "float": None if fl is None else float_seconds},
    }
    atomic_json(result, out / "adaptation.json")
    acc = result["accuracy"]
    summary = {
        "description": shift.describe(),
        "accuracy": acc,
        "lava_weights_equal": None if lava is None else lava["weights_equal"],
        "lava_outputs_bit_exact": None if lava is None else lava["outputs_bit_exact"],
    }
    if lava is not None:  # what the two checks cover, and whose weights Lava scored after
        for key in ("stream_samples_learned", "stream_samples_total", "after_weights"):
            summary[f"lava_{key}"] = lava[key]
    signal_text = "host-computed first-spike teaching signal" if fs else _SIGNAL_TEXT[a.signal]
    line = (
        f"{shift.describe()}; {n_stream} labelled samples, third factor only "
        f"({signal_text}), {mech.describe()}: {gained_lost(emu_shift, emu_orig)} "
        "(emulator)"
    )
    if fl is not None:
        line += (
            f"; float {fl_shift.delta:+.1f} ± {fl_shift.se:.1f} shifted, "
            f"{fl_orig.delta:+.1f} ± {fl_orig.se:.1f} original"
        )
    if lava is not None:
        line += lava_line(lava)
    return StageOutput(summary, line, (A.ADAPT_JSON, A.ADAPT_WEIGHTS))


def _float_part(
    ctx,
    model,
    layers,
    plan,
    x_all,
    y_all,
    schedule,
    mech,
    xe,
    ye,
    le,
    xc,
    yc,
    lc,
    teacher,
    pre_shift=(),
):
    """The same stream learned by the float twin: (learner, shifted and original
    :class:`PairedChange`, curves, seconds). A first-spike network (``teacher``) learns
    with :class:`~pipeline.float_fs_learner.FloatFSLearner`; the readout's per-input step
    shifts ``pre_shift`` are the device's."""
    a, train = ctx.cfg.adaptation, ctx.cfg.train
    device = resolve_device(train.device, "train.device")
    if teacher is None:
        fl = FloatLearner(model, layers, a.lr, a.window, plan, device, pre_shift)
    else:
        fl = FloatFSLearner(model, layers, a.lr, a.window, teacher, device)
    w0_float = fl.plastic_copy()
    pred_fe0, pred_fc0 = fl.predict(xe, le), fl.predict(xc, lc)

    def score_float(net):
        return _acc(net.predict(xe, le), ye), _acc(net.predict(xc, lc), yc)

    t0 = time.time()
    curves_float = learn_stream(
        fl, x_all, y_all, schedule, mech, a.eval_every, score_float, lambda: fl,
        consolidate=lambda j: fl.consolidate(w0_float, mech.consolidate_shift),
        progress=lambda r: progress_bar(
            r, show=ctx.progress, desc="S-TLLR learning (float)", unit="sample"
        ),
    ).curves  # fmt: skip
    float_seconds = time.time() - t0
    fl_shift = paired_change(pred_fe0, fl.predict(xe, le), ye)
    fl_orig = paired_change(pred_fc0, fl.predict(xc, lc), yc)
    ctx.log(
        f"  float: shifted {fl_shift.before:.1f}% → {fl_shift.after:.1f}% "
        f"({fl_shift.delta:+.1f} ± {fl_shift.se:.1f}); original {fl_orig.before:.1f}% → "
        f"{fl_orig.after:.1f}% ({fl_orig.delta:+.1f} ± {fl_orig.se:.1f}) [{float_seconds:.0f} s]"
    )
    return fl, fl_shift, fl_orig, curves_float, float_seconds
