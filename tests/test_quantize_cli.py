"""``stllr quantize`` and ``stllr compare`` on a tiny trained SHD stand-in run.

The JSON they write is checked against independent recomputations: the saved network
re-evaluated with the integer emulator, ``stllr eval``'s float accuracy, the per-layer
RMS error recomputed from the float graph and the dequantized integer weights, and the
8-bit accuracy of ``compare`` against that of ``quantize``.
"""

from __future__ import annotations

import json
import math
import struct

import pytest
import torch

from stllr.cli.main import main

VAL_BATCH = 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """best.pt of a 700 → 16 → 20 S-TLLR network trained for 2 short epochs."""
    root = tmp_path_factory.mktemp("quant_cli")
    args = [
        "train",
        "--task",
        "shd-standin",
        "--data",
        str(root / "data"),
        "--no-progress",
        "--set",
        "hidden=16",
        "epochs=2",
        "batch_size=16",
        f"val_batch_size={VAL_BATCH}",
        "window=10",
        "lr=1e-2",
        "standin_train=64",
        "standin_test=32",
        f"out_dir={root / 'runs'}",
        "name=q",
    ]
    assert main(args) == 0
    ckpt = root / "runs" / "q" / "trial_1" / "best.pt"
    assert ckpt.is_file()
    return ckpt


