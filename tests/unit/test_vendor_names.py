"""The vendor test (issue 16, item 1): nothing outside a platform's definition names a vendor.

The project's code (roles, playbooks, library, mlperf_repro, filter_plugins, templates, site.yml,
ansible.cfg) is scanned for vendor names. Allowed: the platform definitions
(mlperf_repro/platforms.yml), the catalog's data (mlperf_repro/catalog.yml), each platform's
driver role and the files its definition lists under ``code``. Everything else needs an entry
below with its reason: UNAVOIDABLE (a name that is another project's API or a vendor's file read as
data) or PENDING (vendor wiring not yet moved behind the platform definition: the list of places
left to wire, which only shrinks). A file with an entry may hold only the vendor words listed for
it, so no new vendor name slips into an allowed file; an entry whose file no longer names a
vendor fails, so the list stays true.
"""

import re
from pathlib import Path

import pytest

from mlperf_repro.platforms import load_platforms

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("roles", "playbooks", "library", "mlperf_repro", "filter_plugins", "site.yml",
           "ansible.cfg")
DATA_FILES = {"mlperf_repro/platforms.yml", "mlperf_repro/catalog.yml"}
#: Vendor, product, driver, library and launcher names. ``amd64`` (an architecture) and the
#: MLPerf reference variables (DGXSYSTEM, DGXNNODES: every submitter's config uses them) are not.
VENDOR_RE = re.compile(
    r"(?<![A-Za-z0-9])(amd|amdgpu|amd-smi|rocm[a-z_-]*|rccl|hip[a-z]*|instinct|mi3[0-9]{2}[a-z]?"
    r"|gfx9[0-9a-f]{2}|kfd|nvidia[a-z_-]*|cuda[a-z_]*|cudnn|nccl|nvlink|nvswitch|nvcr|pyxis"
    r"|enroot|[hb][12]00|gb[23]00|hopper|blackwell)(?![A-Za-z0-9])", re.IGNORECASE)

