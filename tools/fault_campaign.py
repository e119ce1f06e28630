"""Replay the bad-input and kill cases of the reliability campaign against ``stllr``.

Every case runs the command line (or, for library entry points, a short Python snippet) in
a fresh process, the way a user would, and judges it **clean** when the toolkit did the
right thing: a one-line error that names what is wrong (no traceback) where the input is
bad, a finished run where it should finish, no Lava process alive after its parent was
killed, no file lost or left behind. It prints one line per case and ``N/M clean``; the
exit status is 0 when every case is clean.

    tools/fault-campaign                 # every case (about 5 minutes on 2 cores)
    tools/fault-campaign --only lava     # cases whose name contains "lava"
    tools/fault-campaign --list          # the cases and what each checks

Work files go to a temporary folder (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

TINY_TRAIN = [
    "hidden=16", "epochs=1", "batch_size=16", "val_batch_size=16", "window=5",
    "standin_train=80", "standin_test=40", "lr=2e-3",
]  # fmt: skip
TINY_PIPELINE = [
    "train.epochs=2", "train.hidden=16", "train.standin_train=80", "train.standin_test=40",
    "quantize.sweep_bits=8", "adaptation.layers=rec,readout", "adaptation.samples=4",
    "adaptation.eval_every=2", "adaptation.eval_samples=20", "adaptation.lava_eval_samples=2",
]  # fmt: skip


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float


@dataclass
class Case:
    name: str
    checks: str
    run: Callable[[Work], tuple[bool, str]]


CASES: list[Case] = []


def case(name: str, checks: str):
    def wrap(fn):
        CASES.append(Case(name, checks, fn))
        return fn

    return wrap


class Work:
    """The scratch folder, a stand-in data set and a tiny trained checkpoint, made once."""

    def __init__(self, root: Path):
        self.root = root
        self.shd = root / "shd"
        self.runs = root / "runs"
        self._ckpt: Path | None = None

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STLLR_")}
        env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
        return env

    def stllr(self, *args: str, timeout: float = 600, **env) -> Result:
        t0 = time.time()
        p = subprocess.run(
            [PY, "-m", "stllr.cli.main", *args],
            cwd=self.root,
            env=self.env(**env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(p.returncode, p.stdout, p.stderr, time.time() - t0)

    def python(self, code: str, timeout: float = 300) -> Result:
        t0 = time.time()
        p = subprocess.run(
            [PY, "-c", textwrap.dedent(code)],
            cwd=self.root,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(p.returncode, p.stdout, p.stderr, time.time() - t0)

    def train(self, name: str, *sets: str) -> Result:
        return self.stllr(
            "train", "--task", "shd-standin", "--set", f"data={self.shd}", f"name={name}",
            f"out_dir={self.runs}", *TINY_TRAIN, *sets,
        )  # fmt: skip

    @property
    def ckpt(self) -> Path:
        """best.pt of a tiny SHD stand-in training (trained on first use)."""
        if self._ckpt is None:
            r = self.train("tiny")
            if r.code != 0:
                raise RuntimeError(f"could not train the tiny checkpoint:\n{r.err}")
            self._ckpt = self.runs / "tiny" / "trial_1" / "best.pt"
        return self._ckpt

    def pipeline_args(self, out: Path, *sets: str) -> list[str]:
        return ["pipeline", "--out", str(out), "--set", *TINY_PIPELINE,
                f"train.data={self.shd}", *sets]  # fmt: skip


def one_line_error(r: Result, *needles: str) -> tuple[bool, str]:
    """Exit status 2, one line on stderr, no traceback, every needle in it."""
    lines = [line for line in r.err.strip().splitlines() if line.strip()]
    missing = [n for n in needles if n.lower() not in r.err.lower()]
    ok = r.code == 2 and len(lines) == 1 and "Traceback" not in r.err and not missing
    detail = lines[-1][:160] if lines else "(no message)"
    if missing:
        detail += f" — missing {missing}"
    if r.code != 2:
        detail = f"exit {r.code}: {detail}"
    elif len(lines) != 1:
        detail = f"{len(lines)} lines: {detail}"
    return ok, detail


def succeeded(r: Result, what: str = "") -> tuple[bool, str]:
    last = (r.err.strip().splitlines() or ["(no message)"])[-1][:160]
    return r.code == 0, what if r.code == 0 else f"exit {r.code}: {last}"


def _said(r: Result) -> str:
    """What a snippet printed (its refusals), else its last error line, else that it was
    accepted without a word."""
    if r.out.strip():
        return r.out.strip().replace("\n", " | ")[:160]
    lines = r.err.strip().splitlines()
    return lines[-1][:160] if lines else "accepted silently"


# --- process helpers ---------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(d.name))
    return tree


def descendants(pid: int) -> set[int]:
    tree, out, todo = _children(), set(), [pid]
    while todo:
        for c in tree.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_and_wait_for(work: Work, args: list[str], marker: str, timeout: float = 300):
    """Start ``stllr args``, return (process, output so far) once ``marker`` was printed."""
    log = work.root / f"log_{time.time_ns()}.txt"
    f = log.open("w")
    p = subprocess.Popen(
        [PY, "-m", "stllr.cli.main", *args],
        cwd=work.root,
        env=work.env(PYTHONUNBUFFERED="1"),
        stdin=subprocess.DEVNULL,
        stdout=f,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so that killing it is like a user's kill, not a group kill
    )
    t0 = time.time()
    while time.time() - t0 < timeout:
        if marker in log.read_text():
            return p, log
        if p.poll() is not None:
            break
        time.sleep(0.2)
    return p, log


def _kill_during_lava(work: Work, sig: int) -> tuple[bool, str]:
    out = work.root / f"lava_kill_{sig}"
    args = work.pipeline_args(out, "lava.samples=40")
    p, log = start_and_wait_for(work, args, "[4/6] lava:")
    if p.poll() is not None:
        return False, f"pipeline ended before its Lava stage: {log.read_text()[-300:]}"
    t0 = time.time()
    kids: set[int] = set()
    while time.time() - t0 < 60 and len(kids) < 2:  # wait for Lava's own processes
        kids = descendants(p.pid)
        time.sleep(0.2)
    if len(kids) < 2:
        p.kill()
        return False, "no Lava processes appeared within 60 s"
    os.kill(p.pid, sig)
    p.wait(timeout=60)
    time.sleep(5)
    left = sorted(k for k in kids if alive(k))
    if left:
        for k in left:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
        return False, f"{len(left)} of {len(kids)} child processes alive 5 s after the kill"
    r = work.stllr(*args, "--resume")  # the kill cut the Lava stage: resume finishes the run
    ok, detail = succeeded(r)
    if not ok:
        return False, f"resume after the kill failed: {detail}"
    stale = [d for d in Path(tempfile.gettempdir()).glob(f"stllr_*_{p.pid}_*")]
    if stale:
        return False, f"temp folders of the killed run left after the next run: {stale[:2]}"
    return True, f"{len(kids)} child processes gone 5 s after the kill; resume finished"


# --- security and faults -----------------------------------------------------------------

PAYLOAD = """
import os, sys, torch
class Boom:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
good = torch.load(sys.argv[3], weights_only=True)
good["config"]["boom"] = Boom()
torch.save(good, sys.argv[1])
"""


def _payload(work: Work, name: str, template: Path) -> tuple[Path, Path]:
    path, marker = work.root / f"{name}.pt", work.root / f"{name}.ran"
    subprocess.run(
        [PY, "-c", PAYLOAD, str(path), str(marker), str(template)],
        env=work.env(),
        check=True,
        capture_output=True,
    )
    return path, marker


@case("pickle-payload-eval", "a .pt whose pickle runs code is refused by stllr eval, unrun")
def _(work):
    path, marker = _payload(work, "evil_eval", work.ckpt)
    ok, detail = one_line_error(work.stllr("eval", str(path)), path.name)
    if marker.exists():
        return False, "the payload ran"
    return ok, detail


@case("pickle-payload-quantize", "the same file is refused by stllr quantize, unrun")
def _(work):
    path, marker = _payload(work, "evil_quantize", work.ckpt)
    ok, detail = one_line_error(work.stllr("quantize", str(path)), path.name)
    return ok and not marker.exists(), detail + (" — the payload ran" if marker.exists() else "")


@case("pickle-payload-resume", "a code-running checkpoint.pt is refused by train --resume")
def _(work):
    work.train("evil_resume")
    ckpt = work.runs / "evil_resume" / "trial_1" / "checkpoint.pt"
    path, marker = _payload(work, "evil_resume", ckpt)
    shutil.copy(path, ckpt)
    r = work.train("evil_resume", "epochs=2", "--resume")
    ok, detail = one_line_error(r, "checkpoint.pt")
    return ok and not marker.exists(), detail + (" — the payload ran" if marker.exists() else "")


@case("lava-kill-9", "kill -9 of stllr pipeline in its Lava stage: Lava's processes die too")
def _(work):
    return _kill_during_lava(work, signal.SIGKILL)


@case("lava-sigterm", "SIGTERM of stllr pipeline in its Lava stage: Lava's processes die too")
def _(work):
    return _kill_during_lava(work, signal.SIGTERM)


@case("kill-9-in-training-then-resume", "kill -9 mid-training, --resume continues and finishes")
def _(work):
    out = work.root / "kill_train"
    args = work.pipeline_args(out, "train.epochs=3")
    p, log = start_and_wait_for(work, args, "epoch   1/3")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    r = work.stllr(*args, "--resume")
    ok, detail = succeeded(r)
    if not ok:
        return False, detail
    resumed = "resuming after epoch" in r.out
    return resumed, "resumed from the checkpoint" if resumed else "trained again from scratch"


@case("kill-9-in-rerun-keeps-results", "kill -9 during --rerun-from adaptation keeps report/")
def _(work):
    out = work.root / "kill_rerun"
    args = work.pipeline_args(out, "lava.samples=2")
    r = work.stllr(*args, "--skip-lava")
    if r.code != 0:
        return False, f"first run failed: {r.err[-200:]}"
    report = (out / "report" / "report.html").read_bytes()
    p, log = start_and_wait_for(
        work, [*args, "--skip-lava", "--resume", "--rerun-from", "adaptation"], "[5/6] adaptation"
    )
    time.sleep(2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    kept = (out / "report" / "report.html").read_bytes() == report and (
        out / "adaptation" / "stage.json"
    ).is_file()
    r = work.stllr(*args, "--skip-lava", "--resume")
    ok, detail = succeeded(r)
    return kept and ok, ("old results kept; " if kept else "old results lost; ") + detail


@case("damaged-best-keeps-checkpoint", "a modified best.pt stops the run, checkpoint.pt kept")
def _(work):
    out = work.root / "damaged"
    args = work.pipeline_args(out, "lava.samples=2")
    if work.stllr(*args, "--skip-lava").code != 0:
        return False, "first run failed"
    ckpt = (out / "train/trial_1/checkpoint.pt").read_bytes()
    with (out / "train/trial_1/best.pt").open("ab") as f:
        f.write(b"x")
    ok, detail = one_line_error(work.stllr(*args, "--skip-lava", "--resume"), "best.pt")
    kept = (out / "train/trial_1/checkpoint.pt").read_bytes() == ckpt
    return ok and kept, detail + ("" if kept else " — checkpoint.pt lost")


@case(
    "train-resume-writes-metrics", "killed after the last checkpoint: train --resume writes metrics"
)
def _(work):
    r = work.train("metrics_lost")
    trial = work.runs / "metrics_lost" / "trial_1"
    for f in ("metrics.json", "metrics.csv", "learning_curves.png"):
        (trial / f).unlink()
    r = work.train("metrics_lost", "--resume")
    ok = r.code == 0 and all(
        (trial / f).is_file() for f in ("metrics.json", "metrics.csv", "learning_curves.png")
    )
    return ok, "metrics, csv and plot written" if ok else f"exit {r.code}, files missing"


@case("eval-set-hidden-mismatch", "stllr eval CKPT --set hidden=64: one line, what differs")
def _(work):
    return one_line_error(work.stllr("eval", str(work.ckpt), "--set", "hidden=64"), "best.pt")


@case("eval-other-models-checkpoint", "weights of another model under a config: one line")
def _(work):
    other = work.root / "other.pt"
    work.python(f"""
        import torch
        a = torch.load({str(work.ckpt)!r}, weights_only=True)
        a["model"] = {{k: torch.zeros(3, 3) for k in a["model"]}}
        torch.save(a, {str(other)!r})
    """)
    return one_line_error(work.stllr("eval", str(other)), "other.pt")


@case("resume-truncated-checkpoint", "a truncated checkpoint.pt on --resume: one line")
def _(work):
    work.train("trunc")
    ckpt = work.runs / "trunc" / "trial_1" / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    return one_line_error(work.train("trunc", "epochs=2", "--resume"), "checkpoint.pt")


@case("resume-foreign-checkpoint", "a foreign checkpoint.pt (a plain tensor) on --resume")
def _(work):
    work.train("foreign")
    ckpt = work.runs / "foreign" / "trial_1" / "checkpoint.pt"
    work.python(f"import torch; torch.save(torch.zeros(3), {str(ckpt)!r})")
    return one_line_error(work.train("foreign", "epochs=2", "--resume"), "checkpoint.pt")


@case("lr-inf-refused", "lr=inf is refused before training")
def _(work):
    return one_line_error(work.train("lr_inf", "lr=inf"), "lr")


@case("nan-loss-stops", "a diverging run stops with a clear error and saves no NaN best.pt")
def _(work):
    r = work.train("diverge", "optimizer=sgd", "lr=1e36", "epochs=2")
    trial = work.runs / "diverge" / "trial_1"
    written = [f.name for f in (trial / "best.pt", trial / "checkpoint.pt") if f.is_file()]
    ok, detail = one_line_error(r, "diverged")
    return ok and not written, detail + (f" — wrote {written}" if written else "")


# --- bad events --------------------------------------------------------------------------

EVENTS = """
import numpy as np, h5py, sys
path, kind = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
dt = [("t", "<i8"), ("x", "<i4"), ("p", "u1")]
size = (16, 1, 2)
recs = []
for i in range(12):
    r = np.zeros(50, dtype=dt)
    r["t"] = np.sort(rng.integers(0, 50_000, 50))
    r["x"] = rng.integers(0, 16, 50)
    r["p"] = rng.integers(0, 2, 50)
    recs.append(r)