def _test_batches(ckpt):
    from stllr.cli.checkpoint import load_checkpoint
    from stllr.trainer import batches

    ck = load_checkpoint(ckpt)
    return ck, list(batches(ck.data.test, ck.cfg.val_batch_size))


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_quantize_writes_network_and_consistent_report(trained, tmp_path, capsys):
    from quantization.convert import FloatReadout, FloatSpiking, to_float_graph
    from quantization.emulator import evaluate
    from quantization.network import QNetwork, SpikingLayer

    assert main(["quantize", str(trained), "--calib-batches", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "PTQ" in out and "rel RMS err" in out
    folder = trained.parent / "quantized"  # the default: next to the checkpoint
    rep = json.loads((folder / "quantization.json").read_text())
    assert rep["quantization"]["weight_bits"] == 8 and rep["quantization"]["calib_batches"] == 2
    assert rep["saved"]["method"] == "ptq" and rep["qat"] is None

    # the saved network, re-evaluated independently, has the reported accuracy and saturation
    qnet = QNetwork.load(folder / "quantized.pt")
    ck, test = _test_batches(trained)
    acc, counter = evaluate(qnet, test)
    assert 100.0 * acc == rep["ptq"]["accuracy"] == rep["saved"]["accuracy"]
    assert counter.as_dict() == rep["ptq"]["saturation"]["quantities"]
    assert rep["test_samples"] == len(ck.data.test) == sum(len(y) for _, y, _ in test)
    fmt = qnet.input_format
    assert rep["input_format"] == {"exp": fmt.exp, "lo": fmt.lo, "hi": fmt.hi, "scale": fmt.scale()}

    # the float accuracy is the one stllr eval reports
    ev = tmp_path / "eval.json"
    assert main(["eval", str(trained), "--out", str(ev), "--no-progress"]) == 0
    assert rep["float_accuracy"] == json.loads(ev.read_text())["test_acc"]
    assert rep["ptq"]["delta_vs_float"] == pytest.approx(
        rep["ptq"]["accuracy"] - rep["float_accuracy"]
    )

    # per layer: exponent of the saved node, mantissas in 8 bits, RMS error recomputed from
    # the float graph (input and spikes are integers: their scale is 1) within half an LSB
    # (weight_lsb: 2^e by default; θ/vth for a spiking layer at scale="threshold")
    assert fmt.exp == 0
    specs = {
        s.name: s for s in to_float_graph(ck.model) if isinstance(s, (FloatSpiking, FloatReadout))
    }
    layers = {d["name"]: d for d in rep["ptq"]["layers"]}
    assert set(layers) == set(specs) == {"rec", "readout"}
    for name, d in layers.items():
        node, spec = qnet.node(name), specs[name]
        assert d["weight_exp"] == node.weight_exp and d["clipped"] == 0
        pairs = [(node.weight, spec.weight)]
        if getattr(spec, "weight_rec", None) is not None:
            pairs.append((node.weight_rec, spec.weight_rec))
        err2 = w2 = n = 0.0
        for m, w in pairs:
            assert int(m.abs().max()) <= 128
            err2 += float(((m.double() * node.weight_lsb - w.double()) ** 2).sum())
            w2 += float((w.double() ** 2).sum())
            n += m.numel()
        assert d["total"] == n
        assert d["rms_error"] == pytest.approx(math.sqrt(err2 / n), rel=1e-9)
        assert d["rel_rms_error"] == pytest.approx(math.sqrt(err2 / w2), rel=1e-9)
        assert d["rms_error"] <= node.weight_lsb / 2
        if isinstance(node, SpikingLayer):  # the threshold in weight LSBs (exact at "threshold")
            assert node.vth == round(spec.lif.theta_eff / node.weight_lsb)
            assert d["gain"] == pytest.approx(2.0**node.weight_exp / node.weight_lsb)


def test_quantize_with_qat_saves_the_fine_tuned_network(trained, tmp_path, capsys):
    from quantization.emulator import evaluate
    from quantization.network import QNetwork

    out = tmp_path / "q4"
    args = ["quantize", str(trained), "--bits", "4", "--qat-epochs", "1", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    rep = json.loads((out / "quantization.json").read_text())
    assert rep["saved"]["method"] == "qat" and rep["qat"]["qat"]["epochs"] == 1
    assert len(rep["qat"]["qat"]["history"]) == 1
    qnet = QNetwork.load(out / "quantized.pt")
    assert qnet.meta["weight_bits"] == 4
    _, test = _test_batches(trained)
    assert 100.0 * evaluate(qnet, test)[0] == rep["qat"]["accuracy"] == rep["saved"]["accuracy"]
    assert "QAT (1 epoch(s))" in capsys.readouterr().out

    # the float control: the checkpoint fine-tuned one epoch by QAT's loop without the
    # quantizer, rebuilt here from the checkpoint and scored on the same test split
    from quantization.qat import float_finetune
    from stllr.trainer import run_epoch

    ck, _ = _test_batches(trained)
    float_finetune(ck.model, ck.mode, ck.data.train, ck.cfg, 1, log=lambda _: None)
    _, acc = run_epoch(ck.model, ck.data.test, ck.cfg.val_batch_size)
    control = rep["float_control"]
    assert control["epochs"] == 1 and len(control["history"]) == 1
    assert control["accuracy"] == pytest.approx(acc, abs=1e-9)
    assert rep["qat"]["delta_vs_control"] == pytest.approx(rep["qat"]["accuracy"] - acc)


def test_compare_sweeps_bits_and_records_failures(trained, tmp_path, capsys, monkeypatch):
    import quantization.report as report
    from quantization.ptq import QuantizationError

    if not (trained.parent / "quantized" / "quantization.json").exists():
        assert main(["quantize", str(trained), "--calib-batches", "2", "--no-progress"]) == 0
    single = json.loads((trained.parent / "quantized" / "quantization.json").read_text())

    real = report.quantize_model

    def fail_at_3_bits(model, calib, cfg, log=None):
        if cfg.weight_bits == 3:
            raise QuantizationError("layer rec: injected failure at 3 bits")
        return real(model, calib, cfg, log=log)

    monkeypatch.setattr(report, "quantize_model", fail_at_3_bits)
    out = tmp_path / "cmp"
    args = ["compare", str(trained), str(trained), "--bits", "8", "2", "3", "--out", str(out)]
    assert main([*args, "--calib-batches", "2", "--qat-epochs", "1", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "fail" in table and "2-bit" in table and "like QAT" in table
    res = json.loads((out / "compare.json").read_text())
    assert res["bits"] == [2, 3, 8]
    labels = [e["label"] for e in res["checkpoints"]]
    assert len(set(labels)) == 2  # the same task twice: labels made unique

    by_key = {(r["label"], r["method"], r["bits"]): r for r in res["rows"]}
    assert len(res["rows"]) == 2 * (1 + 1 + 3 + 3)
    for label in labels:
        f = by_key[(label, "float", None)]
        assert f["accuracy"] == single["float_accuracy"] and f["delta_vs_float"] == 0.0
        c = by_key[(label, "float_control", None)]
        assert c["delta_vs_float"] == pytest.approx(c["accuracy"] - f["accuracy"])
        for b in (2, 8):
            q = by_key[(label, "qat", b)]
            assert q["delta_vs_control"] == pytest.approx(q["accuracy"] - c["accuracy"])
            assert by_key[(label, "ptq", b)]["delta_vs_control"] is None
        # same checkpoint, same calibration batches: the 8-bit PTQ of quantize
        assert by_key[(label, "ptq", 8)]["accuracy"] == single["ptq"]["accuracy"]
        for method in ("ptq", "qat"):
            failed = by_key[(label, method, 3)]
            assert failed["accuracy"] is None and "injected failure" in failed["error"]
            for b in (2, 8):
                r = by_key[(label, method, b)]
                assert r["error"] is None and 0.0 <= r["accuracy"] <= 100.0
                assert r["delta_vs_float"] == pytest.approx(r["accuracy"] - f["accuracy"])
    entry = res["checkpoints"][0]
    per_bits = {r["bits"]: r for r in entry["ptq"]}
    assert per_bits[2]["layers"][0]["weight_exp"] > per_bits[8]["layers"][0]["weight_exp"]
    assert "quantities" in per_bits[8]["saturation"]

    png = out / "accuracy_vs_bits.png"
    w, h = (round(v * report.PLOT_DPI) for v in report.PLOT_SIZE_INCHES)
    assert _png_size(png) == (w, h)
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[:2] == (h, w) and float(torch.from_numpy(img).std()) > 0.05


@pytest.mark.parametrize(
    "argv,message",
    [
        (["quantize", "{missing}"], "checkpoint {missing} does not exist"),
        (["compare", "{ckpt}", "{missing}"], "checkpoint {missing} does not exist"),
        (["quantize", "{ckpt}", "--bits", "1"], "--bits must be in 2..16, got 1"),
        (["compare", "{ckpt}", "--bits", "4", "17"], "--bits must be in 2..16, got 17"),
        (["quantize", "{ckpt}", "--percentile", "0"], "--percentile must be in (0, 100], got 0"),
        (["compare", "{ckpt}", "--percentile", "101"], "--percentile must be in (0, 100], got 101"),
        (["quantize", "{ckpt}", "--calib-batches", "0"], "--calib-batches must be ≥ 1, got 0"),
        (["quantize", "{ckpt}", "--qat-epochs", "-1"], "--qat-epochs must be ≥ 0, got -1"),
        (["quantize", "{junk}"], "{junk} is not a readable stllr checkpoint"),
    ],
)
def test_bad_inputs_give_one_error_line(trained, tmp_path, capsys, argv, message):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    names = {"ckpt": trained, "missing": tmp_path / "missing.pt", "junk": junk}
    argv = [a.format(**names) for a in argv]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stllr: error: " + message.format(**names))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["quantize", "compare"])
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"stllr {command} runs/" in out and "--bits" in out and "--qat-epochs" in out
