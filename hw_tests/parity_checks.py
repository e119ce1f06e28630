"""The check groups of the parity table (float, fixed, predictions, builtin), the keys
a complete table has and :func:`build_table`, which runs them.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from hw_tests.parity_flow import flow_float_group, flow_prediction_group
from hw_tests.parity_output import row_line
from hw_tests.parity_references import (
    LEARN_STEPS,
    LR,
    ROOT,
    TOL,
    conv_chain_qnet,
    dense_chain_qnet,
    emulate_delay1,
    run_builtin_with_deadline,
    torch_learning,
    weighted_modules,
)
from hw_tests.parity_setup import (
    BUILTIN_KEYS,
    FULL,
    GROUP_CHECKS,
    GROUPS,
    QUICK,
    TASK_MODELS,
    FixedCase,
    Mode,
    Row,
    SignalSource,
    TaskCache,
    TaskModel,
    activity,
    diff_count,
    flip_one_weight,
    make_row,
    signal_sources,
    small_model,
    task_config,
    task_frames,
    weighted_nodes,
)
from lava_models.float_exporter import float_network, float_output_shapes
from lava_models.runner import run_lava
from quantization.convert import FloatSpiking
from quantization.emulator import IntegerEmulator
from quantization.float_nodes import FloatAdaptive
from quantization.learning import attach_learning
from quantization.network import AdaptiveLayer, SpikingLayer
from quantization.ptq import PTQConfig, quantize_input, quantize_model
from stllr.checkpoints import load_pt
from stllr.errors import UserError

# --- check groups ----------------------------------------------------------------------


def _float_group(tm: TaskModel, mode: Mode, tasks: TaskCache, corrupt: bool) -> list[Row]:
    t0 = time.monotonic()
    data = tasks.get(task_config(tm))
    frames = task_frames(data, 0, mode.float_samples, mode.float_steps, mode.crop)
    model = small_model(tm, frames.shape[2:], data.num_classes)
    n, steps = frames.shape[:2]
    net = float_network(model, lr=LR, plastic=tm.plastic)
    shapes = float_output_shapes(net)
    rng = np.random.default_rng(7)
    signals = {k: rng.normal(0.0, 1.0, (n, steps, *shapes[k])) for k in tm.plastic}
    reference = model
    if corrupt:  # one weight of the torch reference moved by 1e-2 before Ŵ is taken
        reference = copy.deepcopy(model)
        with torch.no_grad():
            weighted_modules(reference)[tm.plastic[0]].weight.view(-1)[0] += 1e-2
    out, mem, weights = torch_learning(reference, frames, signals, tm.plastic, LR)
    res = run_lava(net, frames.numpy(), signals, timeout_s=mode.timeout_s)
    secs = time.monotonic() - t0
    specs = {s.name: s for s in net.nodes}
    spikes, dv = 0, 0.0
    for name, ref in out.items():
        got = res.outputs[name]
        if isinstance(specs[name], (FloatSpiking, FloatAdaptive)):
            spikes += diff_count(got, ref)
            dv = max(dv, float(np.abs(res.per_step[name]["v"] - mem[name]).max()))
        else:
            dv = max(dv, float(np.abs(got - ref).max()))
    fired, total, count = activity(net.nodes, res.outputs)
    dw, moved, frac = 0.0, 0.0, []
    for name in tm.plastic:
        for key, ref in weights[name].items():
            got = res.weights(name)[key]
            w0 = net.node(name).weight if key == "w" else net.node(name).weight_rec
            dw = max(dw, float(np.abs(got - ref).max()))
            m = np.abs(ref - w0.numpy())
            moved = max(moved, float(m.max()))
            frac.append(float((m > TOL).mean()))
    shape = "×".join(map(str, frames.shape[2:]))
    act = f"{fired}/{total} spiking layers fire ({count} spikes), {n}×{steps} steps, in {shape}"
    learn = (f"plastic {','.join(tm.plastic)}: max |W moved| {moved:.3g}, "
             f"{100 * min(frac):.0f}–{100 * max(frac):.0f} % of weights > 1e-5")  # fmt: skip
    quiet = "" if count else "no spike in any layer"
    still = "" if moved > 1e3 * TOL else "the weights hardly moved"
    row = functools.partial(make_row, tm.key, source="host", seconds=secs)
    return [
        row("float_spikes", metric="differing spikes", value=spikes, bound=0, detail=act,
            vacuous=quiet),
        row("float_membrane", metric="max |Δ membrane/logit|", value=dv, bound=TOL, detail=act,
            vacuous=quiet),
        row("float_weights", metric="max |Δ W|", value=dw, bound=TOL, detail=learn, vacuous=still),
    ]  # fmt: skip


def _fixed_case(tm: TaskModel, mode: Mode, tasks: TaskCache, corrupt: bool) -> FixedCase:
    """The plastic network and frames of the fixed check (the same for every source)."""
    data = tasks.get(task_config(tm))
    per = min(mode.learn_sample_steps, data.test[0][0].shape[0])
    n = math.ceil(LEARN_STEPS / per)
    x = task_frames(data, 0, n, per, mode.crop).float()  # [N, T, ...], N·T = 100 (or more)
    labels = [int(data.test[i][1]) for i in range(n)]
    model = small_model(tm, x.shape[2:], data.num_classes).float()
    cal = x.transpose(0, 1)  # [T, N, ...]
    qnet, _ = quantize_model(model, [cal], PTQConfig(weight_bits=8))
    qnet = attach_learning(qnet, list(tm.plastic), [cal], lr=LR * tm.fixed_lr_scale, seed=7)
    frames = quantize_input(x, qnet.input_format).numpy()
    ref_qnet = flip_one_weight(qnet, tm.plastic[0]) if corrupt else qnet
    return FixedCase(qnet, tm.plastic, frames, labels, seed=3, timeout_s=mode.timeout_s,
                     reference_qnet=ref_qnet)  # fmt: skip


def _fixed_group(tm, mode, tasks, source: SignalSource, corrupt: bool, cases: dict) -> list[Row]:
    t0 = time.monotonic()
    if tm not in cases:
        cases[tm] = _fixed_case(tm, mode, tasks, corrupt)
    case = cases[tm]
    qnet, (n, per) = case.qnet, case.frames.shape[:2]
    run = source.run(case)
    secs = time.monotonic() - t0
    ref, emu = run.reference, run.reference.emu
    keys = set(run.outputs) | set(ref.outputs)
    outs = sum(diff_count(run.outputs.get(k), ref.outputs.get(k)) for k in keys)
    states = weights = moved = total = 0
    for name in tm.plastic:
        node, st = qnet.node(name), run.state[name]
        for key, var, w0 in (
            ("w", "weights", node.weight),
            ("w_rec", "weight_rec", getattr(node, "weight_rec", None)),
        ):
            if w0 is None:
                continue
            weights += diff_count(st[var], emu.weights(name)[key].numpy())
            moved += int((st[var] != w0.numpy()).sum())
            total += w0.numel()
        learn = emu.state[name].traces
        pairs = [(st["p"], learn.p[0])]
        if isinstance(node, SpikingLayer):
            pairs += [(st["q"], learn.q[0]), (st["psi"], emu.state[name].psi[0]),
                      (st["v"], emu.state[name].v[0]), (st["u"], emu.state[name].u[0])]  # fmt: skip
            if node.weight_rec is not None:
                pairs.append((st["r"], learn.r[0]))
        elif isinstance(node, AdaptiveLayer):  # v, the adaptation ω and h besides the traces
            a = emu.state[name]
            pairs += [(st["q"], learn.q[0]), (st["psi"], a.psi[0]), (st["v"], a.v[0]),
                      (st["w"], a.w[0]), (st["h"], a.h[0])]  # fmt: skip
            if node.weight_rec is not None:
                pairs.append((st["r"], learn.r[0]))
        else:
            pairs.append((st["v"], emu.state[name].v[0]))
        states += sum(diff_count(a, b.numpy()) for a, b in pairs)
    fired, nspk, count = activity(qnet.nodes, run.outputs)
    extra = sorted(k for k in keys if k not in {m.name for m in qnet.nodes})
    act = f"{fired}/{nspk} spiking layers fire ({count} spikes), {n}×{per} steps with reset"
    if extra:
        act += f"; also compared: {', '.join(extra)}"
    det_s = f"final traces and membranes of {','.join(tm.plastic)}"
    det_w = f"{moved} of {total} plastic weights moved ({','.join(tm.plastic)})"
    row = functools.partial(make_row, tm.key, source=source.name, bound=0, seconds=secs)
    return [
        row("fixed_outputs", metric="differing outputs", value=outs, detail=act,
            vacuous="" if count else "no spike in any layer"),
        row("fixed_states", metric="differing P,Q,R,Ψ,v,u", value=states, detail=det_s),
        row("fixed_weights", metric="differing weights", value=weights, detail=det_w,
            vacuous="" if moved else "no weight moved"),
    ]  # fmt: skip


def find_checkpoint(runs_dir: Path, task: str, arch: str, exclude: Path | None = None,
                    neuron: str | None = None):  # fmt: skip
    """The ``best.pt`` under ``runs_dir`` trained on ``task`` with ``arch`` (and ``neuron``,
    if given: the SHD RSNN runs LIF, CuLIF or AdLIF neurons) and the highest recorded test
    accuracy (ties: first path), or None."""
    found = []
    for path in sorted(Path(runs_dir).rglob("best.pt")):
        if exclude is not None and Path(exclude).resolve() in path.resolve().parents:
            continue
        cfg = None
        for folder in (path.parent, path.parent.parent):
            if (folder / "config.json").is_file():
                try:
                    cfg = json.loads((folder / "config.json").read_text())
                except (OSError, ValueError):
                    cfg = None
                break
        if cfg is None or cfg.get("task") != task or cfg.get("arch") != arch:
            continue
        if neuron is not None and cfg.get("neuron", "lif") != neuron:
            continue
        try:
            ckpt = load_pt(path, keys=("model", "config"))
        except UserError:  # an unreadable, unsafe or foreign file is not a candidate
            continue
        found.append((-float(ckpt.get("test_acc") or 0.0), str(path), ckpt))
    if not found:
        return None
    _, path, ckpt = min(found, key=lambda f: f[:2])
    return Path(path), ckpt


def _checkpoint_model(ckpt: dict, path: Path, tasks: TaskCache):
    from stllr.checkpoints import load_model_state, stored_config
    from stllr.models.factory import build_model

    cfg = stored_config(ckpt, path)
    data = tasks.get(cfg)
    model, _ = build_model(cfg, data.input_shape, data.num_classes)
    load_model_state(model, ckpt, path, "its config")
    return model.eval(), data


def _prediction_group(tm, mode, tasks, runs_dir, exclude, corrupt: bool) -> list[Row]:
    from quantization.report import calibration_batches

    t0 = time.monotonic()
    neuron = task_config(tm).neuron
    found = find_checkpoint(runs_dir, tm.task, tm.arch, exclude, neuron) if runs_dir else None
    if found is not None:
        path, ckpt = found
        model, data = _checkpoint_model(ckpt, path, tasks)
        try:
            path = path.resolve().relative_to(ROOT)
        except ValueError:
            pass
        acc = ckpt.get("test_acc")
        which = f"checkpoint {path} ({type(model).__name__}, test acc {acc})"
    else:
        data = tasks.get(task_config(tm))
        model = small_model(tm, data.input_shape, data.num_classes).float()
        which = f"fresh init ({type(model).__name__} {' '.join(tm.small)}, gains ×{tm.gain:g})"
    x = task_frames(data, 0, mode.pred_samples, None, None).float()
    if mode.pred_steps is not None:
        x = x[:, : mode.pred_steps]
    labels = [int(data.test[i][1]) for i in range(mode.pred_samples)]
    cal = calibration_batches(data.train, 1, 8, seed=0)
    qnet, _ = quantize_model(model, cal, PTQConfig(weight_bits=8))
    ref_qnet = flip_one_weight(qnet, weighted_nodes(qnet)[-1].name) if corrupt else qnet
    names = tuple(k.name for k in qnet.nodes)
    emu = IntegerEmulator(ref_qnet)
    ref = emu.run(x.transpose(0, 1), record=names)  # batched, the toolkit's evaluation
    frames = quantize_input(x, qnet.input_format).numpy()
    res = run_lava(qnet, frames, timeout_s=mode.timeout_s)
    secs = time.monotonic() - t0
    n, steps = frames.shape[:2]
    diff = 0
    for k in names:
        want = torch.stack(ref.records[k]).transpose(0, 1).reshape(n * steps, -1).numpy()
        diff += diff_count(res.outputs[k].reshape(n * steps, -1), want)
    for node in weighted_nodes(qnet):
        st, w = res.state[node.name], emu.weights(node.name)
        diff += diff_count(st["weights"], w["w"].numpy())
        if isinstance(node, SpikingLayer):
            diff += diff_count(st["v"], emu.state[node.name].v[-1].numpy())
            diff += diff_count(st["u"], emu.state[node.name].u[-1].numpy())
        elif isinstance(node, AdaptiveLayer):  # the voltage, adaptation and h
            for var in ("v", "w", "h"):
                diff += diff_count(st[var], getattr(emu.state[node.name], var)[-1].numpy())
        else:
            diff += diff_count(st["v"], emu.state[node.name].v[-1].numpy())
    last = qnet.nodes[-1].name
    lava_pred = res.outputs[last].reshape(n, steps, -1).sum(1).argmax(1)
    emu_pred = ref.predictions().numpy()
    wrong = int((lava_pred != emu_pred).sum())
    fired, nspk, count = activity(qnet.nodes, res.outputs)
    shape = "×".join(map(str, frames.shape[2:]))
    det_inf = f"{fired}/{nspk} spiking layers fire, {n} samples × {steps} steps, in {shape}"
    correct = int((lava_pred == np.asarray(labels)).sum())
    det_pred = (f"Lava {lava_pred.tolist()}, emulator {emu_pred.tolist()}, labels {labels} "
                f"({correct}/{n} correct); {which}")  # fmt: skip
    row = functools.partial(make_row, tm.key, source="-", bound=0, seconds=secs)
    return [
        row("fixed_inference", metric="differing outputs/states", value=diff,
            detail=f"{det_inf}; {which}", vacuous="" if res.outputs[last].any() else "logits 0"),
        row("predictions", metric="differing predictions", value=wrong, detail=det_pred),
    ]  # fmt: skip


def _builtin_rows(mode: Mode, corrupt: bool, checks: Iterable[str]) -> list[Row]:
    cases = {"builtin_dense": lambda: dense_chain_qnet("3layer", 2, 8),
             "builtin_conv": lambda: conv_chain_qnet("pad1-stride2-fc", 0, 8)}  # fmt: skip
    rows = []
    for check in checks:
        key = BUILTIN_KEYS[check]
        t0 = time.monotonic()
        try:
            qnet, x = cases[check]()
            ref_qnet = flip_one_weight(qnet, qnet.nodes[0].name) if corrupt else qnet
            lava = run_builtin_with_deadline(qnet, x, mode.timeout_s)
            ours = emulate_delay1(ref_qnet, x)
            diff = sum(diff_count(ours[n.name][q], lava[n.name][q])
                       for n in qnet.nodes for q in ("s", "u", "v"))  # fmt: skip
            fired = sum(1 for n in qnet.nodes if lava[n.name]["s"].any())
            layers = " → ".join(f"{n.name}({n.kind})" for n in qnet.nodes)
            det = (f"{layers}, 8-bit, hard reset, {x.shape[0]} steps; s,u,v every step; "
                   f"{fired}/{len(qnet.nodes)} layers fire")  # fmt: skip
            rows.append(make_row(key, check, "-", "differing s,u,v", diff, 0,
                                 time.monotonic() - t0, det,
                                 "" if fired else "no spike in any layer"))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 — a failing check is a failing row
            rows.append(_error_row(key, check, "-", time.monotonic() - t0, exc))
    return rows


def _error_row(key, check, source, seconds, exc) -> Row:
    """A failing row for a check that raised: the message's first and last line (a
    ``LavaRunError`` carries the failing process's traceback in between)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()] or [""]
    msg = f"{type(exc).__name__}: {lines[0]}" + (f" … {lines[-1]}" if len(lines) > 1 else "")
    return make_row(key, check, source, "error", None, 0, seconds, msg[:500])