#: path -> (kind, the vendor words allowed there (lower case), why)
ALLOWED = {
    # -- unavoidable: another project's names, or a vendor's files read as data
    "mlperf_repro/smoke/train.py": ("unavoidable", {"cuda", "cudnn", "amd", "mi355x", "h200"},
        "PyTorch's device API is torch.cuda on every GPU vendor (SMOKE_DEVICE=cuda); the docstring "
        "names the GPUs it was run on"),
    "mlperf_repro/node/vendor_files.py": ("unavoidable", {"amd"},
        "parses AMD's own launcher scripts (run_with_docker.sh, its docker options) as data"),
    "mlperf_repro/platforms.py": ("unavoidable", {"pyxis"},
        "the Slurm container launchers a definition may choose (docker, pyxis) are validated there"),
    # -- pending: AMD wiring still to move behind the platform definition (issue 16 phase 2,
    #    after issue 15 moves these files)
    "filter_plugins/mlperf.py": ("pending", {"mi355x", "rocm_version"},
        "validation reads rocm_version: a version check of the platform definition"),
    "library/mlperf_campaign.py": ("pending", {"mi355x", "rocm", "amd"},
        "campaign_launcher: amd (AMD's own launcher) and its rocm_agent_enumerator check"),
    "library/mlperf_package.py": ("pending", {"mi355x", "amd"},
        "system description fields: to come from the platform's vendor/title"),
    "library/mlperf_preflight.py": ("pending", {"rocm_version", "amd", "rocm", "rocm_pending",
                                                "mi355x", "mi350x", "mi325x", "rocm-smi"},
        "preflight's GPU/ROCm probe: to dispatch on the platform's gpu_facts_module and version_checks"),
    "library/mlperf_score.py": ("pending", {"mi355x"}, "examples in the module documentation"),
    "library/mlperf_slurm_job.py": ("pending", {"amd", "mi325x"},
        "AMD's run_with_docker_slurm.sh path (NVIDIA's is run.sub with Pyxis)"),
    "library/mlperf_vendor_check.py": ("pending", {"mi355x"}, "examples in the module documentation"),
    "mlperf_repro/api.py": ("pending", {"mi355x"}, "examples in docstrings"),
    "mlperf_repro/catalog.py": ("pending", {"mi355x", "mi325x", "amd"},
        "examples of config names and AMD's LoRA NEXP note in messages"),
    "mlperf_repro/cli.py": ("pending", {"mi355x"}, "an example in --help"),
    "mlperf_repro/compare.py": ("pending", {"mi355x", "amd", "mi325x", "nvidia", "gb200", "mi350x"},
        "report sentences say AMD's submission: to say the reference's submitter"),
    "mlperf_repro/mllog.py": ("pending", {"amd"}, "a comment on AMD's logs"),
    "mlperf_repro/node/campaign.py": ("pending", {"amd"},
        "campaign_launcher: amd (AMD's run_with_docker.sh run literally)"),
    "mlperf_repro/node/preflight.py": ("pending", {"amd"}, "AMD's launcher stops every container"),
    "mlperf_repro/node/slurm_job.py": ("pending", {"amd"}, "AMD's Slurm launcher's chmod 777"),
    "mlperf_repro/package.py": ("pending", {"amd", "instinct", "rocm_version", "rocm", "mi355x"},
        "system description (accelerator model, software): from the platform definition"),
    "mlperf_repro/report.py": ("pending", {"amd"}, "report wording: the reference's submitter"),
    "mlperf_repro/node/healthcheck.py": ("pending", {"nccl", "rccl", "cuda", "rocm", "nvidia",
                                                     "nvidia-smi", "nvidia_query",
                                                     "nvidia_smi_query", "amd"},
        "the health check's GPU telemetry reads each vendor's SMI (nvidia-smi's CSV query, "
        "amd-smi metric): to move into each platform's facts module; the docstring names the "
        "collective libraries' tests whose output it parses"),
    "mlperf_repro/inventory_check.py": ("pending", {"rocm_version", "rocm", "rocm_amdgpu_version",
                                                    "amd", "rocm_reboot_timeout"},
        "validation of the rocm role's variables: to follow the platform's driver role"),
    "mlperf_repro/smoke/run_and_time.sh": ("pending", {"amd"}, "comments: AMD's run_and_time.sh"),
    "playbooks/provision.yml": ("unavoidable", {"rocm", "rocm_serial", "nvidia_driver"},
        "the driver play's tags are each platform's driver role, so --tags <role> selects it "
        "(Ansible needs static tags; tests/unit/test_platform_wiring.py checks they are the "
        "stage table's); rocm_serial keeps its earlier name"),
    "playbooks/run.yml": ("pending", {"amd"}, "a play name"),
    "playbooks/tunables.yml": ("pending", {"amd"}, "a play name (AMD's runtime tunables)"),
    "roles/campaign/defaults/main.yml": ("pending", {"amd"},
        "campaign_launcher: amd and AMD's tunables and cache drop in comments"),
    "roles/campaign/meta/argument_specs.yml": ("pending", {"amd"}, "the same, documented"),
    "roles/campaign/tasks/main.yml": ("pending", {"amd", "rocm_agent_enumerator"},
        "the run's ROCm agent check: a platform check"),
    "roles/campaign/tasks/slurm_nodes.yml": ("pending", {"rocm_agent_enumerator", "amd"},
        "the same on Slurm nodes"),
    "library/mlperf_data_step.py": ("pending", {"rocm", "amd"}, "a comment"),
    "roles/preflight/defaults/main.yml": ("pending", {"rocm", "amd", "rocm-smi", "rocm_version"},
        "preflight_min_rocm_version: the platform's version_checks"),
    "roles/preflight/meta/argument_specs.yml": ("pending", {"rocm", "amd", "rocm_version"},
        "the same, documented"),
    "roles/preflight/tasks/main.yml": ("pending", {"rocm_pending", "rocm", "rocm_version"},
        "the same, passed to the probe"),
    "roles/preflight/vars/main.yml": ("pending", {"rocm", "rocm_pending"},
        "deferral to the rocm tag: the platform's driver_role"),
    "roles/render/defaults/main.yml": ("pending", {"amd"}, "AMD's launcher in job.sh"),
    "roles/render/templates/config.sh.j2": ("pending", {"amd"}, "a comment"),
    "mlperf_repro/templates/job.sh.j2": ("pending", {"amd"}, "AMD's Slurm launcher (job.sh)"),
    "mlperf_repro/node/vendor_check.py": ("pending", {"amd", "mi355x"}, "comments on AMD's config files"),
    "mlperf_repro/stages.py": ("pending", {"amd", "mi355x"},
        "the tunables stage's title (AMD's runtime_tunables.sh) and site.yml's example inventory"),
    "roles/score/meta/argument_specs.yml": ("pending", {"amd"}, "a description"),
    "roles/slurm_job/defaults/main.yml": ("pending", {"amd"}, "AMD's Slurm launcher"),
    "roles/validate/meta/argument_specs.yml": ("pending", {"amd", "mi355x", "mi325x", "rocm"},
        "descriptions"),
    "site.yml": ("pending", {"mi355x", "rocm", "amdgpu", "amd"},
        "play names: to come from the stage table and the platform"),
}


