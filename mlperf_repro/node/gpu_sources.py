"""The GPU facts sources a platform definition may name (its ``gpu_facts_module``), by that name.

Preflight's probe reads a node's GPUs through the platform's source without naming a vendor:
``gather(source, run, checks)`` runs the source's collector and checks. Each source keeps its own
expectation names (its version's and its pending driver stack's); ``checks`` may hold them all,
a source reads its own. Shipped to nodes as ``ansible.module_utils.gpu_sources`` with the sources'
own files (static imports, so Ansible bundles them).
"""

try:
    from ansible.module_utils import gpu_facts as _amd
    from ansible.module_utils import nvidia_facts as _nvidia
except ImportError:  # the controller and tests
    from mlperf_repro.node import gpu_facts as _amd
    from mlperf_repro.node import nvidia_facts as _nvidia


class GpuSourceError(ValueError):
    """A source that does not exist, or checks it cannot read (named, before anything runs)."""


def _amd_check(checks):
    try:
        _amd.check_expectations(checks.get("min_rocm_version"))
    except ValueError as exc:
        raise GpuSourceError("gpus.min_rocm_version: %s" % exc)


def _amd_gather(run, checks):
    record = _amd.collect(run)
    problems = _amd.evaluate(record, expected_count=checks.get("expected_count"),
                             expected_model=checks.get("expected_model"),
                             min_rocm_version=checks.get("min_rocm_version"),
                             rocm_pending=bool(checks.get("rocm_pending")))
    return "amd_gpu", record, problems


def _nvidia_check(checks):
    try:
        _nvidia.check_expectations(checks.get("min_driver_version"), checks.get("expected_count"),
                                   checks.get("min_memory_mib"), checks.get("pci_models"))
    except ValueError as exc:
        raise GpuSourceError("gpus: %s" % exc)


def _nvidia_gather(run, checks):
    record = _nvidia.collect(run)
    problems = _nvidia.evaluate(record, expected_count=checks.get("expected_count"),
                                expected_model=checks.get("expected_model"),
                                min_driver_version=checks.get("min_driver_version"),
                                min_memory_mib=checks.get("min_memory_mib"),
                                pci_models=checks.get("pci_models"),
                                driver_pending=bool(checks.get("driver_pending")))
    return "nvidia_gpu", record, problems


#: gpu_facts_module (platforms.yml) -> (check the expectations, gather), and where its tools live
SOURCES = {"amd_gpu_facts": (_amd_check, _amd_gather, _amd.TOOL_DIRS),
           "nvidia_gpu_facts": (_nvidia_check, _nvidia_gather, _nvidia.TOOL_DIRS)}


def check(source, checks):
    """A source that does not exist or checks it cannot read: ``GpuSourceError`` naming them."""
    if source not in SOURCES:
        raise GpuSourceError("gpus.source: %r is not a GPU facts source; expected one of %s"
                             % (source, ", ".join(sorted(SOURCES))))
    SOURCES[source][0](checks or {})


def module_runner(module):
    """``run(argv)`` for an AnsibleModule, finding a tool where any source looks for it."""
    dirs = []
    for _check, _gather, tool_dirs in SOURCES.values():
        dirs.extend(d for d in tool_dirs if d not in dirs)
    return _amd.module_runner(module, tool_dirs=dirs)


def gather(source, checks, run):
    """``(fact name, record, problems)`` of the node's GPUs through ``source``, its tools run by
    ``run(argv) -> (rc, stdout, stderr)``."""
    check(source, checks)
    return SOURCES[source][1](run, checks or {})