def expected_keys(groups: Iterable[str] = GROUPS, task_models=TASK_MODELS,
                  mode: str = "full") -> list[tuple]:  # fmt: skip
    """(task, model, check, source) of every row a table of these groups must contain."""
    keys = []
    for g in groups:
        if g == "builtin":
            keys += [(*BUILTIN_KEYS[c], c, "-") for c in GROUP_CHECKS[g]]
            continue
        for tm in task_models:
            if g == "fixed":
                sources = [s.name for s in signal_sources(mode) if s.applies(tm, mode)]
            else:
                sources = ["host"] if g == "float" else ["-"]
            keys += [(*tm.key, c, s) for s in sources for c in GROUP_CHECKS[g]]
    return keys


def build_table(
    quick: bool = False,
    *,
    runs_dir: Path | None = ROOT / "runs",
    exclude: Path | None = None,
    groups: Iterable[str] = GROUPS,
    task_models: Iterable[TaskModel] = TASK_MODELS,
    corrupt: Iterable[str] = (),
    log: Callable[[str], None] = lambda s: None,
) -> list[Row]:
    """Run the check ``groups`` for ``task_models``; ``corrupt`` names groups whose
    reference is deliberately corrupted (one weight moved) to show the table can fail."""
    from lava_models.runtime import import_lava

    import_lava()  # load_task uses tqdm: fix the fork start method first
    torch.set_num_threads(1)
    mode = QUICK if quick else FULL
    groups, corrupt, task_models = list(groups), set(corrupt), list(task_models)
    unknown = (set(groups) | corrupt) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown check groups {sorted(unknown)}; known: {list(GROUPS)}")
    tasks, cases = TaskCache(), {}
    rows: list[Row] = []
    for tm in task_models:
        jobs = []
        if "float" in groups:
            group = flow_float_group if tm.arch == "fsfn" else _float_group
            jobs.append(("float", "host", lambda tm=tm, group=group: group(
                tm, mode, tasks, "float" in corrupt)))  # fmt: skip
        if "fixed" in groups:
            for src in signal_sources(mode.name):
                if src.applies(tm, mode.name):
                    jobs.append(("fixed", src.name, lambda tm=tm, src=src: _fixed_group(
                        tm, mode, tasks, src, "fixed" in corrupt, cases)))  # fmt: skip
        if "predictions" in groups and tm.arch == "fsfn":  # flows, not classes
            jobs.append(("predictions", "-", lambda tm=tm: flow_prediction_group(
                tm, mode, tasks, "predictions" in corrupt)))  # fmt: skip
        elif "predictions" in groups:
            jobs.append(("predictions", "-", lambda tm=tm: _prediction_group(
                tm, mode, tasks, runs_dir, exclude, "predictions" in corrupt)))  # fmt: skip
        for group, source, job in jobs:
            t0 = time.monotonic()
            try:
                new = job()
            except Exception as exc:  # noqa: BLE001 — a failing check is a failing row
                new = [_error_row(tm.key, c, source, time.monotonic() - t0, exc)
                       for c in GROUP_CHECKS[group]]  # fmt: skip
            for r in new:
                log(row_line(r))
            rows += new
    if "builtin" in groups:
        new = _builtin_rows(mode, "builtin" in corrupt, GROUP_CHECKS["builtin"])
        for r in new:
            log(row_line(r))
        rows += new
    return rows