def platform_owned():
    owned = set(DATA_FILES)
    for platform in load_platforms().platforms.values():
        owned.add(f"roles/{platform.driver_role}")
        owned.update(platform.code)
    return owned


def _owned(rel, owned):
    return any(rel == o or rel.startswith(o + "/") for o in owned)


def scan(root=ROOT):
    """``{path: {vendor word (lower case): [line numbers]}}`` for every scanned file outside a
    platform's own."""
    owned = platform_owned()
    found = {}
    for top in SCANNED:
        base = root / top
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(root).as_posix()
            if "__pycache__" in rel or _owned(rel, owned):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            for number, line in enumerate(text.splitlines(), 1):
                for match in VENDOR_RE.finditer(line):
                    found.setdefault(rel, {}).setdefault(match.group(0).lower(), []).append(number)
    return found


def test_no_vendor_name_outside_the_platform_definitions():
    found = scan()
    unexpected = []
    for rel, words in sorted(found.items()):
        allowed = ALLOWED.get(rel, (None, set(), ""))[1]
        for word, lines in sorted(words.items()):
            if word not in allowed:
                unexpected.append(f"{rel}:{lines[0]}: {word!r}")
    assert not unexpected, (
        "vendor names outside a platform's definition (move the value into "
        "mlperf_repro/platforms.yml and read it from there):\n" + "\n".join(unexpected))


def test_every_allowance_is_still_needed():
    found = scan()
    stale = [rel for rel in ALLOWED if rel not in found]
    assert not stale, f"these files no longer name a vendor: remove their ALLOWED entries: {stale}"
    assert all(kind in ("unavoidable", "pending") and why for kind, _, why in ALLOWED.values())


def test_the_scan_finds_a_vendor_name_where_one_is_added(tmp_path):
    # the test itself can fail: a vendor's device option written into a role is found
    role = tmp_path / "roles" / "campaign" / "defaults"
    role.mkdir(parents=True)
    (role / "main.yml").write_text("campaign_flags: [--gpus=all]  # for NVIDIA GPUs\n"
                                   "arch: amd64\nsystem: DGXSYSTEM\n")
    assert scan(tmp_path) == {"roles/campaign/defaults/main.yml": {"nvidia": [1]}}


@pytest.mark.parametrize("name", sorted(load_platforms().platforms))
def test_each_platform_owns_only_files_that_exist(name):
    platform = load_platforms().get(name)
    missing = [p for p in platform.code if not (ROOT / p).exists()]
    assert not missing, f"platform {name!r} lists files the project does not have: {missing}"
