#!/usr/bin/env python3
"""Fleet convergence: `preflight,tunables,render` on 1..32 network-namespace SSH hosts.

    .venv/bin/python bench/fleet_bench.py [--sizes 1 8 16 32] [--configs ours stock] [--json]

Needs root (network namespaces) and openssh-server, iproute2. Brings up max(--sizes) SSH hosts
with :mod:`tests.infra.netns` (each a network namespace with its own sshd; ``/tmp`` is shared,
so every host gets its own directories under the bench's base directory). Each host is made a
plain node in its own overlays: a stand-in ``cpupower`` and, unless ``--machine-bashrc``, a
plain root ``~/.bashrc`` (this machine's runs ``pyenv init``, which bash reads for every SSH
command: about 0.1 s of CPU each, on the same two cores as the controller). Then for each
configuration and each N it runs, on the first N hosts,

    ansible-playbook site.yml -i <inventory of N hosts> --tags preflight,tunables,render

twice: the first run on fresh per-host directories (it creates the code directory, copies the
smoke benchmark, renders config_CPU_1x1x1.sh and applies the tunables under a per-host copy of
/proc and /sys: ``tunables_root``) and the idempotent re-run, which must report changed=0 on
every host. The validate play (tag ``always``) runs too, as it does for any user.

Configurations, on the same hosts:
  * ``ours``: the project's ansible.cfg, as a user runs it;
  * ``stock``: ansible-core's defaults (forks 5, gathering implicit, no pipelining, ControlPersist
    60s), with only roles_path, library, module_utils and filter_plugins set so that the
    project's code is found (written to <base>/stock.cfg);
  * ``mitogen`` (only with ``--mitogen DIR``, measured as an option, never the project's
    default): the project's ansible.cfg with Mitogen's ``mitogen_linear`` strategy from DIR, a
    directory holding ``ansible_mitogen`` (e.g. an unpacked ``pip download mitogen`` wheel).

Each (configuration, N) pair has its own SSH control-path directory, so no run reuses another's
persistent connections. Per-task wall times come from bench/callback_plugins/bench_profile.py
(profile_tasks' way of counting); ``cpu`` is the CPU time of ansible-playbook and its children
(controller side), ``machine_cpu`` the busy CPU time of the whole machine during the run (the
hosts' sshd and module processes run on the same machine). Prints a table, the ratios and the
targets of issue 9 (marginal cost per added host (T(32)-T(8))/24 <= 0.5 s, stock/ours >= 1.5 at
32 hosts, changed=0 on the re-run); --json prints everything as one JSON object instead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from tests.infra import netns  # noqa: E402

TAGS = "preflight,tunables,render"
MARGINAL_TARGET = 0.5   # seconds per added host, (T(32) - T(8)) / 24
STOCK_RATIO_TARGET = 1.5

# A node's kernel tunables as a fresh machine has them (not AMD's values): written under each
# host's tunables_root so that the first run applies them and the re-run finds nothing to do.
TUNABLE_FILES = {
    "proc/sys/kernel/nmi_watchdog": "1",
    "proc/sys/kernel/numa_balancing": "1",
    "proc/sys/kernel/randomize_va_space": "2",
    "sys/kernel/mm/transparent_hugepage/enabled": "always [madvise] never",
    "sys/kernel/mm/transparent_hugepage/defrag": "always defer defer+madvise [madvise] never",
    "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "powersave",
    "sys/devices/system/cpu/cpu0/cpuidle/state2/disable": "0",
}


def stock_cfg(path: Path) -> Path:
    path.write_text(
        "# ansible-core's defaults; only where the project's code is.\n"
        "[defaults]\n"
        f"roles_path = {ROOT}/roles\n"
        f"library = {ROOT}/library\n"
        f"module_utils = {ROOT}/mlperf_repro/node\n"
        f"filter_plugins = {ROOT}/filter_plugins\n")
    return path


def mitogen_env(directory: str | None) -> dict:
    """Environment selecting Mitogen's linear strategy from ``directory`` (holding ansible_mitogen)."""
    if not directory:
        raise SystemExit("--configs mitogen needs --mitogen DIR (a directory holding ansible_mitogen)")
    strategy = Path(directory).resolve() / "ansible_mitogen" / "plugins" / "strategy"
    if not strategy.is_dir():
        raise SystemExit(f"--mitogen {directory}: no {strategy}")
    return {"ANSIBLE_STRATEGY_PLUGINS": str(strategy), "ANSIBLE_STRATEGY": "mitogen_linear",
            "PYTHONPATH": str(Path(directory).resolve())}


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (all CPUs, /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def prepare_hosts(run_dir: Path, names: list[str]) -> None:
    """Fresh per-host directories: DATADIR/LOGDIR/workdir and a /proc,/sys copy for tunables."""
    for name in names:
        root = run_dir / name / "tunables-root"
        for rel, value in TUNABLE_FILES.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value + "\n")
        (root / "sys" / "module" / "amdgpu").mkdir(parents=True, exist_ok=True)  # driver loaded
        (run_dir / name / "data").mkdir(parents=True, exist_ok=True)


