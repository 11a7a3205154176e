"""What a real H200 gave (tests/data/h200-device, recorded on this project's borrowed H200):

- the smoke benchmark, as the catalog's GPU_1x1x1 configures it (SMOKE_DEVICE=auto), ran its
  PyTorch backend on the NVIDIA GPU, and its logs score as compliant runs (issue 16, item 6);
- the platform definition names that GPU from its PCI device ID, accepts its memory and its
  driver branch (issue 16, item 1).
"""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from mlperf_repro.catalog import load_catalog
from mlperf_repro.platforms import load_platforms
from mlperf_repro.scoring import score_directory

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "h200-device"


def test_the_smoke_benchmark_ran_its_pytorch_backend_on_the_h200():
    spec = load_catalog().resolve("smoke", "GPU_1x1x1", gpu_platform="nvidia")
    assert spec["env"]["SMOKE_DEVICE"] == "auto" and spec["platform"] == "nvidia"
    for log in sorted(DATA.glob("result_*.txt")):
        text = log.read_text()
        backend = re.search(r'"key": "smoke_backend", "value": "([^"]+)"', text).group(1)
        assert backend.startswith("torch ") and backend.endswith(" on NVIDIA H200"), backend
        assert '"key": "submission_platform", "value": "GPU"' in text
    score = score_directory(DATA, allow_partial=True)
    runs = score.to_dict()["runs"]
    assert len(runs) == 3 and all(r["status"] == "success" for r in runs), runs
    assert all(r["compliant"] for r in runs), runs


def test_the_platform_definition_knows_the_recorded_gpu():
    root = ET.parse(DATA / "nvidia-smi-q-x.xml").getroot()
    gpu = root.find("gpu")
    device_id = gpu.findtext("pci/pci_device_id")           # "233510DE": device, then vendor
    nvidia = load_platforms().get("nvidia")
    assert device_id[4:].lower() == nvidia.pci_vendor_id
    assert nvidia.product_for_pci_id(device_id[:4]) == "H200"
    assert gpu.findtext("product_name") == "NVIDIA H200"
    total_mib = int(gpu.findtext("fb_memory_usage/total").split()[0])
    assert nvidia.expected_memory_gib("H200") <= total_mib / 1024 < 141
    driver = root.findtext("driver_version")
    assert int(driver.split(".")[0]) >= int(nvidia.version_checks["driver"]["min_version"])
