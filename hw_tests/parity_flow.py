"""FSFN (optical flow, docs/flow.md §10) in the parity table.

The flow model's row set is the classification models': the ``float`` and ``fixed``
groups run unchanged (:mod:`hw_tests.parity_checks`) on a view of the flow task that
looks like a classification task (:class:`hw_tests.parity_flow_view.FlowView`: each test
window's event frames with a dummy label, ``num_classes = 2`` flow components), with the
finest flow head ``flow1`` (a 1×1-conv graded readout) as the plastic node. In the float
group the torch reference injects L at the head's output, so its S-TLLR step is
``W ← W − lr·Σ_pixels L ⊗ P`` (P the head's input trace), which Lava ``floating_pt`` must
match within 1e-5; in the fixed group the head learns from 8-bit host signals in Lava
``fixed_pt`` and in the emulator, bit for bit.

The ``predictions`` group has its own flow version (:func:`flow_prediction_group`): a
batch of test windows through Lava ``fixed_pt`` and the batched emulator, every node's
output at every step and the final states bit-exact (``fixed_inference``), and the
prediction — the finest flow at the last step, in pixels — equal value for value
(``predictions``, detail: the AEE of both against the gt).

Model: FSFN with widths (2, 4, 4, 4) / (2, 2, 2) on a 16 × 16 crop of the default
mixed-motion stand-in (docs/flow.md §5), T = 10 bins, freshly initialised (seeded).
"""

from __future__ import annotations

import functools
import time

import numpy as np
import torch

from hw_tests.parity_setup import (
    TaskModel,
    activity,
    diff_count,
    flip_one_weight,
    make_row,
    small_model,
    task_config,
    weighted_nodes,
)
from lava_models.runner import run_lava
from quantization.emulator import IntegerEmulator
from quantization.network import SpikingLayer
from quantization.ptq import PTQConfig, quantize_input, quantize_model


def _torch_reference(model, frames, signals, lr):
    """The float64 torch FSFN on ``frames`` ``[N, T, C, H, W]`` (state reset per sample):
    every spiking layer's spikes and membrane ũ and the four flows at every step
    (``[N·T, ...]``), and the finest head's weights after online learning from
    ``signals`` ``[N, T, 2, h, w]``: ``W ← W − lr·Σ_pixels L[t] ⊗ P[t]``, P[t] =
    γ_o·P[t−1] + h[t] the head's input trace (reset per sample), written here as a loop."""
    from hw_tests.parity_references import STLLR_LAYERS, Recorder, weighted_modules
    from stllr.layers.stllr_layers import ConvTranspose2dSTLLR

    spiking = (*STLLR_LAYERS, ConvTranspose2dSTLLR)
    mods = {k: m for k, m in weighted_modules(model).items() if isinstance(m, spiking)}
    rec = Recorder(mods)
    rec.mem.update({k: [] for k, m in mods.items() if k not in rec.mem})  # the decoder's ũ too
    head = model.heads[0]
    head_in: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: head_in.append(args[0][0].clone()))
    flows = {f"flow{k}": [] for k in (1, 2, 3, 4)}
    try:
        with torch.no_grad():
            for sample in frames:
                model.reset_state()
                for x in sample:
                    for k, f in enumerate(model(x[None]), 1):
                        flows[f"flow{k}"].append(f[0].numpy().copy())
    finally:
        rec.remove()
        hook.remove()
    out, mem = rec.stacked()
    out.update({k: np.stack(v) for k, v in flows.items()})
    w = head.conv.weight.detach()[:, :, 0, 0].clone()  # [2, C]
    n, steps = frames.shape[:2]
    for i in range(n):
        p = torch.zeros_like(head_in[0])
        for t in range(steps):
            p = head.decay * p + head_in[i * steps + t]
            for y in range(p.shape[1]):
                for x in range(p.shape[2]):
                    w -= lr * torch.outer(torch.as_tensor(signals[i, t, :, y, x]), p[:, y, x])
    return out, mem, w.numpy()