PLAIN_BASHRC = """# ~/.bashrc of a plain node, written by bench/fleet_bench.py in this host's own /root overlay.
# This machine's own /root/.bashrc runs `pyenv init`, which bash reads for every SSH command
# (about 0.1 s of CPU each): not what a node has, and not the toolkit's cost.
"""


def prepare_host_system(hosts: netns.NetnsHosts, name: str, plain_bashrc: bool) -> None:
    """Inside host ``name`` (its own overlays of /usr/local and /root; the machine is untouched):

    * a stand-in /usr/local/bin/cpupower: preflight checks that cpupower is installed when
      tunables are applied; under a tunables_root the tunables module writes the /sys files
      itself and never runs it;
    * with ``plain_bashrc``, root's ~/.bashrc of a plain node (see PLAIN_BASHRC).
    """
    script = ("mkdir -p /usr/local/bin && printf '#!/bin/sh\\nexit 0\\n' > /usr/local/bin/cpupower"
              " && chmod 0755 /usr/local/bin/cpupower")
    if plain_bashrc:
        script += " && cat > /root/.bashrc"
    proc = hosts.exec(name, ["sh", "-c", script], input=PLAIN_BASHRC if plain_bashrc else None)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: could not prepare the host: {proc.stderr}")


def write_inventory(hosts: netns.NetnsHosts, names: list[str], run_dir: Path) -> Path:
    per_host = str(run_dir / "{{ inventory_hostname }}")
    group_vars = dict(hosts.ansible_vars())
    group_vars.update({
        "mlperf_benchmark": "smoke", "mlperf_system": "CPU_1x1x1", "mlperf_nexp": 10,
        "mlperf_container_runtime": "none",
        "mlperf_datadir": per_host + "/data", "mlperf_logdir": per_host + "/logs",
        "mlperf_workdir": per_host + "/work", "mlperf_results_dir": str(run_dir / "results"),
        "mlperf_shared_storage": False, "mlperf_provision": False, "mlperf_site_env": {},
        # AMD's tunables, applied under a per-host copy of /proc and /sys (never this machine's)
        "tunables_mode": "apply", "tunables_root": per_host + "/tunables-root",
        "tunables_state_file": per_host + "/tunables-before.json",
    })
    data = {"all": {"vars": group_vars, "children": {
        "mlperf_controller": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}},
        "mlperf_nodes": {"hosts": {n: {"ansible_host": hosts.hosts[n].ip} for n in names}},
        "mlperf_staging": {"hosts": {names[0]: {}}},
    }}}
    path = run_dir / "inventory.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def playbook(inventory: Path, cfg: Path, control_dir: Path, profile: Path, log: Path,
             extra_env: dict | None = None) -> dict:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=str(cfg), ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir),
               ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "bench" / "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="bench_profile", BENCH_PROFILE_OUT=str(profile))
    env.update(extra_env or {})
    argv = [str(BIN / "ansible-playbook"), "site.yml", "-i", str(inventory), "--tags", TAGS]
    before_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = machine_busy()
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - t0
    busy = machine_busy() - busy0
    after_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"ansible-playbook failed (rc {proc.returncode}), output in {log}:\n"
                         + proc.stdout[-4000:] + proc.stderr[-2000:])
    prof = json.loads(profile.read_text())
    return {
        "seconds": seconds,
        "cpu": (after_cpu.ru_utime - before_cpu.ru_utime) + (after_cpu.ru_stime - before_cpu.ru_stime),
        "machine_cpu": busy,
        "recap": prof["recap"],
        "tasks": prof["tasks"],
    }