if kind == "outlier":
    recs[3]["t"][-1] = 10**12
if kind == "unsorted_test":
    recs[11]["t"] = recs[11]["t"][::-1].copy()
if kind == "huge_sensor":
    size = (100_000, 100_000, 2)
with h5py.File(path, "w") as f:
    g = f.create_group("events")
    for i, r in enumerate(recs):
        g[str(i)] = r
    if kind != "no_labels":
        f["labels"] = np.arange(12) % 2
    f["split"] = np.array([b"train"] * 8 + [b"test"] * 4)
    f.attrs["sensor_size"] = size
    f.attrs["num_classes"] = 2
"""


def _events(work: Work, kind: str) -> Path:
    path = work.root / f"events_{kind}.h5"
    subprocess.run([PY, "-c", EVENTS, str(path), kind], env=work.env(), check=True)
    return path


def _train_custom(work: Work, path: Path, *sets: str, limit_gb: float = 16) -> Result:
    """stllr train --task custom under a 16 GiB address-space limit (torch's libraries map
    a few GiB; the frames of the bad files would need 100 GiB and more), so a blow-up fails
    loudly instead of swapping."""
    cmd = (
        f"ulimit -v {int(limit_gb * 2**20)}; exec {PY} -m stllr.cli.main train --task custom "
        f"--data {path} --set out_dir={work.runs} name={path.stem} epochs=1 hidden=8 "
        f"frame_us=1000 {' '.join(sets)}"
    )
    t0 = time.time()
    p = subprocess.run(["bash", "-c", cmd], cwd=work.root, env=work.env(), capture_output=True,
                       text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    return Result(p.returncode, p.stdout, p.stderr, time.time() - t0)


@case("outlier-timestamp", "one event at t = 10^12 µs: refused before allocating, frame count")
def _(work):
    return one_line_error(_train_custom(work, _events(work, "outlier")), "frames")


@case("huge-sensor-size", "sensor_size 100000 × 100000 × 2: refused before allocating")
def _(work):
    return one_line_error(_train_custom(work, _events(work, "huge_sensor")), "sensor_size")


@case("unsorted-test-split", "unsorted timestamps in a test recording: the documented error")
def _(work):
    return one_line_error(_train_custom(work, _events(work, "unsorted_test")), "sorted")


@case("format-error-points-at-docs", "a file without labels: names the key and docs/data.md")
def _(work):
    return one_line_error(_train_custom(work, _events(work, "no_labels")), "labels", "docs/data.md")


@case("wrong-arch-says-which", "a camera-shaped model on 1-D data says which arch to use")
def _(work):
    return one_line_error(_train_custom(work, _events(work, "ok"), "arch=vgg9"), "arch")


@case("nan-calibration-input", "NaN in the PTQ calibration input is refused")
def _(work):
    r = work.python(f"""
        import torch
        from stllr.cli.checkpoint import load_checkpoint
        from quantization.ptq import quantize_model
        ck = load_checkpoint({str(work.ckpt)!r})
        x = torch.full((20, 2, 700), float("nan"))
        try:
            quantize_model(ck.model, [x])
        except ValueError as e:
            print("refused:", type(e).__name__, e)
    """)
    ok = "refused:" in r.out and "nan" in r.out.lower()
    return ok, _said(r)


@case("emulator-out-of-format-input", "the emulator refuses inputs its format cannot hold")
def _(work):
    r = work.python(f"""
        import torch
        from stllr.cli.checkpoint import load_checkpoint
        from quantization.ptq import quantize_model
        from quantization.emulator import IntegerEmulator
        ck = load_checkpoint({str(work.ckpt)!r})
        x = (torch.rand(20, 2, 700) < 0.05).float()
        q, _ = quantize_model(ck.model, [x])
        for bad in (torch.full((2, 700), 10**6), torch.full((2, 700), 0.5)):
            try:
                IntegerEmulator(q).forward(bad)
            except ValueError as e:
                print("refused:", type(e).__name__, e)
        try:
            IntegerEmulator(q).run(torch.full((20, 2, 700), float("nan")))
        except ValueError as e:
            print("refused:", type(e).__name__, e)
    """)
    ok = r.out.count("refused:") == 3
    return ok, _said(r)


@case("lava-int-beyond-32-bits", "integers beyond 32 bits sent to Lava are refused")
def _(work):
    r = work.python("""
        import numpy as np
        from lava_models.runner import to_lava_time_layout
        try:
            to_lava_time_layout(np.full((3, 4), 2**40, dtype=np.int64))
        except ValueError as e:
            print("refused:", type(e).__name__, e)
    """)
    ok = "refused:" in r.out
    return ok, _said(r)


# --- honest evaluation -------------------------------------------------------------------


@case("eval-batch-size-independent", "stllr eval gives one accuracy at val batch 1, 7 and 400")
def _(work):
    r = work.train("evalb", "epochs=4", "lr=1e-2", "hidden=32")  # above chance, unlike ckpt
    if r.code != 0:
        return False, f"training failed: {r.err[-160:]}"
    ckpt = work.runs / "evalb" / "trial_1" / "best.pt"
    accs = []
    for b in (1, 7, 400):
        r = work.stllr("eval", str(ckpt), "--set", f"val_batch_size={b}")
        if r.code != 0:
            return False, f"eval failed at batch {b}: {r.err[-160:]}"
        line = r.out.strip().splitlines()[-1]
        accs.append(line.split("accuracy")[1].split("%")[0].strip())
    above_chance = float(accs[0]) > 5.0
    ok = len(set(accs)) == 1 and above_chance
    return ok, f"{' / '.join(accs)} % at batch 1 / 7 / 400 (chance 5 %)"


# --- the command line --------------------------------------------------------------------


@case("set-before-positional", "stllr eval --set seed=1 CKPT reads CKPT as the checkpoint")
def _(work):
    return succeeded(work.stllr("eval", "--set", "seed=1", str(work.ckpt)), "evaluated")


@case("threads-on-every-subcommand", "--threads is an option of every subcommand")
def _(work):
    missing = []
    for sub in ("demo", "train", "eval", "quantize", "compare", "pipeline"):
        if "--threads" not in work.stllr(sub, "--help").out:
            missing.append(sub)
    return not missing, f"missing on {missing}" if missing else "all six"


@case("version", "stllr --version prints the version")
def _(work):
    r = work.stllr("--version")
    return r.code == 0 and any(c.isdigit() for c in r.out), r.out.strip()[:80]


@case("help-fast-without-torch", "stllr --help takes well under a second and imports no torch")
def _(work):
    r = work.python("""
        import sys, time
        t0 = time.time()
        from stllr.cli.main import build_parser
        build_parser().format_help()
        print(time.time() - t0, "torch" in sys.modules)
    """)
    secs, torch_loaded = r.out.split()
    ok = float(secs) < 0.5 and torch_loaded == "False"
    return ok, f"{float(secs):.2f} s, torch imported: {torch_loaded}"


@case("bug-keeps-traceback", "an internal error is not flattened into one vague line")
def _(work):
    r = work.python("""
        import sys
        from stllr.cli import main as m
        def bug(args):
            a, b = (1, 2, 3)
        parser = m.build_parser
        def build():
            p = parser()
            p.set_defaults(run=bug)
            for action in p._subparsers._group_actions[0].choices.values():
                action.set_defaults(run=bug)
            return p
        m.build_parser = build
        sys.exit(m.main(["eval", "x.pt"]))
    """)
    ok = "Traceback" in r.err and "too many values to unpack" in r.err
    return ok, "traceback kept" if ok else f"exit {r.code}: {r.err.strip()[-120:]}"


@case("no-progress-bars-off-terminal", "stderr not a terminal: no progress bar anywhere")
def _(work):
    shutil.rmtree(work.root / "shd_fresh", ignore_errors=True)
    r = work.stllr("train", "--task", "shd-standin", "--set", f"data={work.root / 'shd_fresh'}",
                   f"out_dir={work.runs}", "name=bars", *TINY_TRAIN)  # fmt: skip
    bars = [
        line for line in r.err.replace("\r", "\n").splitlines() if "it/s" in line or "%|" in line
    ]
    return r.code == 0 and not bars, f"{len(bars)} progress-bar lines" if bars else "none"


@case("files-follow-umask", "files written under umask 022 are 0644, not 0600")
def _(work):
    os.umask(0o022)
    modes = {oct(p.stat().st_mode & 0o777) for p in (work.runs / "tiny").rglob("*") if p.is_file()}
    return modes == {"0o644"}, f"modes {sorted(modes)}"


@case("failed-run-leaves-no-folder", "a train that fails at loading leaves no run folder")
def _(work):
    r = work.stllr("train", "--task", "custom", "--data", str(work.root / "missing.h5"),
                   "--set", f"out_dir={work.runs}", "name=half")  # fmt: skip
    left = (work.runs / "half").exists()
    ok, detail = one_line_error(r, "missing.h5")
    return ok and not left, detail + (" — runs/half left behind" if left else "")


@case("pipeline-failed-run-leaves-no-folder", "a pipeline that fails at loading leaves no folder")
def _(work):
    out = work.root / "pipe_half"
    r = work.stllr("pipeline", "--task", "custom", "--data", str(work.root / "missing.h5"),
                   "--out", str(out))  # fmt: skip
    ok, detail = one_line_error(r, "missing.h5")
    return ok and not out.exists(), detail + (" — folder left behind" if out.exists() else "")


@case("name-escapes-output", "name=../x and an absolute name cannot write outside out_dir")
def _(work):
    results = []
    for name in ("../escaped", str(work.root / "abs_escaped")):
        r = work.train(name)
        results.append(one_line_error(r, "name"))
    escaped = (work.root / "escaped").exists() or (work.root / "abs_escaped").exists()
    ok = all(o for o, _ in results) and not escaped
    return ok, results[0][1] + (" — wrote outside" if escaped else "")


@case("train-resume-missing-run", "stllr train --resume of a run that does not exist says so")
def _(work):
    return one_line_error(work.train("never_ran", "--resume"), "never_ran")


@case("pipeline-resume-missing-run", "stllr pipeline --resume of a missing run says so")
def _(work):
    out = work.root / "never_piped"
    return one_line_error(work.stllr("pipeline", "--resume", "--out", str(out)), "never_piped")


# --- bring-your-own data end to end ------------------------------------------------------


@case("custom-pipeline-default-config", "stllr pipeline --task custom --data FILE runs to a report")
def _(work):
    path = _events(work, "ok")
    out = work.root / "custom_pipe"
    r = work.stllr("pipeline", "--task", "custom", "--data", str(path), "--out", str(out),
                   "--skip-lava", "--set", "train.epochs=1", "adaptation.samples=2",
                   "adaptation.eval_every=1")  # fmt: skip
    ok, detail = succeeded(r)
    report = (out / "report" / "report.html").is_file()
    return ok and report, detail or "report written"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=None, help="run the cases whose name contains this")
    ap.add_argument("--list", action="store_true", help="list the cases")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    cases = [c for c in CASES if args.only is None or args.only in c.name]
    if args.list:
        for c in cases:
            print(f"{c.name:36s} {c.checks}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="stllr-faults-"))
    work = Work(root)
    rows, clean = [], 0
    try:
        for i, c in enumerate(cases, 1):
            t0 = time.time()
            try:
                ok, detail = c.run(work)
            except Exception as exc:  # noqa: BLE001 — a case that crashes is not clean
                ok, detail = False, f"the case itself failed: {type(exc).__name__}: {exc}"[:200]
            clean += ok
            rows.append({"case": c.name, "clean": ok, "detail": detail, "checks": c.checks})
            mark = "clean" if ok else "FAIL "
            print(f"[{i:2d}/{len(cases)}] {mark} {c.name:36s} {detail} [{time.time() - t0:.0f} s]",
                  flush=True)  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"work folder kept: {root}")
    print(f"{clean}/{len(cases)} clean")
    if args.json:
        args.json.write_text(json.dumps({"clean": clean, "cases": len(cases), "rows": rows},
                                        indent=1) + "\n")  # fmt: skip
    return 0 if clean == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