def flow_float_group(tm: TaskModel, mode, tasks, corrupt: bool) -> list:
    """``float_spikes``, ``float_membrane`` (membranes and the four flows) and
    ``float_weights`` (the finest head's online learning) of FSFN in Lava ``floating_pt``
    against :func:`_torch_reference`; one Lava run without learning, one with."""
    import copy

    from hw_tests.parity_references import LR, TOL
    from hw_tests.parity_setup import task_frames
    from lava_models.float_exporter import float_network

    t0 = time.monotonic()
    view = tasks.get(task_config(tm))
    frames = task_frames(view, 0, mode.float_samples, mode.float_steps, mode.crop)
    model = small_model(tm, frames.shape[2:], 2)
    n, steps = frames.shape[:2]
    h, w = frames.shape[-2] // 2, frames.shape[-1] // 2
    signals = np.random.default_rng(7).normal(0.0, 1.0, (n, steps, 2, h, w))
    reference = model
    if corrupt:  # one weight of the torch reference's finest head moved by 1e-2
        reference = copy.deepcopy(model)
        with torch.no_grad():
            reference.heads[0].conv.weight.view(-1)[0] += 1e-2
    out, mem, w_ref = _torch_reference(reference, frames, signals, LR)
    res = run_lava(float_network(model), frames.numpy(), timeout_s=mode.timeout_s)
    learned = run_lava(float_network(model, lr=LR, plastic=("flow1",)), frames.numpy(),
                       {"flow1": signals}, timeout_s=mode.timeout_s)  # fmt: skip
    secs = time.monotonic() - t0
    spikes, dv = 0, 0.0
    for name, ref in out.items():
        got = res.outputs[name].reshape(ref.shape)
        if name in mem:
            spikes += diff_count(got, ref)
            dv = max(dv, float(np.abs(res.per_step[name]["v"].reshape(mem[name].shape)
                                      - mem[name]).max()))  # fmt: skip
        else:
            dv = max(dv, float(np.abs(got - ref).max()))
    w0 = model.heads[0].conv.weight.detach()[:, :, 0, 0].numpy()
    got_w = learned.weights("flow1")["w"][:, :, 0, 0]
    dw, moved = float(np.abs(got_w - w_ref).max()), float(np.abs(w_ref - w0).max())
    count = int(sum(out[k].sum() for k in mem))
    fired = sum(1 for k in mem if out[k].any())
    shape = "×".join(map(str, frames.shape[2:]))
    act = (f"{fired}/{len(mem)} spiking layers fire ({count} spikes), {n}×{steps} steps, in "
           f"{shape}; membranes and flow1…flow4")  # fmt: skip
    learn = f"plastic flow1: max |W moved| {moved:.3g} (Σ_pixels L ⊗ P, reference loop)"
    quiet = "" if count else "no spike in any layer"
    row = functools.partial(make_row, tm.key, source="host", seconds=secs)
    return [
        row("float_spikes", metric="differing spikes", value=spikes, bound=0, detail=act,
            vacuous=quiet),
        row("float_membrane", metric="max |Δ membrane/flow|", value=dv, bound=TOL, detail=act,
            vacuous=quiet),
        row("float_weights", metric="max |Δ W|", value=dw, bound=TOL, detail=learn,
            vacuous="" if moved > 1e3 * TOL else "the weights hardly moved"),
    ]  # fmt: skip


def flow_prediction_group(tm: TaskModel, mode, tasks, corrupt: bool) -> list:
    """``fixed_inference`` and ``predictions`` rows of FSFN (module doc)."""
    from quantization.flow_eval import FINEST
    from stllr.flow.dataset import collate
    from stllr.flow.metrics import sequence_score, window_errors

    t0 = time.monotonic()
    view = tasks.get(task_config(tm))
    n = mode.pred_samples
    batch = collate(view.windows[:n])
    x = batch.x.double()  # [T, N, C, H, W]
    model = small_model(tm, view.input_shape, 2).float()
    cal = torch.cat([w for w, _ in view.train[:8]], 0)[:, None].float()
    qnet, _ = quantize_model(model, [cal], PTQConfig(weight_bits=8))
    # corrupted: one head weight moved by 64 LSBs (1 LSB is rounded away by the head's
    # a_shift, so it would change the state but not the flows)
    ref_qnet = flip_one_weight(qnet, FINEST, lsb=64) if corrupt else qnet
    names = tuple(k.name for k in qnet.nodes)
    emu = IntegerEmulator(ref_qnet)
    ref = emu.run(x.float(), record=names)
    frames = quantize_input(x.float(), qnet.input_format).transpose(0, 1).numpy()
    res = run_lava(qnet, frames, timeout_s=mode.timeout_s)
    secs = time.monotonic() - t0
    steps = frames.shape[1]
    diff = 0
    for k in names:
        want = torch.stack(ref.records[k]).transpose(0, 1).reshape(n * steps, -1).numpy()
        diff += diff_count(res.outputs[k].reshape(n * steps, -1), want)
    for node in weighted_nodes(qnet):
        st = res.state[node.name]
        diff += diff_count(st["weights"], emu.weights(node.name)["w"].numpy())
        diff += diff_count(st["v"], emu.state[node.name].v[-1].numpy())
        if isinstance(node, SpikingLayer):
            diff += diff_count(st["u"], emu.state[node.name].u[-1].numpy())
    lsb = qnet.node(FINEST).out_lsb
    emu_flow = ref.records[FINEST][-1].double() * lsb  # [N, 2, h, w]
    lava_last = res.outputs[FINEST].reshape(n, steps, *emu_flow.shape[1:])[:, -1]
    lava_flow = torch.as_tensor(np.ascontiguousarray(lava_last)).double() * lsb
    wrong = int((lava_flow != emu_flow).sum())
    aee = [sequence_score("w", window_errors(f.to(batch.flow.dtype), batch.flow, batch.events)).aee
           for f in (lava_flow, emu_flow)]  # fmt: skip
    fired, nspk, _ = activity(qnet.nodes, res.outputs)
    shape = "×".join(map(str, frames.shape[2:]))
    which = f"fresh init (FSFN {' '.join(tm.small)})"
    det_inf = f"{fired}/{nspk} spiking layers fire, {n} windows × {steps} steps, in {shape}"
    det_pred = (f"finest flow at the last step, {emu_flow.numel()} values, max |flow| "
                f"{float(emu_flow.abs().max()):.3g} px; AEE vs gt: Lava {aee[0]:.3f}, "
                f"emulator {aee[1]:.3f}; {which}")  # fmt: skip
    row = functools.partial(make_row, tm.key, source="-", bound=0, seconds=secs)
    return [
        row("fixed_inference", metric="differing outputs/states", value=diff,
            detail=f"{det_inf}; {which}", vacuous="" if res.outputs[FINEST].any() else "flows 0"),
        row("predictions", metric="differing flow values", value=wrong, detail=det_pred),
    ]  # fmt: skip
