#!/usr/bin/env python3
"""Node health measurements before the long runs, one result shape for every backend.

A figure is ``{"name", "value", "unit", "details"}``; higher is better for every throughput and
bandwidth figure, and the thresholds (mlperf_repro/health_thresholds.yml) say which figures are
ceilings instead (error counts). Backends:

* ``cpu``: numpy float32 GEMM (GFLOP/s) and a large numpy copy (GB/s). Real on any machine.
* ``torch``: bf16 matmul (TFLOP/s), device-to-device copy, pinned host<->device copies (GB/s),
  an all-reduce across the node's GPUs with torch.distributed (busbw as nccl-tests define it),
  and the GPUs' clocks, temperature and ECC counts read from the platform's SMI while loaded.
  With no GPU it runs on the CPU device (gloo), so the code path is exercised anywhere.
* across nodes: an all-reduce over OpenMPI + mpi4py (``mpirun`` over ssh, or inside a Slurm
  allocation), busbw = algbw * 2(n-1)/n.
* parsers of nccl-tests / rccl-tests ``*_perf`` tables and of TransferBench output, for the
  images and hosts that carry those tools.

Standard library at import: Ansible ships this file to the nodes as
``ansible.module_utils.healthcheck``, and the role copies it beside the benchmark so that it runs
as a script, in the image or on the host::

    python3 healthcheck.py --backend torch --json out.json       # a GPU node, standalone
    python3 healthcheck.py --backend cpu --json -                # the CPU backend, JSON on stdout

numpy, torch and mpi4py are imported only by the backend that needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

BACKENDS = ("auto", "cpu", "torch")
GB = 1e9

#: figure name -> (unit, what it measures); the table and the report read this.
FIGURES = {
    "gemm_gflops": ("GFLOP/s", "float32 GEMM on the CPU (numpy), median of repeats"),
    "mem_copy_gbps": ("GB/s", "host memory copy (numpy), bytes read + written, median of repeats"),
    "matmul_tflops": ("TFLOP/s", "bf16 matmul per GPU, the node's slowest GPU"),
    "d2d_copy_gbps": ("GB/s", "device memory copy per GPU (read + write), the node's slowest GPU"),
    "h2d_gbps": ("GB/s", "pinned host-to-device copy, the node's slowest GPU"),
    "d2h_gbps": ("GB/s", "device-to-host copy into pinned memory, the node's slowest GPU"),
    "local_allreduce_busbw_gbps": ("GB/s", "all-reduce bus bandwidth across the node's GPUs"),
    "pair_allreduce_busbw_gbps": ("GB/s", "all-reduce bus bandwidth with a neighbour node, the node's best pair"),
    "fleet_allreduce_busbw_gbps": ("GB/s", "all-reduce bus bandwidth across every node"),
    "ecc_uncorrected": ("errors", "uncorrectable ECC errors, summed over the node's GPUs"),
    "retired_pages": ("pages", "retired (or pending) memory pages / remapped rows, summed over GPUs"),
    "tool_allreduce_busbw_gbps": ("GB/s", "nccl-tests / rccl-tests all_reduce_perf in-place busbw at the largest size"),
    "tool_a2a_gbps": ("GB/s", "TransferBench a2a average bandwidth"),
    "gpu_telemetry": ("", "the SMI's metrics under load, recorded as they are (not judged)"),
}


def figure(name, value, unit=None, **details):
    """One measured figure in the shape every backend returns."""
    if unit is None:
        unit = FIGURES.get(name, ("", ""))[0]
    return {"name": name, "value": None if value is None else round(float(value), 4),
            "unit": unit, "details": details}


def allreduce_busbw(nbytes, seconds, ranks):
    """(algbw, busbw) in GB/s of one all-reduce of ``nbytes`` per rank over ``ranks`` ranks
    that took ``seconds``, as nccl-tests and rccl-tests define them (doc/PERFORMANCE.md)."""
    if seconds <= 0 or ranks < 1:
        raise ValueError("an all-reduce needs a positive time and at least one rank")
    algbw = nbytes / seconds / GB
    return algbw, algbw * (2.0 * (ranks - 1) / ranks)


def _summary(values):
    return {"median": statistics.median(values), "best": max(values), "worst": min(values),
            "repeats": len(values)}


# --------------------------------------------------------------------------------- cpu backend
def measure_cpu(gemm_n=2048, repeats=5, copy_mb=256, min_seconds=0.3):
    """numpy GEMM GFLOP/s and copy GB/s, each the median of ``repeats`` timed repeats.

    A repeat lasts at least ``min_seconds`` (several calls when one is quicker), so a CPU quota's
    period cannot hide inside one repeat."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((gemm_n, gemm_n), dtype=np.float32)
    b = rng.standard_normal((gemm_n, gemm_n), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up: BLAS threads, page faults
    flop = 2.0 * gemm_n ** 3
    gemm = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            np.matmul(a, b, out=out)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        gemm.append(flop * calls / elapsed / 1e9)

    count = int(copy_mb * 1024 * 1024 // 4)
    src = np.ones(count, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    copy = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            np.copyto(dst, src)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        copy.append(2.0 * src.nbytes * calls / elapsed / GB)  # read + write, as STREAM counts
    return [
        figure("gemm_gflops", statistics.median(gemm), n=gemm_n, dtype="float32", **_summary(gemm)),
        figure("mem_copy_gbps", statistics.median(copy), bytes=int(src.nbytes), **_summary(copy)),
    ]


# ------------------------------------------------------------------------------- torch backend
def torch_device(torch, requested=None):
    """The device to measure: ``requested`` if given, else cuda (CUDA or ROCm) when present."""
    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def _sync(torch, device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def _timed(torch, device, fn, repeats, warmup=2, min_seconds=0.05):
    """Seconds per call of ``fn``, one value per repeat; a repeat runs as many calls as fill
    ``min_seconds`` (one 8192^3 matmul lasts about a millisecond on a current GPU, too short to
    time alone)."""
    for _ in range(warmup):
        fn()
    _sync(torch, device)
    start = time.perf_counter()
    fn()
    _sync(torch, device)
    once = max(time.perf_counter() - start, 1e-6)
    calls = max(1, int(min_seconds / once) + 1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        _sync(torch, device)
        times.append((time.perf_counter() - start) / calls)
    return times


def measure_torch_device(torch, device, matmul_n=8192, repeats=5, copy_mb=1024):
    """bf16 matmul TFLOP/s, device copy GB/s and host<->device GB/s of one device."""
    dtype = torch.bfloat16
    a = torch.randn(matmul_n, matmul_n, device=device, dtype=dtype)
    b = torch.randn(matmul_n, matmul_n, device=device, dtype=dtype)
    times = _timed(torch, device, lambda: torch.matmul(a, b), repeats)
    flop = 2.0 * matmul_n ** 3
    tflops = [flop / t / 1e12 for t in times]
    del a, b
    count = int(copy_mb * 1024 * 1024 // 4)
    src = torch.empty(count, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    times = _timed(torch, device, lambda: dst.copy_(src), repeats)
    d2d = [2.0 * src.numel() * 4 / t / GB for t in times]
    result = {"matmul_tflops": tflops, "d2d_copy_gbps": d2d}
    if str(device).startswith("cuda"):
        host = torch.empty(count, dtype=torch.float32).pin_memory()
        times = _timed(torch, device, lambda: src.copy_(host, non_blocking=True), repeats)
        result["h2d_gbps"] = [host.numel() * 4 / t / GB for t in times]
        times = _timed(torch, device, lambda: host.copy_(src, non_blocking=True), repeats)
        result["d2h_gbps"] = [host.numel() * 4 / t / GB for t in times]
    else:  # the CPU device: "host" and "device" are one memory; measured all the same
        host = torch.empty(count, dtype=torch.float32)
        times = _timed(torch, device, lambda: src.copy_(host), repeats)
        result["h2d_gbps"] = [host.numel() * 4 / t / GB for t in times]
        times = _timed(torch, device, lambda: host.copy_(src), repeats)
        result["d2h_gbps"] = [host.numel() * 4 / t / GB for t in times]
    return result


def _torch_allreduce_worker(rank, world, port, backend, device_kind, nbytes, iters, queue):
    import torch
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        device = "cuda:%d" % rank if device_kind == "cuda" else "cpu"
        if device_kind == "cuda":
            torch.cuda.set_device(rank)
        tensor = torch.ones(int(nbytes // 4), dtype=torch.float32, device=device)
        for _ in range(2):
            dist.all_reduce(tensor)
        _sync(torch, device)
        dist.barrier()
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            dist.all_reduce(tensor)
            _sync(torch, device)
            times.append(time.perf_counter() - start)
        worst = torch.tensor([max(times), statistics.median(times)], dtype=torch.float64)
        if device_kind == "cuda":
            worst = worst.to(device)
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        if rank == 0:
            queue.put({"median_s": float(worst[1]), "max_s": float(worst[0])})
    finally:
        dist.destroy_process_group()


def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torch_local_allreduce(torch, ranks, device_kind, nbytes=256 * 1024 * 1024, iters=10):
    """All-reduce busbw across ``ranks`` local processes (one per GPU; gloo on the CPU)."""
    import torch.multiprocessing as mp

    backend = "nccl" if device_kind == "cuda" else "gloo"  # ROCm's torch maps nccl to RCCL
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_torch_allreduce_worker, args=(ranks, _free_port(), backend, device_kind,
                                                      nbytes, iters, queue),
                       nprocs=ranks, join=True, start_method="spawn")
    timing = queue.get()
    algbw, busbw = allreduce_busbw(nbytes, timing["median_s"], ranks)
    return figure("local_allreduce_busbw_gbps", busbw, ranks=ranks, bytes=int(nbytes),
                  algbw=round(algbw, 3), backend=backend, median_s=timing["median_s"])


def measure_torch(device=None, matmul_n=8192, repeats=5, copy_mb=1024, allreduce_mb=256,
                  allreduce_ranks=None, telemetry=None):
    """Every torch figure of this node; per-GPU values in ``details``, the slowest as value."""
    import torch

    device = torch_device(torch, device)
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    gpus = torch.cuda.device_count() if kind == "cuda" else 1
    per_device = {}
    names = []
    for index in range(gpus):
        dev = "cuda:%d" % index if kind == "cuda" else "cpu"
        if kind == "cuda":
            names.append(torch.cuda.get_device_name(index))
        per_device[dev] = measure_torch_device(torch, dev, matmul_n, repeats, copy_mb)
    figures = []
    for name in ("matmul_tflops", "d2d_copy_gbps", "h2d_gbps", "d2h_gbps"):
        medians = {dev: statistics.median(vals[name]) for dev, vals in per_device.items()}
        slowest = min(medians, key=medians.get)
        figures.append(figure(name, medians[slowest], slowest=slowest,
                              per_device={d: round(v, 3) for d, v in medians.items()},
                              dtype="bfloat16" if name == "matmul_tflops" else "float32",
                              n=matmul_n if name == "matmul_tflops" else None))
    ranks = allreduce_ranks or (gpus if kind == "cuda" else 2)
    if ranks >= 2:
        figures.append(torch_local_allreduce(torch, ranks, kind, allreduce_mb * 1024 * 1024))
    if kind == "cuda":
        figures.extend(gpu_telemetry(telemetry))
    for item in figures:
        item["details"].update({"device": kind, "torch": torch.__version__,
                                "gpus": names or None})
    return figures


# --------------------------------------------------------------------------- GPU telemetry
NVIDIA_QUERY = ("index,name,clocks.sm,clocks.max.sm,temperature.gpu,"
                "ecc.errors.uncorrected.volatile.total,retired_pages.pending,"
                "pcie.link.gen.current,pcie.link.width.current")


def parse_nvidia_smi_query(text, fields=NVIDIA_QUERY):
    """Rows of ``nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits``: one dict per
    GPU, "[N/A]"/"[Not Supported]" as None, numbers as numbers."""
    keys = fields.split(",")
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [v.strip() for v in line.split(",")]
        row = {}
        for key, value in zip(keys, values):
            if value.startswith("[") or value in ("N/A", ""):
                row[key] = None
                continue
            try:
                row[key] = float(value) if "." in value else int(value)
            except ValueError:
                row[key] = value
        rows.append(row)
    return rows


def gpu_telemetry(run=None):
    """Clocks, temperature, ECC and retired pages of the node's GPUs, read under load's end.

    NVIDIA: nvidia-smi's CSV query. AMD: ``amd-smi metric --json`` is recorded as details
    (its per-version key names differ; no ECC figure is derived from it without a real sample).
    Returns figures; none when no SMI answers."""
    run = run or _run
    fields = NVIDIA_QUERY
    rc, out, _ = run(["nvidia-smi", "--query-gpu=" + fields, "--format=csv,noheader,nounits"])
    if rc not in (0, 127):  # a field this GPU or driver does not know fails the whole query
        fields = "index,name,clocks.sm,clocks.max.sm,temperature.gpu"
        rc, out, _ = run(["nvidia-smi", "--query-gpu=" + fields, "--format=csv,noheader,nounits"])
    if rc == 0 and out.strip():
        rows = parse_nvidia_smi_query(out, fields)
        ecc = sum(r.get("ecc.errors.uncorrected.volatile.total") or 0 for r in rows)
        retired = sum(1 for r in rows if str(r.get("retired_pages.pending") or "").lower() == "yes")
        details = {"gpus": rows, "source": "nvidia-smi"}
        return [figure("ecc_uncorrected", ecc, **details),
                figure("retired_pages", retired, source="nvidia-smi")]
    rc, out, _ = run(["amd-smi", "metric", "--json"])
    if rc == 0 and out.strip():
        try:
            data = json.loads(out)
        except ValueError:
            data = out[-4000:]
        # recorded for the report; not judged (no ECC figure without a real sample to parse)
        return [figure("gpu_telemetry", None, "", source="amd-smi metric --json", raw=data)]
    return []


def _run(argv, timeout=120):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, "", "%s: command not found" % argv[0]
    except subprocess.TimeoutExpired:
        return 124, "", "%s: timed out after %ss" % (argv[0], timeout)
    return proc.returncode, proc.stdout, proc.stderr


# ------------------------------------------------------------------- nccl-tests / rccl-tests
_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\w+)\s+(\w+)\s+(-?\d+)\s+(.*)$")
_AVG = re.compile(r"#\s*Avg bus bandwidth\s*:\s*([0-9.eE+-]+)")
_OOB = re.compile(r"#\s*Out of bounds values\s*:\s*(\d+)\s*(\w+)")
_RANK = re.compile(r"#\s+Rank\s+(\d+)\s.*?\son\s+(\S+)\s+device\s+(\d+)\s+\[([^\]]*)\]\s+(.*)$")
_MPI_PREFIX = re.compile(r"^\[\d+,\d+\]<std(?:out|err)>:")


def _num(text):
    try:
        return float(text)
    except ValueError:
        return None


def parse_collective_perf(text):
    """The table of an nccl-tests / rccl-tests ``*_perf`` run (all_reduce_perf and its kin).

    Returns ``{"rows": [{size, count, type, redop, root, out_of_place: {time_us, algbw, busbw,
    wrong}, in_place: {...}}], "avg_busbw", "out_of_bounds", "ranks", "hosts", "devices"}``.
    Tolerates mpirun's ``[1,0]<stdout>:`` prefixes, collapsed whitespace and missing in-place
    columns. Raises ValueError when no table row is found."""
    rows, ranks, hosts, devices = [], 0, [], []
    avg = oob = None
    for raw in text.splitlines():
        line = _MPI_PREFIX.sub("", raw).rstrip()
        rank = _RANK.search(line)
        if rank:
            ranks += 1
            if rank.group(2) not in hosts:
                hosts.append(rank.group(2))
            model = rank.group(5).strip()
            if model not in devices:
                devices.append(model)
            continue
        match = _AVG.search(line)
        if match:
            avg = _num(match.group(1))
            continue
        match = _OOB.search(line)
        if match:
            oob = {"count": int(match.group(1)), "status": match.group(2)}
            continue
        if line.lstrip().startswith("#"):
            continue
        match = _ROW.match(line)
        if not match:
            continue
        rest = match.group(6).split()
        columns = ("time_us", "algbw", "busbw", "wrong")
        oop = dict(zip(columns, (_num(v) for v in rest[0:4]))) if len(rest) >= 3 else None
        inp = dict(zip(columns, (_num(v) for v in rest[4:8]))) if len(rest) >= 7 else None
        if oop is None:
            continue
        rows.append({"size": int(match.group(1)), "count": int(match.group(2)),
                     "type": match.group(3), "redop": match.group(4), "root": int(match.group(5)),
                     "out_of_place": oop, "in_place": inp})
    if not rows:
        raise ValueError("no result rows of an nccl-tests/rccl-tests table found")
    return {"rows": rows, "avg_busbw": avg, "out_of_bounds": oob, "ranks": ranks or None,
            "hosts": hosts, "devices": devices}


def collective_busbw(parsed, size=None, placement="in_place"):
    """busbw (GB/s) of the row of ``size`` bytes (default: the largest size), in place by default
    (AMD's and Azure's floors are in-place busbw at a given size)."""
    rows = parsed["rows"]
    row = max(rows, key=lambda r: r["size"]) if size is None else next(
        (r for r in rows if r["size"] == int(size)), None)
    if row is None:
        raise ValueError("no row of %s bytes in the table (sizes %s..%s)" % (
            size, rows[0]["size"], rows[-1]["size"]))
    values = row.get(placement) or row["out_of_place"]
    return row["size"], values["busbw"]


# ----------------------------------------------------------------------------- TransferBench
_TB_AVG = re.compile(r"Average\s+bandwidth\s+\(GPU Timed\)\s*:\s*([0-9.]+)\s*GB/s")
_TB_AGG = re.compile(r"Aggregate\s+bandwidth\s+\((GPU|CPU) Timed\)\s*:\s*([0-9.]+)\s*GB/s", re.I)
_TB_TEST = re.compile(r"^\s*Test\s+(\d+)\s*:")
_TB_LINE = re.compile(r"^\s*(Executor|Transfer|Aggregate)\b\s*([^|]*)\|\s*([0-9.]+)\s*GB/s\s*\|"
                      r"\s*([0-9.]+)\s*ms(?:\s*\|\s*(\d+)\s*bytes)?(?:\s*\|\s*(.*))?$")


def parse_transferbench(text):
    """TransferBench output: the ``a2a`` summary (matrix, average and aggregate bandwidths) and
    config-file tests (per test: executors, transfers, the CPU-timed aggregate).

    Returns ``{"a2a": {"average_gbps", "aggregate_gpu_gbps", "aggregate_cpu_gbps", "matrix"}
    or None, "tests": [{"test", "executors", "transfers", "aggregate_gbps"}]}``."""
    a2a = {}
    matrix = {}
    header = None
    tests = []
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("SRC\\DST") or line.startswith("SRC\\\\DST"):
            header = re.findall(r"GPU\s+(\d+)", line)
            continue
        if header and re.match(r"^GPU\s+\d+\s", line):
            fields = line.split()
            src = int(fields[1])
            values = fields[2:2 + len(header)]
            matrix[src] = {int(dst): _num(v) for dst, v in zip(header, values) if v != "N/A"}
            continue
        match = _TB_AVG.search(line)
        if match:
            a2a["average_gbps"] = float(match.group(1))
            continue
        match = _TB_AGG.search(line)
        if match and not line.startswith("Aggregate (") and "|" not in line:
            a2a["aggregate_%s_gbps" % match.group(1).lower()] = float(match.group(2))
            continue
        match = _TB_TEST.match(line)
        if match:
            current = {"test": int(match.group(1)), "executors": [], "transfers": [],
                       "aggregate_gbps": None}
            tests.append(current)
            continue
        match = _TB_LINE.match(line)
        if match and current is not None:
            kind, label, gbps, ms, nbytes, rest = match.groups()
            entry = {"label": label.strip(), "gbps": float(gbps), "ms": float(ms),
                     "bytes": int(nbytes) if nbytes else None, "desc": (rest or "").strip()}
            if kind == "Executor":
                current["executors"].append(entry)
            elif kind == "Transfer":
                current["transfers"].append(entry)
            else:
                current["aggregate_gbps"] = entry["gbps"]
    if matrix:
        a2a["matrix"] = matrix
    if not a2a and not tests:
        raise ValueError("no TransferBench summary or test results found")
    return {"a2a": a2a or None, "tests": tests}


def run_tools(tools, run=None):
    """Run the collective/transfer tools present (``{"all_reduce_perf": [argv...],
    "TransferBench": [argv...]}``, each argv a list) and turn their output into figures."""
    run = run or _run
    figures = []
    for name, argv in (tools or {}).items():
        if not argv or not shutil.which(argv[0]):
            continue
        rc, out, err = run(list(argv), timeout=1800)
        if rc != 0:
            figures.append(figure("tool_allreduce_busbw_gbps" if "reduce" in name else "tool_a2a_gbps",
                                  None, tool=name, error=(err or out)[-2000:]))
            continue
        if "TransferBench" in name:
            parsed = parse_transferbench(out)
            figures.append(figure("tool_a2a_gbps", (parsed["a2a"] or {}).get("average_gbps"),
                                  tool=name))
        else:
            parsed = parse_collective_perf(out)
            size, busbw = collective_busbw(parsed)
            figures.append(figure("tool_allreduce_busbw_gbps", busbw, tool=name, size=size,
                                  ranks=parsed["ranks"], avg_busbw=parsed["avg_busbw"]))
    return figures


# ------------------------------------------------------------------- all-reduce across nodes
def mpi_worker(nbytes, iters, warmup=2):
    """Runs under mpirun, one rank per node: numpy all-reduce timings; rank 0 prints one JSON
    line ``{"ranks", "hosts", "bytes", "median_s", "times_s", ...}``."""
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    ranks = comm.Get_size()
    send = np.ones(int(nbytes // 4), dtype=np.float32)
    recv = np.empty_like(send)
    for _ in range(warmup):
        comm.Allreduce(send, recv, op=MPI.SUM)
    comm.Barrier()
    times = []
    for _ in range(iters):
        comm.Barrier()
        start = MPI.Wtime()
        comm.Allreduce(send, recv, op=MPI.SUM)
        elapsed = MPI.Wtime() - start
        times.append(comm.allreduce(elapsed, op=MPI.MAX))  # the slowest rank's time
    hosts = comm.gather(MPI.Get_processor_name(), root=0)
    if comm.Get_rank() == 0:
        median = statistics.median(times)
        algbw, busbw = allreduce_busbw(send.nbytes, median, ranks)
        print(json.dumps({"ranks": ranks, "hosts": hosts, "bytes": int(send.nbytes),
                          "median_s": median, "times_s": times, "algbw_gbps": algbw,
                          "busbw_gbps": busbw}), flush=True)


def mpirun_command(hosts, script, python="python3", nbytes=64 * 1024 * 1024, iters=10,
                   mpirun="mpirun", mca=None, extra_args=None, slurm=None):
    """argv of the all-reduce across ``hosts`` (one rank per host).

    Without ``slurm``: ``mpirun --host a,b`` (OpenMPI starts the ranks over ssh). With ``slurm``
    (``{"partition", "time", "extra"}``): ``salloc -N n -w a,b ... mpirun``, so the site's Slurm
    grants the nodes and OpenMPI starts the ranks through srun. Every item is one argv element:
    nothing is parsed by a shell."""
    if len(hosts) < 2:
        raise ValueError("an all-reduce across nodes needs at least two hosts, got %r" % (hosts,))
    argv = []
    if slurm is not None:
        argv += ["salloc", "--nodes=%d" % len(hosts), "--nodelist=" + ",".join(hosts),
                 "--ntasks-per-node=1", "--job-name=mlperf-healthcheck"]
        if slurm.get("partition"):
            argv.append("--partition=" + slurm["partition"])
        if slurm.get("time"):
            argv.append("--time=" + str(slurm["time"]))
        argv += [str(a) for a in slurm.get("extra") or []]
    argv += [mpirun, "--allow-run-as-root", "-np", str(len(hosts)), "--map-by", "node"]
    if slurm is None:
        argv += ["--host", ",".join(hosts)]
    for key, value in (mca or {}).items():
        argv += ["--mca", str(key), str(value)]
    argv += [str(a) for a in extra_args or []]
    argv += [python, script, "--mpi-worker", "--bytes", str(int(nbytes)), "--iters", str(int(iters))]
    return argv


def parse_mpi_result(stdout):
    """The JSON line rank 0 printed (the last line that parses as a JSON object)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise ValueError("no all-reduce result line in mpirun's output: %s" % stdout[-1000:])


def node_allreduce(hosts, script, run=None, figure_name="pair_allreduce_busbw_gbps", **kwargs):
    """Run the all-reduce across ``hosts``; a figure (value None and the error when it failed:
    a failed collective is a finding, not a crash of the stage)."""
    run = run or _run
    argv = mpirun_command(hosts, script, **kwargs)
    rc, out, err = run(argv, timeout=600)
    if rc != 0:
        return figure(figure_name, None, hosts=list(hosts), error=(err or out)[-2000:].strip(),
                      rc=rc)
    try:
        result = parse_mpi_result(out)
    except ValueError as exc:
        return figure(figure_name, None, hosts=list(hosts), error=str(exc), rc=rc)
    return figure(figure_name, result["busbw_gbps"], hosts=list(hosts), ranks=result["ranks"],
                  bytes=result["bytes"], algbw=round(result["algbw_gbps"], 4),
                  median_s=result["median_s"])


# ------------------------------------------------------------------ the module's node command
def node_command(script, backend="auto", python="python3", options=None, runtime="none",
                 image="", container_flags=(), container_python="python3"):
    """argv that measures this node: the script on the host (``runtime`` none), or inside the
    benchmark image (``docker``/``podman run --rm``, the script's directory mounted read-only).

    ``options``: repeats, gemm_n, matmul_n, copy_mb, allreduce_mb, allreduce_ranks, device,
    tools (name -> argv list). Every value becomes one argv element; nothing goes through a shell."""
    if backend not in BACKENDS:
        raise ValueError("backend must be one of %s, got %r" % (", ".join(BACKENDS), backend))
    options = dict(options or {})
    args = ["--backend", backend, "--json", "-"]
    for key in ("repeats", "gemm_n", "matmul_n", "copy_mb", "allreduce_mb", "allreduce_ranks"):
        if options.get(key) not in (None, ""):
            args += ["--" + key.replace("_", "-"), str(int(options[key]))]
    if options.get("device"):
        args += ["--device", str(options["device"])]
    for name, argv in sorted((options.get("tools") or {}).items()):
        if not isinstance(argv, (list, tuple)) or not argv:
            raise ValueError("tools.%s: expected a command as a list of arguments, got %r" % (name, argv))
        args += ["--tool", "%s=%s" % (name, json.dumps([str(a) for a in argv]))]
    if runtime in (None, "", "none"):
        return [python, script] + args
    if runtime not in ("docker", "podman"):
        raise ValueError("runtime must be docker, podman or none, got %r" % (runtime,))
    if not image:
        raise ValueError("measuring inside the benchmark image needs the image's name")
    folder = os.path.dirname(os.path.abspath(script))
    return ([runtime, "run", "--rm"] + [str(f) for f in container_flags]
            + ["-v", "%s:%s:ro" % (folder, folder), image, container_python, script] + args)


def parse_node_output(stdout):
    """The JSON document the script printed (``--json -``)."""
    start = stdout.find("{")
    if start < 0:
        raise ValueError("no JSON result in the health check's output: %s" % stdout[-1000:])
    result = json.loads(stdout[start:])
    if not isinstance(result.get("figures"), list):
        raise ValueError("the health check's result has no figures")
    return result


class HealthcheckError(ValueError):
    """A caller's mistake (bad hosts, backend, runtime, tools): refused before anything runs."""


def module_run(params, run, check_mode=False):
    """What ``library/mlperf_healthcheck.py`` does with its parameters: the node measurement
    (``mode`` node) or the all-reduce across ``hosts`` (``mode`` allreduce). Bad input raises
    HealthcheckError naming the option; a measurement that fails is returned as the node's
    finding (``result.figures`` None and the error, or a figure without a value), not raised."""
    p = params
    if p["mode"] == "allreduce":
        try:
            argv = mpirun_command(p["hosts"], p["script"], python=p["python"], nbytes=p["bytes"],
                                  iters=p["iters"], mpirun=p["mpirun"], mca=p["mca"],
                                  extra_args=p["mpirun_args"], slurm=p["slurm"])
        except ValueError as exc:
            raise HealthcheckError("hosts: %s" % exc) from None
        if check_mode:
            return {"changed": False, "command": argv,
                    "figure": figure(p["figure"], None, skipped="check mode")}
        result = node_allreduce(p["hosts"], p["script"], run=run, figure_name=p["figure"],
                                python=p["python"], nbytes=p["bytes"], iters=p["iters"],
                                mpirun=p["mpirun"], mca=p["mca"], extra_args=p["mpirun_args"],
                                slurm=p["slurm"])
        result["details"]["pair"] = p["label"] or p["hosts"]
        return {"changed": False, "figure": result, "command": argv}
    try:
        argv = node_command(p["script"], p["backend"], p["python"], p["options"], p["runtime"],
                            p["image"], p["container_flags"], p["container_python"])
    except ValueError as exc:
        raise HealthcheckError("healthcheck: %s" % exc) from None
    if check_mode:
        return {"changed": False, "result": None, "command": argv}
    rc, out, err = run(argv)
    if rc != 0:  # the node's finding, reported with the others, not a crash of the play
        return {"changed": False, "command": argv, "result": {
            "figures": None, "error": "exit code %s: %s" % (rc, (err or out)[-2000:].strip())}}
    try:
        result = parse_node_output(out)
    except ValueError as exc:
        return {"changed": False, "command": argv, "result": {"figures": None, "error": str(exc)}}
    return {"changed": False, "result": result, "command": argv}


# ------------------------------------------------------------------------------ entry point
def choose_backend(backend):
    """``auto``: torch when it imports and sees a GPU (the benchmark image on a GPU node), else
    cpu (PyTorch on a CPU measures nothing the cpu backend does not, at many times its cost)."""
    if backend not in BACKENDS:
        raise ValueError("backend must be one of %s, got %r" % (", ".join(BACKENDS), backend))
    if backend != "auto":
        return backend
    try:
        import torch
    except ImportError:
        return "cpu"
    return "torch" if torch.cuda.is_available() else "cpu"


def measure(backend="auto", **options):
    """Every figure of this node for ``backend``: ``{"backend", "host", "figures", "seconds"}``."""
    import socket

    chosen = choose_backend(backend)
    start = time.monotonic()
    if chosen == "cpu":
        figures = measure_cpu(gemm_n=options.get("gemm_n", 2048),
                              repeats=options.get("repeats", 5),
                              copy_mb=options.get("copy_mb", 256))
    else:
        figures = measure_torch(device=options.get("device"),
                                matmul_n=options.get("matmul_n", 8192),
                                repeats=options.get("repeats", 5),
                                copy_mb=options.get("copy_mb", 1024),
                                allreduce_mb=options.get("allreduce_mb", 256),
                                allreduce_ranks=options.get("allreduce_ranks"))
    figures.extend(run_tools(options.get("tools")))
    return {"backend": chosen, "host": socket.gethostname(), "figures": figures,
            "seconds": round(time.monotonic() - start, 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--json", default="-", help="where the result goes (- for stdout)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gemm-n", type=int, default=2048)
    parser.add_argument("--matmul-n", type=int, default=8192)
    parser.add_argument("--copy-mb", type=int, default=None)
    parser.add_argument("--allreduce-mb", type=int, default=256)
    parser.add_argument("--allreduce-ranks", type=int, default=None)
    parser.add_argument("--tool", action="append", default=[], metavar="NAME=ARGV_JSON",
                        help='a tool to run and parse, e.g. all_reduce_perf=\'["all_reduce_perf","-b","8G","-e","8G","-g","8"]\'')
    parser.add_argument("--mpi-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, default=64 * 1024 * 1024, help=argparse.SUPPRESS)
    parser.add_argument("--iters", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mpi_worker:
        mpi_worker(args.bytes, args.iters)
        return 0
    tools = {}
    for item in args.tool:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error("--tool expects NAME=ARGV_JSON, got %r" % item)
        tools[name] = json.loads(value)
    options = {"device": args.device, "repeats": args.repeats, "gemm_n": args.gemm_n,
               "matmul_n": args.matmul_n, "allreduce_mb": args.allreduce_mb,
               "allreduce_ranks": args.allreduce_ranks, "tools": tools}
    if args.copy_mb:
        options["copy_mb"] = args.copy_mb
    result = measure(args.backend, **options)
    text = json.dumps(result, indent=1)
    if args.json == "-":
        print(text)
    else:
        with open(args.json, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        for item in result["figures"]:
            print("%-30s %12s %s" % (item["name"], item["value"], item["unit"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