def stop_masters(control_dir: Path) -> None:
    """End the SSH ControlPersist masters of one control-path directory (by their socket)."""
    if not control_dir.is_dir():
        return
    for sock in control_dir.iterdir():
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                       capture_output=True, check=False, timeout=10)


def top_tasks(tasks: list[dict], n: int = 5) -> list[tuple[str, float]]:
    totals: dict[str, float] = {}
    for task in tasks:
        key = task["task"]
        totals[key] = totals.get(key, 0.0) + task["seconds"]
    return sorted(totals.items(), key=lambda kv: -kv[1])[:n]


def run_bench(args) -> dict:
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    missing = netns.missing_commands()
    if missing:
        raise SystemExit("not installed: %s (apt-get install -y --no-install-recommends "
                         "openssh-server iproute2)" % ", ".join(missing))
    sizes = sorted(set(args.sizes))
    names = ["node%02d" % i for i in range(1, max(sizes) + 1)]
    base = Path(tempfile.mkdtemp(prefix="mlperf-fleet-bench-", dir="/tmp"))
    base.chmod(0o755)
    cfgs = {"ours": ROOT / "ansible.cfg", "stock": stock_cfg(base / "stock.cfg"),
            "mitogen": ROOT / "ansible.cfg"}
    envs = {"mitogen": mitogen_env(args.mitogen)} if "mitogen" in args.configs else {}
    results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()[0]},
                     "tags": TAGS, "sizes": sizes, "plain_bashrc": not args.machine_bashrc,
                     "runs": {}}
    hosts = None
    control_dirs = []
    try:
        t0 = time.monotonic()
        hosts = netns.NetnsHosts(base, names).up()
        for name in names:
            prepare_host_system(hosts, name, plain_bashrc=not args.machine_bashrc)
        results["hosts_up_seconds"] = time.monotonic() - t0
        # One untimed run first (1 host, its own directories): the first ansible-playbook of a
        # session pays cold caches (bytecode, page cache) that no configuration should be charged.
        warm_dir = base / "runs" / "warm-up"
        prepare_hosts(warm_dir, names[:1])
        control_dirs.append(base / "cp" / "warm-up")
        playbook(write_inventory(hosts, names[:1], warm_dir), cfgs[args.configs[0]],
                 base / "cp" / "warm-up", warm_dir / "profile.json", warm_dir / "log",
                 envs.get(args.configs[0]))
        for config in args.configs:
            for n in sizes:
                label = f"{config}-{n}"
                run_dir = base / "runs" / label
                prepare_hosts(run_dir, names[:n])
                inventory = write_inventory(hosts, names[:n], run_dir)
                control_dir = base / "cp" / label
                control_dir.mkdir(parents=True)
                control_dirs.append(control_dir)
                entry = {}
                for phase in ("first", "rerun"):
                    res = playbook(inventory, cfgs[config], control_dir, run_dir / f"{phase}.json",
                                   run_dir / f"{phase}.log", envs.get(config))
                    nodes = {h: r for h, r in res["recap"].items() if h != "localhost"}
                    res["changed"] = {h: r["changed"] for h, r in nodes.items()}
                    res["nodes_seen"] = len(nodes)
                    entry[phase] = res
                    if not args.json:
                        print(f"{label:>9} {phase:>5}: {res['seconds']:6.1f} s  cpu {res['cpu']:6.1f} s"
                              f"  machine cpu {res['machine_cpu']:6.1f} s  changed "
                              f"{sum(res['changed'].values())} on {len(nodes)} hosts", flush=True)
                stop_masters(control_dir)
                results["runs"][label] = entry
    finally:
        for control_dir in control_dirs:
            stop_masters(control_dir)
        if hosts is not None:
            hosts.down()
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    results["machine"]["loadavg_after"] = os.getloadavg()[0]
    return summarize(results, args.configs, sizes)


