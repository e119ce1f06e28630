"""Where each stage writes its files (relative to the run folder) and how to load them."""

from __future__ import annotations

from pathlib import Path

BEST = "train/trial_1/best.pt"
TRAIN_METRICS = "train/trial_1/metrics.json"
TRAIN_CURVES = "train/trial_1/learning_curves.png"
#: the NIR graph a run from ``--from-nir`` imported (arch ``nir``), copied into the run
NIR_COPY = "train/model.nir"
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
    """The trained float model (best test epoch) and its training mode, in eval mode.

    ``best.pt`` is read as plain data; weights that do not fit the model of ``cfg`` are a
    one-line error naming the file, the parameters and the config keys that differ.
    """
    from stllr.checkpoints import built_from, load_model_state, load_pt, stored_config
    from stllr.models.factory import build_model

    path = Path(run_dir) / BEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the train stage has not finished")
    if cfg.arch == "nir":  # the graph as imported, not wherever the original now is
        cfg = cfg.replace(nir_file=str(Path(run_dir) / NIR_COPY))
    ckpt = load_pt(path, keys=("model", "config"))
    model, mode = build_model(cfg, data.input_shape, data.num_classes)
    built = built_from(stored_config(ckpt, path), cfg, "the pipeline's [train] config")
    load_model_state(model, ckpt, path, built)
    model.eval()
    return model, mode


def load_qnet(run_dir: Path):
    """The deployed integer network written by the quantize stage."""
    from quantization.network import QNetwork

    path = Path(run_dir) / QNET
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the quantize stage has not finished")
    return QNetwork.load(path)
