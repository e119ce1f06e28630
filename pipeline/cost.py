"""Stage ``cost``: neuromorphic cost metrics of the deployed network, per layer (NeuroBench).

Measured with the integer emulator on the test split, counting only the real time steps
of every sample (``t < T_i``; batches are zero-padded), averaged per sample. The
definitions follow NeuroBench (Yik et al., "NeuroBench: a framework for benchmarking
neuromorphic computing algorithms and systems", Nature Communications 2025;
neurobench.readthedocs.io, *metrics*):

* **Synaptic operations** per sample: for every connection (a layer's input, and its
  recurrent input ``s[t−1]``) and every time step, ``Σ_j [x_j ≠ 0] · nnz(W[:, j])`` —
  the binarised input times the binarised weights, i.e. nonzero activations × their
  nonzero fan-out (*effective* operations; a conv layer: the same with the binarised
  kernel). They are *accumulates* (ACs) where the input is binary (spikes) and
  *multiply-accumulates* (MACs) where it is not (e.g. event counts per bin). *Dense*
  operations count every activation and every connection (``in × out`` per step).
* **Activation sparsity**: ``1 − spikes / (neurons · time steps)`` of every spiking
  layer, over all samples; the network value pools all spiking layers (NeuroBench:
  0 = every neuron always active, 1 = no neuron ever active).
* **Footprint**: bytes to hold the parameters at their deployed widths — weight
  mantissas (``weight_bits`` each), bias mantissas (13 bits), per-layer threshold (17) and
  decay (12) — as NeuroBench's model footprint counts parameters at their precision;
  neuron state (v and u, 24 bits each; a readout's 24-bit logit) is listed beside it. An
  AdLIF layer adds per neuron its decays dv, dw (12 each), couplings ka (25) and kb (24),
  and the states ω and h (24 each).
  The float model's 32-bit parameter bytes are given for comparison.
* **Connection sparsity**: fraction of zero weight mantissas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline import artefacts as A
from pipeline.runner import Context, StageOutput
from stllr.progress import bar as progress_bar
from stllr.run import atomic_json

BIAS_BITS, VTH_BITS, DV_BITS, STATE_BITS = 13, 17, 12, 24
KA_BITS = 25  # an AdLIF layer's voltage coupling (docs/fixed_point.md, "Adaptive layers")


def _ops(n, x: torch.Tensor, w: torch.Tensor, dense: bool) -> torch.Tensor:
    """Per-sample operations of one connection at one step ``[B]`` (effective or dense)."""
    xb = torch.ones_like(x, dtype=torch.float64) if dense else (x != 0).double()
    wb = torch.ones_like(w, dtype=torch.float64) if dense else (w != 0).double()
    if getattr(n, "kind", "dense") == "conv" and w.dim() == 4:
        y = F.conv2d(xb, wb, None, n.stride, n.padding, n.dilation, n.groups)
        return y.flatten(1).sum(1)
    return xb.flatten(1) @ wb.sum(0)


def measure(qnet, batches, progress: bool = False, total: int | None = None) -> dict:
    """Per-layer synaptic operations and activation sparsity over ``(x [T, B, ...], lengths
    [B])`` batches (float frames, quantized with the network's input format)."""
    from quantization.emulator import IntegerEmulator
    from quantization.network import SPIKING_NODES, Readout
    from quantization.ptq import quantize_input

    emu = IntegerEmulator(qnet)
    weighted = [n for n in qnet.nodes if isinstance(n, (*SPIKING_NODES, Readout))]
    conns = {}
    for n in weighted:
        conns[(n.name, "w")] = {
            "layer": n.name,
            "source": n.inputs[0],
            "binary": True,
            "effective": 0.0,
            "dense": 0.0,
        }
        if getattr(n, "weight_rec", None) is not None:
            conns[(n.name, "w_rec")] = {
                "layer": n.name,
                "source": f"{n.name} (t−1)",
                "binary": True,
                "effective": 0.0,
                "dense": 0.0,
            }
    spiking = [n.name for n in qnet.nodes if isinstance(n, SPIKING_NODES)]
    spikes = dict.fromkeys(spiking, 0.0)
    neuron_steps = dict.fromkeys(spiking, 0.0)
    samples = 0
    input_nonzero = input_total = 0.0
    bar = progress_bar(show=progress, total=total, desc="cost metrics", unit="batch", leave=False)
    for x, lengths in batches:
        xi = quantize_input(x, qnet.input_format)
        emu.reset()
        prev = {}
        for t in range(xi.shape[0]):
            valid = (lengths > t).double()
            outs = emu.forward(xi[t])
            vin = valid.view(-1, *([1] * (xi.dim() - 2)))
            input_nonzero += float(((xi[t] != 0).double() * vin).sum())
            input_total += float(vin.sum()) * xi[t][0].numel()
            for n in weighted:
                w = emu.weights(n.name)
                src = outs[n.inputs[0]]
                c = conns[(n.name, "w")]
                c["binary"] &= bool(((src == 0) | (src == 1)).all())
                c["effective"] += float((_ops(n, src, w["w"], False) * valid).sum())
                c["dense"] += float((_ops(n, src, w["w"], True) * valid).sum())
                if "w_rec" in w:
                    c = conns[(n.name, "w_rec")]
                    s_prev = prev.get(n.name, torch.zeros_like(outs[n.name]))
                    c["effective"] += float((_ops(n, s_prev, w["w_rec"], False) * valid).sum())
                    c["dense"] += float((_ops(n, s_prev, w["w_rec"], True) * valid).sum())
            for name in spiking:
                s = outs[name].flatten(1).double()
                spikes[name] += float((s.sum(1) * valid).sum())
                neuron_steps[name] += float(valid.sum()) * s.shape[1]
            prev = {n.name: outs[n.name] for n in weighted}
        samples += int(lengths.numel())
        bar.update(1)
    bar.close()
    rows = []
    for c in conns.values():
        kind = "ACs" if c["binary"] else "MACs"
        rows.append(
            {
                **c,
                "kind": kind,
                "effective_per_sample": c["effective"] / samples,
                "dense_per_sample": c["dense"] / samples,
            }
        )
    sparsity = {k: 1.0 - spikes[k] / neuron_steps[k] for k in spiking if neuron_steps[k]}
    total_steps = sum(neuron_steps.values())
    return {
        "samples": samples,
        "connections": rows,
        "activation_sparsity": sparsity,
        "activation_sparsity_network": 1.0 - sum(spikes.values()) / total_steps
        if total_steps
        else None,
        "spikes_per_sample": {k: spikes[k] / samples for k in spiking},
        "input_sparsity": 1.0 - input_nonzero / input_total if input_total else None,
    }


def footprint(qnet) -> list[dict]:
    """Per weighted node: parameter bits at deployed widths, state bits, zero weights."""
    from quantization.network import AdaptiveLayer, Readout, SpikingLayer

    rows = []
    for n in qnet.nodes:
        if not isinstance(n, (SpikingLayer, AdaptiveLayer, Readout)):
            continue
        weights = [n.weight] + (
            [n.weight_rec] if getattr(n, "weight_rec", None) is not None else []
        )
        n_w = sum(int(w.numel()) for w in weights)
        zeros = sum(int((w == 0).sum()) for w in weights)
        n_b = int(n.bias_mant.numel()) if n.bias_mant is not None else 0
        spiking = isinstance(n, (SpikingLayer, AdaptiveLayer))
        neurons = int(n.weight.shape[0])
        param_bits = n_w * n.weight_bits + n_b * BIAS_BITS + DV_BITS + (VTH_BITS if spiking else 0)
        state_bits = neurons * STATE_BITS * (2 if spiking else 1)
        if isinstance(n, AdaptiveLayer):  # per neuron dv, dw, ka, kb; ω and h besides u, v
            param_bits += neurons * (2 * DV_BITS + KA_BITS + STATE_BITS) - DV_BITS
            state_bits += neurons * STATE_BITS * 2
            if n.du is not None:  # the CuAdLIF's current decay, per neuron
                param_bits += neurons * DV_BITS
        rows.append(
            {
                "layer": n.name,
                "weights": n_w,
                "weight_bits": n.weight_bits,
                "biases": n_b,
                "param_bytes": param_bits / 8,
                "float32_param_bytes": (n_w + n_b) * 4,
                "state_bytes": state_bits / 8,
                "connection_sparsity": zeros / n_w if n_w else 0.0,
            }
        )
    return rows


def _test_batches(data, n: int, batch_size: int):
    from stllr.padding import stack_samples

    for start in range(0, n, batch_size):
        x, _, lengths = stack_samples([data[i] for i in range(start, min(start + batch_size, n))])
        yield x, lengths


def run(ctx: Context) -> StageOutput:
    qnet = A.load_qnet(ctx.run_dir)
    data = ctx.data
    n = len(data.test) if ctx.cfg.cost.samples == 0 else min(ctx.cfg.cost.samples, len(data.test))
    bs = ctx.cfg.train.val_batch_size
    m = measure(qnet, _test_batches(data.test, n, bs), ctx.progress, -(-n // bs))
    fp = footprint(qnet)
    result = {**m, "footprint": fp, "definitions": "NeuroBench (see pipeline/cost.py)"}
    atomic_json(result, ctx.stage_dir("cost") / "cost.json")
    eff = sum(r["effective_per_sample"] for r in m["connections"])
    dense = sum(r["dense_per_sample"] for r in m["connections"])
    kib = sum(r["param_bytes"] for r in fp) / 1024
    f_kib = sum(r["float32_param_bytes"] for r in fp) / 1024
    summary = {
        "samples": n,
        "effective_synops_per_sample": eff,
        "dense_synops_per_sample": dense,
        "activation_sparsity": m["activation_sparsity_network"],
        "param_kib": kib,
        "float32_param_kib": f_kib,
    }
    line = (
        f"{eff / 1e6:.2f} M effective synaptic ops/sample ({100 * eff / dense:.1f}% of dense "
        f"{dense / 1e6:.1f} M), activation sparsity {m['activation_sparsity_network']:.3f}, "
        f"parameters {kib:.0f} KiB at {qnet.nodes[-1].weight_bits} bits (float32 {f_kib:.0f} "
        f"KiB) [{n} test samples]"
    )
    return StageOutput(summary, line, (A.COST_JSON,))
