"""The fleet health check: parsers on published outputs, the verdict, the real CPU backend, a real
OpenMPI all-reduce on this machine, the PyTorch path on the CPU device (when torch is installed),
and the module's bad-input errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlperf_repro import health
from mlperf_repro.node import healthcheck as hc

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "health-outputs"
SCRIPT = ROOT / "mlperf_repro" / "node" / "healthcheck.py"


def read(name):
    return (DATA / name).read_text()


# ------------------------------------------------------------- parsers on published outputs
@pytest.mark.parametrize("name, rows, ranks, hosts, device, largest, busbw, avg", [
    ("rccl-tests-all_reduce_perf__MI300X-x8__1node__hisohara-aac8.txt",
     31, 8, 1, "AMD Instinct MI300X", 8589934592, 315.91, 110.464),
    ("rccl-tests-all_reduce_perf__MI300X-x16__2node__hisohara-aac10.txt",
     32, 16, 2, "AMD Instinct MI300X", 17179869184, 357.41, 92.3318),
    ("rccl-tests-all_reduce_perf-whitespace-collapsed__MI300X-x8__system-acceptance-docs.txt",
     31, 8, 1, "AMD Instinct MI300X", 8589934592, 315.84, 102.138),
    ("nccl-tests-all_reduce_perf__H100-x16__2node-tcp__a3mega.txt",
     31, 16, 2, "NVIDIA H100 80GB HBM3", 8589934592, 337.35, 70.742),
])
def test_collective_tables_parse_as_published(name, rows, ranks, hosts, device, largest, busbw, avg):
    parsed = hc.parse_collective_perf(read(name))
    assert len(parsed["rows"]) == rows
    assert parsed["ranks"] == ranks and len(parsed["hosts"]) == hosts
    assert parsed["devices"] == [device]
    assert parsed["avg_busbw"] == avg
    assert parsed["out_of_bounds"] == {"count": 0, "status": "OK"}
    assert hc.collective_busbw(parsed) == (largest, busbw)
    first = parsed["rows"][0]
    assert first["size"] == 8 and first["type"] == "float" and first["redop"] == "sum"


def test_busbw_at_a_size_and_out_of_place():
    parsed = hc.parse_collective_perf(read("rccl-tests-all_reduce_perf__MI300X-x8__1node__hisohara-aac8.txt"))
    # AMD's acceptance criterion is in-place busbw at 8 GiB; the published table has it
    assert hc.collective_busbw(parsed, 8589934592) == (8589934592, 315.91)
    assert hc.collective_busbw(parsed, 1073741824, "out_of_place") == (1073741824, 313.66)
    with pytest.raises(ValueError, match="no row of 12345 bytes"):
        hc.collective_busbw(parsed, 12345)


def test_the_published_busbw_is_algbw_times_2_n_minus_1_over_n():
    # the definition the CPU and torch backends use, checked on rccl-tests' own figures
    parsed = hc.parse_collective_perf(read("rccl-tests-all_reduce_perf__MI300X-x8__1node__hisohara-aac8.txt"))
    row = parsed["rows"][-1]
    algbw, busbw = hc.allreduce_busbw(row["size"], row["in_place"]["time_us"] / 1e6, parsed["ranks"])
    assert algbw == pytest.approx(row["in_place"]["algbw"], rel=0.01)
    assert busbw == pytest.approx(row["in_place"]["busbw"], rel=0.01)


def test_mpirun_prefixed_lines_parse_too():
    text = "".join("[1,0]<stdout>:" + line + "\n"
                   for line in read("nccl-tests-all_reduce_perf__H100-x16__2node-tcp__a3mega.txt").splitlines())
    parsed = hc.parse_collective_perf(text)
    assert parsed["avg_busbw"] == 70.742 and parsed["ranks"] == 16


def test_no_table_is_an_error_not_a_zero():
    with pytest.raises(ValueError, match="no result rows"):
        hc.parse_collective_perf("# nThread 1 nGpus 8\nNCCL failure common.cu:1005 'unhandled system error'\n")


def test_transferbench_a2a_summary():
    parsed = hc.parse_transferbench(read("transferbench-a2a-summary__MI300X-x8__system-acceptance-docs.txt"))
    a2a = parsed["a2a"]
    assert a2a["average_gbps"] == 35.776
    assert a2a["aggregate_gpu_gbps"] == 2003.44 and a2a["aggregate_cpu_gbps"] == 1411.163
    assert sorted(a2a["matrix"]) == list(range(8))
    assert a2a["matrix"][0][1] == 43.666 and 0 not in a2a["matrix"][0]  # N/A on the diagonal
    assert a2a["matrix"][7][6] == 42.553


def test_transferbench_config_file_tests():
    parsed = hc.parse_transferbench(read("transferbench-example-cfg__MI300X__system-acceptance-docs.txt"))
    assert [t["test"] for t in parsed["tests"]] == [1, 2, 3, 4, 5, 6]
    test3 = parsed["tests"][2]
    assert [e["gbps"] for e in test3["executors"]] == [35.921, 41.228]
    assert [t["gbps"] for t in test3["transfers"]] == [32.809, 39.603]
    assert test3["transfers"][1]["desc"] == "G1 -> GPU01:008 -> G0"
    assert test3["aggregate_gbps"] == 16.036
    assert parsed["tests"][3]["transfers"][0]["gbps"] == 1274.598


def test_nvidia_smi_query_rows():
    rows = hc.parse_nvidia_smi_query("0, NVIDIA H200, 1980, 1980, 41, 0, No, 5, 16\n"
                                     "1, NVIDIA H200, 1980, 1980, 39, [N/A], No, 5, 16\n")
    assert rows[0]["temperature.gpu"] == 41 and rows[0]["pcie.link.width.current"] == 16
    assert rows[1]["ecc.errors.uncorrected.volatile.total"] is None


# ------------------------------------------------------------------------------ the verdict
def fig(name, value, **details):
    return {"name": name, "value": value, "unit": "GB/s", "details": details}


def fleet(values, name="mem_copy_gbps"):
    return {f"node{i}": {"figures": [fig(name, v)]} for i, v in enumerate(values, start=1)}


def test_a_node_below_the_fleet_is_flagged_even_above_the_floor():
    outcome = health.evaluate(fleet([100, 101, 99, 85, 100]), {"mem_copy_gbps": {"min": 10, "source": "s"}})
    assert outcome["flagged"] == ["node4"]
    node4 = outcome["nodes"][3]
    assert node4["figures"]["mem_copy_gbps"]["status"] == "below fleet"
    assert "15 % below the fleet median 100" in node4["reasons"][0]


def test_within_tolerance_is_not_flagged():
    outcome = health.evaluate(fleet([100, 101, 99, 91, 100]), {})
    assert outcome["flagged"] == []


def test_below_the_floor_is_flagged_with_its_source():
    outcome = health.evaluate(fleet([300, 301, 299, 290]), {"mem_copy_gbps": {"min": 304, "source": "AMD"}})
    assert outcome["flagged"] == ["node1", "node2", "node3", "node4"]
    assert "below the floor 304 (AMD)" in outcome["nodes"][0]["reasons"][0]


def test_a_ceiling_flags_errors_and_is_not_compared_with_the_fleet():
    results = {f"n{i}": {"figures": [fig("ecc_uncorrected", v)]} for i, v in enumerate([0, 0, 3, 0])}
    outcome = health.evaluate(results, {"ecc_uncorrected": {"max": 0, "source": "policy"}})
    assert outcome["flagged"] == ["n2"]
    assert "above the ceiling 0" in outcome["nodes"][2]["reasons"][0]


def test_a_fleet_of_two_is_not_compared():
    assert health.evaluate(fleet([100, 50]), {})["flagged"] == []


def test_an_unmeasured_figure_and_an_unreachable_node_are_flagged():
    results = fleet([100, 100, 100])
    results["node2"]["figures"].append(fig("pair_allreduce_busbw_gbps", None, error="mpirun: ssh refused"))
    results["node4"] = None
    outcome = health.evaluate(results, {})
    assert outcome["flagged"] == ["node2", "node4"]
    assert "could not be measured: mpirun: ssh refused" in outcome["nodes"][1]["reasons"][0]
    assert outcome["nodes"][3]["reasons"][0].startswith("no health-check result")


def test_rounds_compare_within_each_round_so_a_load_swing_flags_nobody():
    # round 2 ran while the machines were busy: every node at half speed
    results = {f"n{i}": [{"figures": [fig("gemm_gflops", 100 + i)]},
                         {"figures": [fig("gemm_gflops", 50 + i / 2)]},
                         {"figures": [fig("gemm_gflops", 98 + i)]}] for i in range(6)}
    assert health.evaluate(results, {})["flagged"] == []
    results["n3"] = [{"figures": [fig("gemm_gflops", 40)]}, {"figures": [fig("gemm_gflops", 20)]},
                     {"figures": [fig("gemm_gflops", 39)]}]
    outcome = health.evaluate(results, {})
    assert outcome["flagged"] == ["n3"]
    assert outcome["nodes"][3]["figures"]["gemm_gflops"]["value"] == 39  # median of its rounds


def test_ring_pairs_name_the_slow_node_not_its_neighbours():
    hosts = [f"n{i}" for i in range(6)]
    pairs = health.pair_schedule(hosts)
    assert pairs == [["n0", "n1"], ["n1", "n2"], ["n2", "n3"], ["n3", "n4"], ["n4", "n5"], ["n5", "n0"]]
    figures = [fig("pair_allreduce_busbw_gbps", 2.0 if "n3" in p else 10.0, pair=p) for p in pairs]
    results = {h: {"figures": []} for h in hosts}
    outcome = health.evaluate(results, {}, pairs=figures)
    assert outcome["flagged"] == ["n3"]
    assert outcome["nodes"][2]["figures"]["pair_allreduce_busbw_gbps"]["value"] == 10.0


def test_pairs_of_two_and_one():
    assert health.pair_schedule(["a", "b"]) == [["a", "b"]]
    assert health.pair_schedule(["a"]) == []


def test_table_json_and_summary_line():
    outcome = health.evaluate(fleet([100, 101, 99, 50]), {}, product="cpu")
    outcome["on_fail"] = "exclude"
    text = health.table(outcome)
    assert "node4" in text and "50!" in text and "fleet median" in text
    json.dumps(outcome)  # the JSON beside the table
    line = health.summary_line(outcome, "exclude")
    assert line.startswith("healthcheck: excluding 1 of 4 nodes from the campaign: node4 (")
    assert "nodes failed, stopping before the runs: node4" in health.summary_line(outcome, "stop")
    assert "warn only" in health.summary_line(outcome, "warn")
    assert "| node4 |" in "\n".join(health.markdown(outcome))


def test_bad_tolerance_names_the_variable():
    for bad in ("ten", 0, 1.5, None):
        with pytest.raises(health.HealthError, match="healthcheck_fleet_tolerance"):
            health.evaluate(fleet([1, 2, 3]), {}, tolerance=bad)


# ------------------------------------------------------------------------ the thresholds
def test_the_packaged_thresholds_have_a_source_for_every_figure():
    data = health.load_thresholds()
    for product in ("cpu", "MI300X", "MI325X", "MI355X", "H100", "H200", "B200"):
        assert product in data["products"]
    assert health.thresholds_for(data, "MI355X")["local_allreduce_busbw_gbps"]["min"] == 390
    assert health.thresholds_for(data, "H200")["local_allreduce_busbw_gbps"]["min"] == 431
    assert health.thresholds_for(data, "H100")["local_allreduce_busbw_gbps"]["min"] == 460
    assert health.thresholds_for(data, "MI300X")["matmul_tflops"]["min"] == 600
    assert health.thresholds_for(data, "unknown-gpu") == {}
    names = set(hc.FIGURES)
    for product, entry in data["products"].items():
        assert set(entry["figures"]) <= names, product


@pytest.mark.parametrize("text, message", [
    ("products: {cpu: {figures: {gemm_gflops: {min: 1}}}}", "needs its source"),
    ("products: {cpu: {figures: {gemm_gflops: {min: 1, max: 2, source: s}}}}", "exactly one of 'min'"),
    ("products: {cpu: {figures: {gemm_gflops: {min: fast, source: s}}}}", "expected a number"),
    ("products: []", "expected a mapping 'products:'"),
    ("products: {cpu: {figures: [gemm_gflops]}}", "must be a mapping"),
])
def test_a_bad_thresholds_file_names_the_entry(tmp_path, text, message):
    path = tmp_path / "t.yml"
    path.write_text(text)
    with pytest.raises(health.HealthError, match=message) as err:
        health.load_thresholds(path)
    assert str(path) in str(err.value)


# ------------------------------------------------------------- commands (nothing via a shell)
def test_node_command_on_the_host_and_in_the_image():
    argv = hc.node_command("/w/hc/healthcheck.py", "torch", "/usr/bin/python3",
                           {"repeats": 3, "tools": {"all_reduce_perf": ["all_reduce_perf", "-b", "8G"]}})
    assert argv[:2] == ["/usr/bin/python3", "/w/hc/healthcheck.py"]
    assert argv[argv.index("--tool") + 1] == 'all_reduce_perf=["all_reduce_perf", "-b", "8G"]'
    image = hc.node_command("/w/hc/healthcheck.py", "auto", options={}, runtime="docker",
                            image="rocm/x:1; rm -rf /", container_flags=["--device=/dev/kfd"])
    assert image[:4] == ["docker", "run", "--rm", "--device=/dev/kfd"]
    assert "rocm/x:1; rm -rf /" in image and "/w/hc:/w/hc:ro" in image  # one argument, data
    with pytest.raises(ValueError, match="backend must be one of"):
        hc.node_command("/s.py", "gpu")
    with pytest.raises(ValueError, match="tools.x: expected a command as a list"):
        hc.node_command("/s.py", options={"tools": {"x": "all_reduce_perf -g 8"}})


def test_mpirun_over_ssh_and_through_slurm():
    ssh = hc.mpirun_command(["10.0.0.1", "10.0.0.2"], "/s.py", mca={"btl": "self,tcp"})
    assert ssh[:2] == ["mpirun", "--allow-run-as-root"] and ["--host", "10.0.0.1,10.0.0.2"] == ssh[6:8]
    slurm = hc.mpirun_command(["node1", "node2"], "/s.py", slurm={"partition": "p", "time": "00:05:00"})
    assert slurm[0] == "salloc" and "--nodelist=node1,node2" in slurm and "--partition=p" in slurm
    assert "--host" not in slurm
    with pytest.raises(ValueError, match="at least two hosts"):
        hc.mpirun_command(["node1"], "/s.py")


# ------------------------------------------------------------------- real measurements here
def test_cpu_backend_measures_for_real():
    result = hc.measure("cpu", gemm_n=256, repeats=2, copy_mb=16)
    names = [f["name"] for f in result["figures"]]
    assert names == ["gemm_gflops", "mem_copy_gbps"]
    for item in result["figures"]:
        assert item["value"] > 0 and item["details"]["repeats"] == 2
        assert item["details"]["worst"] <= item["value"] <= item["details"]["best"]


def test_the_script_runs_standalone_and_writes_json(tmp_path):
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--backend", "cpu", "--json", str(out),
                           "--repeats", "1", "--gemm-n", "128", "--copy-mb", "8"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["backend"] == "cpu" and len(result["figures"]) == 2
    assert "gemm_gflops" in proc.stdout


MPI_PYTHON = "/usr/bin/python3"


def _mpi_ready():
    if not shutil.which("mpirun"):
        return "openmpi-bin is not installed"
    probe = subprocess.run([MPI_PYTHON, "-c", "import mpi4py, numpy"], capture_output=True)
    return None if probe.returncode == 0 else "python3-mpi4py / python3-numpy not installed"


@pytest.mark.skipif(_mpi_ready() is not None, reason=_mpi_ready() or "")
def test_a_real_openmpi_allreduce_between_two_ranks():
    item = hc.node_allreduce(["localhost", "localhost"], str(SCRIPT), python=MPI_PYTHON,
                             nbytes=1 << 20, iters=3, extra_args=["--oversubscribe"],
                             mca={"btl": "self,tcp"})
    assert item["value"] and item["value"] > 0, item
    assert item["details"]["ranks"] == 2 and item["details"]["bytes"] == 1 << 20
    # a collective that cannot start is a finding with its error, not a crash
    broken = hc.node_allreduce(["localhost", "no-such-host.invalid"], str(SCRIPT), python=MPI_PYTHON,
                               nbytes=1 << 10, iters=1, mca={"plm_rsh_agent": "false"})
    assert broken["value"] is None and broken["details"]["error"]


@pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is None,
                    reason="torch is not installed in this venv (PyPI's wheel brings the CUDA "
                           "libraries, gigabytes); issue 18 runs the torch backend on an H200")
def test_torch_backend_on_the_cpu_device():
    result = hc.measure("torch", device="cpu", matmul_n=256, repeats=2, copy_mb=8,
                        allreduce_mb=1, allreduce_ranks=2)
    names = [f["name"] for f in result["figures"]]
    assert names == ["matmul_tflops", "d2d_copy_gbps", "h2d_gbps", "d2h_gbps",
                     "local_allreduce_busbw_gbps"]
    assert all(f["value"] > 0 for f in result["figures"])


# --------------------------------------------------------------------- the report's section
def test_the_report_carries_the_health_check(tmp_path):
    from tests.unit.test_report import AMD_LORA, copy_set  # the published set the report tests use
    from mlperf_repro.report import write_reports
    from mlperf_repro.scoring import score_directory

    root = tmp_path / "20261205T050000Z"
    node = copy_set(AMD_LORA, root / "node1")
    (node / "score.json").write_text(json.dumps(score_directory(node).to_dict()) + "\n")
    outcome = health.evaluate(fleet([100, 101, 99, 40]), {}, product="cpu")
    outcome.update(on_fail="exclude", excluded=outcome["flagged"])
    (root / "healthcheck.json").write_text(json.dumps(outcome))
    write_reports(root)
    md = (root / "report.md").read_text()
    assert "## Fleet health check" in md and "| node4 | 40 **!** | flagged |" in md
    assert "Excluded from the campaign: node4" in md
    assert json.loads((root / "report.json").read_text())["healthcheck"]["flagged"] == ["node4"]
    assert 'id="healthcheck"' in (root / "report.html").read_text()


# ------------------------------------------------------------- the module, on bad input
def run_module(args, capsys):
    import importlib.util
    from ansible.module_utils.testing import patch_module_args

    spec = importlib.util.spec_from_file_location("mlperf_healthcheck_under_test",
                                                  ROOT / "library" / "mlperf_healthcheck.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            mod.main()
    return json.loads(capsys.readouterr().out)


def test_module_names_the_bad_option_before_running_anything(capsys):
    out = run_module({"mode": "allreduce", "script": str(SCRIPT), "hosts": ["node1"]}, capsys)
    assert out["failed"] and out["msg"] == "hosts: an all-reduce across nodes needs at least two hosts, got ['node1']"
    out = run_module({"script": str(SCRIPT), "runtime": "docker"}, capsys)
    assert out["failed"] and "needs the image's name" in out["msg"]
    out = run_module({"script": str(SCRIPT), "options": {"tools": {"rccl": "all_reduce_perf -g 8"}}}, capsys)
    assert out["failed"] and "tools.rccl: expected a command as a list of arguments" in out["msg"]


def test_module_measures_this_machine(capsys):
    out = run_module({"script": str(SCRIPT), "python": sys.executable, "backend": "cpu",
                      "options": {"repeats": 1, "gemm_n": 128, "copy_mb": 8}}, capsys)
    assert not out.get("failed") and out["changed"] is False
    assert [f["name"] for f in out["result"]["figures"]] == ["gemm_gflops", "mem_copy_gbps"]
    # a script that fails is the node's finding, reported with the others
    out = run_module({"script": "/nonexistent/healthcheck.py", "python": sys.executable}, capsys)
    assert not out.get("failed") and out["result"]["figures"] is None
    assert "exit code 2" in out["result"]["error"]


def test_telemetry_nobody_can_judge_flags_nobody():
    def run(argv, timeout=None):
        if argv[0] == "nvidia-smi":
            return 127, "", "nvidia-smi: command not found"
        return 0, '[{"gpu": 0}]', ""
    (item,) = hc.gpu_telemetry(run)
    assert item["name"] == "gpu_telemetry" and item["value"] is None
    results = {h: {"figures": [dict(item)]} for h in ("a", "b", "c")}
    data = health.load_thresholds()
    assert health.evaluate(results, health.thresholds_for(data, "MI355X"))["flagged"] == []


def test_auto_measures_with_torch_only_where_torch_sees_a_gpu(monkeypatch):
    """PyTorch without a GPU measures nothing the cpu backend does not, at many times the cost
    (a bf16 8192^3 matmul on a CPU): auto picks torch only where torch sees a GPU."""
    import types

    for gpu, expected in ((True, "torch"), (False, "cpu")):
        fake = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda gpu=gpu: gpu))
        monkeypatch.setitem(sys.modules, "torch", fake)
        assert hc.choose_backend("auto") == expected
    monkeypatch.setitem(sys.modules, "torch", None)   # torch not installed: import fails
    assert hc.choose_backend("auto") == "cpu"
    assert hc.choose_backend("torch") == "torch"       # asked for by name: as asked
