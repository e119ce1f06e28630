"""Where each stage writes its files (relative to the run folder) and how to load them."""

from __future__ import annotations

from pathlib import Path

import torch

BEST = "train/trial_1/best.pt"
TRAIN_METRICS = "train/trial_1/metrics.json"
TRAIN_CURVES = "train/trial_1/learning_curves.png"
QNET = "quantize/quantized.pt"
QUANT_JSON = "quantize/quantization.json"
SWEEP_JSON = "quantize/sweep.json"
COST_JSON = "cost/cost.json"
LAVA_JSON = "lava/lava.json"
LAVA_SAMPLE = "lava/sample.npz"
ADAPT_JSON = "adaptation/adaptation.json"
ADAPT_WEIGHTS = "adaptation/weights.pt"
REPORT_HTML = "report/report.html"
REPORT_MD = "report/report.md"


def load_float_model(run_dir: Path, cfg, data):
    """The trained float model (best test epoch) and its training mode, in eval mode."""
    from stllr.models.factory import build_model

    path = Path(run_dir) / BEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the train stage has not finished")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model, mode = build_model(cfg, data.input_shape, data.num_classes)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, mode


def load_qnet(run_dir: Path):
    """The deployed integer network written by the quantize stage."""
    from quantization.network import QNetwork

    path = Path(run_dir) / QNET
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the quantize stage has not finished")
    return QNetwork.load(path)
