"""``ansible.module_utils.<name>`` as ``mlperf_repro.node.<name>`` in a test's own process.

On a node, Ansible ships the files of ``mlperf_repro/node/`` with a module as
``ansible.module_utils.<name>`` (ansible.cfg: ``module_utils = mlperf_repro/node``); the modules in
library/ import them only by that name. A test that runs a module file itself (in-process, or as
``python library/<module>.py args.json`` with ``module_env()``) gets the same files through this
alias; nothing else of ansible-core's module_utils changes.
"""

from __future__ import annotations

import importlib
import os
import importlib.abc
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "mlperf_repro" / "node"
SITE = Path(__file__).resolve().parent / "module_site"
PREFIX = "ansible.module_utils."


class _NodeAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``ansible.module_utils.<name>`` for the node files and gives the package's module."""

    def find_spec(self, fullname, path=None, target=None):
        name = fullname[len(PREFIX):] if fullname.startswith(PREFIX) else ""
        if not name or "." in name or not (NODE / f"{name}.py").is_file():
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module("mlperf_repro.node." + spec.name[len(PREFIX):])

    def exec_module(self, module):
        """The package's module is already executed."""


def install() -> None:
    """Make the alias effective in this process (once)."""
    if not any(isinstance(finder, _NodeAlias) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NodeAlias())


def module_env(environ=None) -> dict:
    """The environment for ``python library/<module>.py``: the checkout and the alias importable
    (module_site/sitecustomize.py installs it at interpreter start)."""
    env = dict(os.environ if environ is None else environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SITE), str(ROOT)])
    return env
