#!/usr/bin/env python3
"""Smoke benchmark: a small, real training job that logs like an MLPerf Training benchmark.

This file is "benchmark code": it is copied to the nodes and run there as ``train.py`` by
``run_and_time.sh`` with whatever Python has numpy and mlperf-logging.  It imports nothing
from ``mlperf_repro``.

The task
    A teacher-network classification problem, generated deterministically from a fixed data
    seed (``DATA_SEED``; the dataset never depends on ``SEED``): 24 Gaussian features, 8
    classes, labels *sampled* from the softmax of a random 1-hidden-layer tanh teacher, so the
    best achievable validation cross-entropy is about 0.75 nats.  32768 training and 8192
    held-out validation samples.

The model
    A 24-H-8 tanh MLP (H = ``SMOKE_HIDDEN``) trained with Adam (beta1 0.9, beta2 0.999,
    eps 1e-8, constant learning rate, no weight decay) on mean cross-entropy, minibatch size
    ``SMOKE_GBS``, one shuffled pass over the training set per epoch (a tail shorter than a
    batch is dropped).  ``SEED`` sets the weight initialisation and the shuffling order, so
    samples-to-converge vary from seed to seed as in real runs, and one seed always gives the
    same run on one backend.  Two backends share one training loop: numpy (float32, on the
    CPU) and PyTorch (float32, TF32 off) on a GPU; both start from the same numpy-drawn
    initial weights and see the same batches, so they agree closely (on an H200, seeds 1-5
    converged at the same sample counts on both).

Quality and stopping
    Every ``SMOKE_EVAL_SAMPLES`` training samples (rounded up to whole batches) the model is
    evaluated on the validation set; the validation cross-entropy is logged as
    ``eval_accuracy`` (lower is better).  The run stops with ``run_stop`` status ``success`` at
    the first evaluation whose loss is <= ``SMOKE_TARGET``.  A run that has not converged when
    it has trained ``SMOKE_MAX_SAMPLES`` samples (rounded up to whole batches; that point is
    evaluated too), or whose loss stops being finite, stops with status ``aborted``.

Environment variables (configuration comes only from here; an empty value counts as unset)
    ========================== ============= ===================================================
    variable                   default       meaning
    ========================== ============= ===================================================
    SEED                       (required)    integer 0..4294967295; sets init and data order
    SMOKE_GBS                  128           global batch size, integer 1..32768
    SMOKE_LR                   0.002         Adam learning rate, float > 0
    SMOKE_TARGET               0.85          validation cross-entropy target, float > 0
    SMOKE_EVAL_SAMPLES         8192          training samples between evaluations, integer >= 1
    SMOKE_MAX_SAMPLES          2000000       training-sample cap (then status aborted), int >= 1
    SMOKE_DEVICE               auto          auto | cpu | cuda.  cpu: numpy.  cuda: PyTorch on
                                             GPU 0 (fails if torch or a GPU is missing).  auto:
                                             cuda when torch imports and sees a GPU, else cpu
    SMOKE_HIDDEN               64            hidden-layer width, integer 1..4096
    MLLOG_SUBMISSION_ORG       mlperf-repro  logged as submission_org
    MLLOG_SUBMISSION_PLATFORM  DGXSYSTEM's   logged as submission_platform; default: DGXSYSTEM
                               first field   up to its first "_" (MI355X_1x8x1 -> MI355X), or
                                             "unknown" without DGXSYSTEM
    MLLOG_SUBMISSION_DIVISION  closed        closed | open; logged as submission_division
    MLLOG_SUBMISSION_STATUS    onprem        logged as submission_status
    MLLOG_CONFIG_FILENAME      see right     logged as config_filename; default:
                                             config_$DGXSYSTEM.sh, or "none" without DGXSYSTEM
    DGXSYSTEM                  (unset)       system name, AMD's config naming; metadata only
    ========================== ============= ===================================================

    OPENBLAS_NUM_THREADS and MKL_NUM_THREADS default to 1 inside train.py (set before numpy is
    imported; values already in the environment win): the matrices are too small for threads.

    A missing SEED or an invalid value exits with status 2 and a message on stderr naming the
    variable and what was expected, before any MLLOG line is written.

Output
    ``:::MLLOG {...}`` lines on stdout through mlperf-logging's ``mllog``, in the order and with
    the metadata that mlperf-logging's training_6.0.0 common rules check (and the keys that
    6.1.0 makes mandatory): cache_clear, init_start, submission_*, hyperparameters, init_stop,
    run_start, then per evaluation block_start/block_stop and eval_start/eval_accuracy/eval_stop
    (metadata samples_count, epoch_num = samples / training-set size), and run_stop (metadata
    status, samples_count).  Extra keys, which the rules ignore: target_accuracy,
    evaluation_frequency, max_samples, opt_name/opt_adam_*, model_hidden_size, smoke_backend.
    No other key contains "global_batch_size", "eval_accuracy" or "eval_error": mlperf-logging's
    RCP checker finds those by substring.  ``cache_clear`` is logged true: the dataset is
    generated in memory, so there is no file cache to drop.  Exactly one summary line goes to
    stderr at the end.
    Exit status 0 for both success and aborted runs (the log says which), 2 for configuration
    errors.
"""