def summarize(results: dict, configs: list[str], sizes: list[int]) -> dict:
    runs = results["runs"]
    table = []
    for n in sizes:
        row = {"N": n}
        for config in configs:
            entry = runs[f"{config}-{n}"]
            row[config] = {"first": entry["first"]["seconds"], "rerun": entry["rerun"]["seconds"],
                           "first_cpu": entry["first"]["cpu"], "rerun_cpu": entry["rerun"]["cpu"],
                           "first_machine_cpu": entry["first"]["machine_cpu"],
                           "rerun_changed": sum(entry["rerun"]["changed"].values()),
                           "rerun_changed_hosts": sorted(h for h, c in entry["rerun"]["changed"].items() if c)}
            base_n = runs[f"{config}-{sizes[0]}"]
            row[config]["first_vs_1"] = entry["first"]["seconds"] / base_n["first"]["seconds"]
            row[config]["rerun_vs_1"] = entry["rerun"]["seconds"] / base_n["rerun"]["seconds"]
        if "ours" in configs and "stock" in configs:
            row["stock_over_ours_first"] = row["stock"]["first"] / row["ours"]["first"]
            row["stock_over_ours_rerun"] = row["stock"]["rerun"] / row["ours"]["rerun"]
        table.append(row)
    results["table"] = table
    marginal = {}
    if 8 in sizes and 32 in sizes:
        for config in configs:
            for phase in ("first", "rerun"):
                marginal[f"{config}_{phase}"] = (runs[f"{config}-32"][phase]["seconds"]
                                                 - runs[f"{config}-8"][phase]["seconds"]) / 24
    results["marginal_seconds_per_host"] = marginal
    # The hosts' sshd and modules run on this machine's cores too; on a real fleet they run on
    # the nodes. The controller's own share: CPU of ansible-playbook and its children (workers,
    # ssh clients) per added host, spread over this machine's cores.
    cores = results["machine"]["cpus"] or 1
    controller = {}
    if 8 in sizes and 32 in sizes:
        for config in configs:
            for phase in ("first", "rerun"):
                cpu = (runs[f"{config}-32"][phase]["cpu"] - runs[f"{config}-8"][phase]["cpu"]) / 24
                node = ((runs[f"{config}-32"][phase]["machine_cpu"] - runs[f"{config}-32"][phase]["cpu"])
                        - (runs[f"{config}-8"][phase]["machine_cpu"] - runs[f"{config}-8"][phase]["cpu"])) / 24
                controller[f"{config}_{phase}"] = {"controller_cpu_seconds": cpu,
                                                   "controller_seconds_on_all_cores": cpu / cores,
                                                   "other_cpu_seconds": node}
    results["marginal_cpu_per_host"] = controller
    dominant = {}
    for config in configs:
        biggest = runs[f"{config}-{sizes[-1]}"]
        dominant[config] = {phase: top_tasks(biggest[phase]["tasks"]) for phase in ("first", "rerun")}
    results["dominant_tasks_at_max_n"] = dominant
    targets = {}
    if marginal.get("ours_first") is not None:
        targets["marginal_first"] = {"value": marginal["ours_first"], "target": f"<= {MARGINAL_TARGET}",
                                     "met": marginal["ours_first"] <= MARGINAL_TARGET}
        targets["marginal_rerun"] = {"value": marginal["ours_rerun"], "target": f"<= {MARGINAL_TARGET}",
                                     "met": marginal["ours_rerun"] <= MARGINAL_TARGET}
    last = table[-1]
    if "stock_over_ours_first" in last:
        targets[f"stock_over_ours_first_{last['N']}"] = {
            "value": last["stock_over_ours_first"], "target": f">= {STOCK_RATIO_TARGET}",
            "met": last["stock_over_ours_first"] >= STOCK_RATIO_TARGET}
        targets[f"stock_over_ours_rerun_{last['N']}"] = {
            "value": last["stock_over_ours_rerun"], "target": f">= {STOCK_RATIO_TARGET}",
            "met": last["stock_over_ours_rerun"] >= STOCK_RATIO_TARGET}
    targets["rerun_changed_0"] = {
        "value": sum(row[c]["rerun_changed"] for row in table for c in configs), "target": "0",
        "met": all(row[c]["rerun_changed"] == 0 for row in table for c in configs)}
    all_seen = all(runs[f"{c}-{n}"][p]["nodes_seen"] == n for c in configs for n in sizes
                   for p in ("first", "rerun"))
    targets["every_host_in_recap"] = {"value": all_seen, "target": "True", "met": all_seen}
    results["targets"] = targets
    return results