import math
import os
import sys
import time
from dataclasses import dataclass

# The matrices are tiny: BLAS threads only cost time (2-3x slower on a loaded 2-core box).
# Set before numpy loads its BLAS; a value already in the environment wins.
for _blas_threads in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas_threads, "1")

import numpy as np  # noqa: E402  (after the BLAS thread settings)
from mlperf_logging import mllog  # noqa: E402
from mlperf_logging.mllog import constants  # noqa: E402

BENCHMARK = "smoke"

# The dataset: fixed, independent of SEED.
DATA_SEED = 1234
N_FEATURES = 24
N_CLASSES = 8
TEACHER_HIDDEN = 48
TEACHER_IN_SCALE = 2.0
TEACHER_BIAS_SCALE = 0.5
TEACHER_OUT_SCALE = 4.0
N_TRAIN = 32768
N_VAL = 8192

ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8

SEED_MAX = 2**32 - 1
DEVICES = ("auto", "cpu", "cuda")
DIVISIONS = ("closed", "open")


class ConfigError(Exception):
    """A configuration variable is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Config:
    seed: int
    gbs: int
    lr: float
    target: float
    eval_samples: int
    max_samples: int
    device: str
    hidden: int
    org: str
    platform: str
    division: str
    status: str
    config_filename: str
    system: str


def _raw(env, name):
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _int(env, name, default, lo, hi, what=None):
    raw = _raw(env, name)
    expected = what or f"an integer between {lo} and {hi}"
    if raw is None:
        if default is None:
            raise ConfigError(f"{name} is not set: expected {expected}")
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected {expected}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r}: expected {expected}")
    return value


def _float(env, name, default):
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name}={raw!r}: expected a finite number greater than 0")
    return value


def _choice(env, name, default, choices):
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw.lower() not in choices:
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw.lower()


def read_config(env):
    """Read and validate the configuration from a mapping of environment variables."""
    system = _raw(env, "DGXSYSTEM") or ""
    return Config(
        seed=_int(env, "SEED", None, 0, SEED_MAX,
                  f"an integer between 0 and {SEED_MAX} (the launcher sets one per run)"),
        gbs=_int(env, "SMOKE_GBS", 128, 1, N_TRAIN),
        lr=_float(env, "SMOKE_LR", 0.002),
        target=_float(env, "SMOKE_TARGET", 0.85),
        eval_samples=_int(env, "SMOKE_EVAL_SAMPLES", 8192, 1, 10**12),
        max_samples=_int(env, "SMOKE_MAX_SAMPLES", 2_000_000, 1, 10**12),
        device=_choice(env, "SMOKE_DEVICE", "auto", DEVICES),
        hidden=_int(env, "SMOKE_HIDDEN", 64, 1, 4096),
        org=_raw(env, "MLLOG_SUBMISSION_ORG") or "mlperf-repro",
        platform=(_raw(env, "MLLOG_SUBMISSION_PLATFORM")
                  or (system.split("_")[0] if system else "unknown")),
        division=_choice(env, "MLLOG_SUBMISSION_DIVISION", "closed", DIVISIONS),
        status=_raw(env, "MLLOG_SUBMISSION_STATUS") or "onprem",
        config_filename=(_raw(env, "MLLOG_CONFIG_FILENAME")
                         or (f"config_{system}.sh" if system else "none")),
        system=system,
    )


# ---------------------------------------------------------------------------------------------
# Data and initial weights (numpy, shared by both backends)

def make_dataset():
    """Return (x_train, y_train, x_val, y_val): float32 features, int64 labels."""
    rng = np.random.default_rng(DATA_SEED)
    w1 = rng.standard_normal((N_FEATURES, TEACHER_HIDDEN))
    w1 *= TEACHER_IN_SCALE / math.sqrt(N_FEATURES)
    b1 = rng.standard_normal(TEACHER_HIDDEN) * TEACHER_BIAS_SCALE
    w2 = rng.standard_normal((TEACHER_HIDDEN, N_CLASSES))
    w2 *= TEACHER_OUT_SCALE / math.sqrt(TEACHER_HIDDEN)
    x = rng.standard_normal((N_TRAIN + N_VAL, N_FEATURES))
    logits = np.tanh(x @ w1 + b1) @ w2
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    u = rng.random((len(x), 1))
    y = np.minimum((prob.cumsum(axis=1) < u).sum(axis=1), N_CLASSES - 1).astype(np.int64)
    x = x.astype(np.float32)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def init_params(rng, hidden):
    """Initial weights drawn from rng: w1 (F, H), b1 (H,), w2 (H, C), b2 (C,), float32."""
    return {
        "w1": (rng.standard_normal((N_FEATURES, hidden))
               / math.sqrt(N_FEATURES)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": (rng.standard_normal((hidden, N_CLASSES)) / math.sqrt(hidden)).astype(np.float32),
        "b2": np.zeros(N_CLASSES, np.float32),
    }


# ---------------------------------------------------------------------------------------------
# Backends: begin_epoch(order), train_step(lo, hi) on order[lo:hi], eval_loss() -> float

class NumpyBackend:
    name = "numpy"

    def __init__(self, data, params, lr):
        self.x_train, self.y_train, self.x_val, self.y_val = data
        self.p = {k: v.copy() for k, v in params.items()}
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.lr = lr
        self.t = 0
        self.order = None

    def describe(self):
        return "numpy float32 on the CPU"

    def _forward(self, x):
        h = np.tanh(x @ self.p["w1"] + self.p["b1"])
        z = h @ self.p["w2"] + self.p["b2"]
        return h, z - z.max(axis=1, keepdims=True)

    def begin_epoch(self, order):
        self.order = order

    def train_step(self, lo, hi):
        idx = self.order[lo:hi]
        x, y = self.x_train[idx], self.y_train[idx]
        n = len(idx)
        h, z = self._forward(x)
        grad_z = np.exp(z)
        grad_z /= grad_z.sum(axis=1, keepdims=True)
        grad_z[np.arange(n), y] -= 1.0
        grad_z /= n
        grad_h = grad_z @ self.p["w2"].T
        grad_h *= 1.0 - h * h
        grads = {"w1": x.T @ grad_h, "b1": grad_h.sum(axis=0),
                 "w2": h.T @ grad_z, "b2": grad_z.sum(axis=0)}
        # Adam, in the form torch.optim.Adam uses.
        self.t += 1
        step = self.lr / (1.0 - ADAM_BETA1 ** self.t)
        bias2 = math.sqrt(1.0 - ADAM_BETA2 ** self.t)
        for k, g in grads.items():
            m, v = self.m[k], self.v[k]
            m *= ADAM_BETA1
            m += (1.0 - ADAM_BETA1) * g
            v *= ADAM_BETA2
            v += (1.0 - ADAM_BETA2) * (g * g)
            self.p[k] -= step * m / (np.sqrt(v) / bias2 + ADAM_EPS)

    def eval_loss(self):
        _, z = self._forward(self.x_val)
        logsumexp = np.log(np.exp(z).sum(axis=1))
        return float(np.mean(logsumexp - z[np.arange(len(self.y_val)), self.y_val]))


class TorchBackend:
    name = "torch"

    def __init__(self, torch, device, data, params, lr):
        self.torch = torch
        self.device = device
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self.x_train, self.y_train, self.x_val, self.y_val = (
            torch.from_numpy(a).to(device) for a in data)
        self.model = self._build(params)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr,
                                    betas=(ADAM_BETA1, ADAM_BETA2), eps=ADAM_EPS)
        self.order = None

    def _build(self, params):
        torch = self.torch
        hidden = params["b1"].shape[0]
        model = torch.nn.Sequential(torch.nn.Linear(N_FEATURES, hidden), torch.nn.Tanh(),
                                    torch.nn.Linear(hidden, N_CLASSES)).to(self.device)
        with torch.no_grad():  # nn.Linear keeps weights as (out, in)
            model[0].weight.copy_(torch.from_numpy(params["w1"].T.copy()))
            model[0].bias.copy_(torch.from_numpy(params["b1"]))
            model[2].weight.copy_(torch.from_numpy(params["w2"].T.copy()))
            model[2].bias.copy_(torch.from_numpy(params["b2"]))
        return model

    def describe(self):
        gpu = self.torch.cuda.get_device_name(self.device)
        return f"torch {self.torch.__version__} float32 on {gpu}"

    def warmup(self, params):
        """Run one step on a throw-away copy so that CUDA/cuBLAS start-up falls inside init."""
        torch = self.torch
        model = self._build(params)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss = torch.nn.functional.cross_entropy(model(self.x_train[:256]), self.y_train[:256])
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch.nn.functional.cross_entropy(model(self.x_val), self.y_val).item()
        torch.cuda.synchronize(self.device)

    def begin_epoch(self, order):
        self.order = self.torch.from_numpy(order).to(self.device)

    def train_step(self, lo, hi):
        idx = self.order[lo:hi]
        loss = self.torch.nn.functional.cross_entropy(self.model(self.x_train[idx]),
                                                      self.y_train[idx])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def eval_loss(self):
        with self.torch.no_grad():
            return float(self.torch.nn.functional.cross_entropy(self.model(self.x_val),
                                                                self.y_val).item())


def resolve_device(device):
    """Return (torch module or None, torch device or None); ConfigError if cuda is impossible."""
    if device == "cpu":
        return None, None
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except Exception as exc:  # ImportError, or a broken install raising something else
        if device == "cuda":
            raise ConfigError(f"SMOKE_DEVICE=cuda: PyTorch cannot be imported ({exc}); "
                              "expected torch with a visible GPU, or use cpu/auto") from None
        return None, None
    if not torch.cuda.is_available():
        if device == "cuda":
            raise ConfigError("SMOKE_DEVICE=cuda: torch.cuda.is_available() is false; "
                              "expected a visible GPU, or use cpu/auto")
        return None, None
    return torch, torch.device("cuda", 0)


# ---------------------------------------------------------------------------------------------
# The training loop, shared by both backends

def train(backend, cfg, order_rng, mllogger):
    """Train until the target or the sample cap; return (status, samples, last_loss)."""
    steps_per_eval = -(-cfg.eval_samples // cfg.gbs)
    max_steps = -(-cfg.max_samples // cfg.gbs)
    step = 0
    samples = 0
    pos = N_TRAIN  # forces a fresh shuffle before the first batch
    status, loss = constants.ABORTED, None
    while step < max_steps:
        block_steps = min(steps_per_eval, max_steps - step)
        mllogger.start(key=constants.BLOCK_START, value=None,
                       metadata={constants.SAMPLES_COUNT: samples})
        for _ in range(block_steps):
            if pos + cfg.gbs > N_TRAIN:
                backend.begin_epoch(order_rng.permutation(N_TRAIN))
                pos = 0
            backend.train_step(pos, pos + cfg.gbs)
            pos += cfg.gbs
        step += block_steps
        samples = step * cfg.gbs
        epochs = round(samples / N_TRAIN, 4)
        mllogger.end(key=constants.BLOCK_STOP, value=None,
                     metadata={constants.SAMPLES_COUNT: samples})
        mllogger.start(key=constants.EVAL_START, value=None,
                       metadata={constants.SAMPLES_COUNT: samples, constants.EPOCH_NUM: epochs})
        loss = backend.eval_loss()
        mllogger.event(key=constants.EVAL_ACCURACY, value=loss,
                       metadata={constants.SAMPLES_COUNT: samples, constants.EPOCH_NUM: epochs})
        mllogger.end(key=constants.EVAL_STOP, value=None,
                     metadata={constants.SAMPLES_COUNT: samples, constants.EPOCH_NUM: epochs})
        if not math.isfinite(loss):
            break
        if loss <= cfg.target:
            status = constants.SUCCESS
            break
    mllogger.end(key=constants.RUN_STOP, value=None,
                 metadata={constants.STATUS: status, constants.SAMPLES_COUNT: samples,
                           constants.EPOCH_NUM: round(samples / N_TRAIN, 4)})
    return status, samples, loss


def log_config(mllogger, cfg, backend):
    event = mllogger.event
    event(key=constants.SUBMISSION_BENCHMARK, value=BENCHMARK)
    event(key=constants.SUBMISSION_ORG, value=cfg.org)
    event(key=constants.SUBMISSION_DIVISION, value=cfg.division)
    event(key=constants.SUBMISSION_STATUS, value=cfg.status)
    event(key=constants.SUBMISSION_PLATFORM, value=cfg.platform)
    event(key=constants.CONFIG_FILENAME, value=cfg.config_filename)
    event(key=constants.SEED, value=cfg.seed)
    event(key=constants.GLOBAL_BATCH_SIZE, value=cfg.gbs)
    event(key="micro_batch_size", value=cfg.gbs)
    event(key=constants.GRADIENT_ACCUMULATION_STEPS, value=1)
    event(key=constants.TRAIN_SAMPLES, value=N_TRAIN)
    event(key=constants.EVAL_SAMPLES, value=N_VAL)
    event(key="evaluation_frequency", value=-(-cfg.eval_samples // cfg.gbs) * cfg.gbs)
    event(key="target_accuracy", value=cfg.target)
    event(key="max_samples", value=-(-cfg.max_samples // cfg.gbs) * cfg.gbs)
    event(key=constants.OPT_NAME, value=constants.ADAM)
    event(key=constants.OPT_BASE_LR, value=cfg.lr)
    event(key=constants.OPT_ADAM_BETA_1, value=ADAM_BETA1)
    event(key=constants.OPT_ADAM_BETA_2, value=ADAM_BETA2)
    event(key=constants.OPT_ADAM_EPSILON, value=ADAM_EPS)
    event(key="model_hidden_size", value=cfg.hidden)
    for key in ("tensor_parallelism", "pipeline_parallelism", "context_parallelism",
                "expert_parallelism"):
        event(key=key, value=1)
    for key in ("lowest_numerical_precision_in_linear", "lowest_numerical_precision_in_attn",
                "lowest_numerical_precision_in_comm"):
        event(key=key, value="fp32")
    event(key="smoke_backend", value=backend.describe())


def main(env=None):
    env = os.environ if env is None else env
    try:
        cfg = read_config(env)
        torch, device = resolve_device(cfg.device)
    except ConfigError as exc:
        print(f"smoke train.py: {exc}", file=sys.stderr)
        return 2

    mllogger = mllog.get_mllogger()
    mllogger.event(key=constants.CACHE_CLEAR, value=True)
    mllogger.event(key=constants.INIT_START, value=None)

    seeds = np.random.SeedSequence(cfg.seed).spawn(2)
    init_rng, order_rng = (np.random.default_rng(s) for s in seeds)
    data = make_dataset()
    params = init_params(init_rng, cfg.hidden)
    if torch is not None:
        torch.manual_seed(cfg.seed)
        backend = TorchBackend(torch, device, data, params, cfg.lr)
        backend.warmup(params)
    else:
        backend = NumpyBackend(data, params, cfg.lr)
    log_config(mllogger, cfg, backend)

    mllogger.end(key=constants.INIT_STOP, value=None)
    mllogger.start(key=constants.RUN_START, value=None)
    started = time.perf_counter()
    status, samples, loss = train(backend, cfg, order_rng, mllogger)
    elapsed = time.perf_counter() - started
    print(f"smoke train.py: {status} after {samples} samples, validation loss {loss:.4f} "
          f"(target {cfg.target}), {elapsed:.2f} s, {backend.describe()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