def print_report(results: dict, configs: list[str]) -> None:
    print(f"\nmachine: {results['machine']['cpus']} CPUs, load average before "
          f"{results['machine']['loadavg_before']:.2f}, after {results['machine']['loadavg_after']:.2f}; "
          f"{max(results['sizes'])} hosts up in {results['hosts_up_seconds']:.1f} s")
    head = f"{'N':>3}"
    for config in configs:
        head += f" | {config + ' first':>11} {'re-run':>7} {'T/T(1)':>7} {'chg':>4}"
    if "stock" in configs and "ours" in configs:
        head += " | stock/ours first re-run"
    print(head)
    for row in results["table"]:
        line = f"{row['N']:>3}"
        for config in configs:
            r = row[config]
            line += f" | {r['first']:>9.1f} s {r['rerun']:>5.1f} s {r['first_vs_1']:>7.2f} {r['rerun_changed']:>4}"
        if "stock_over_ours_first" in row:
            line += f" | {row['stock_over_ours_first']:>16.2f} {row['stock_over_ours_rerun']:>6.2f}"
        print(line)
    for key, value in results["marginal_seconds_per_host"].items():
        cpu = results["marginal_cpu_per_host"].get(key, {})
        print(f"marginal cost per added host (T(32)-T(8))/24, {key}: {value:.3f} s; per added host: "
              f"controller CPU {cpu.get('controller_cpu_seconds', 0):.3f} s "
              f"(= {cpu.get('controller_seconds_on_all_cores', 0):.3f} s on {results['machine']['cpus']} cores), "
              f"hosts' sshd+modules CPU {cpu.get('other_cpu_seconds', 0):.3f} s")
    for config, phases in results["dominant_tasks_at_max_n"].items():
        for phase, tasks in phases.items():
            print(f"slowest tasks, {config} {phase} at N={max(results['sizes'])}: "
                  + "; ".join(f"{name} {sec:.1f} s" for name, sec in tasks))
    print("targets:")
    for key, t in results["targets"].items():
        value = f"{t['value']:.3f}" if isinstance(t["value"], float) else t["value"]
        print(f"  {key}: {value} (target {t['target']}): {'met' if t['met'] else 'MISSED'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 16, 32],
                    help="fleet sizes (the first is the T(1) reference)")
    ap.add_argument("--configs", nargs="+", default=["ours", "stock"], choices=["ours", "stock", "mitogen"])
    ap.add_argument("--mitogen", metavar="DIR", help="for --configs mitogen: a directory holding ansible_mitogen")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--out", help="also write the JSON object to this file")
    ap.add_argument("--keep", action="store_true", help="keep the base directory (logs, profiles)")
    ap.add_argument("--machine-bashrc", action="store_true",
                    help="keep this machine's /root/.bashrc in the hosts (default: a plain node's)")
    ap.add_argument("--report", metavar="JSON", help="print the report of a saved --out file, run nothing")
    args = ap.parse_args(argv)
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        configs = [c for c in ("ours", "stock", "mitogen") if f"{c}-{saved['sizes'][0]}" in saved["runs"]]
        results = summarize(saved, configs, saved["sizes"])
        print_report(results, configs)
        return
    results = run_bench(args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print_report(results, args.configs)


if __name__ == "__main__":
    main()
