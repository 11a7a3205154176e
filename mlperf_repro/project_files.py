"""The project's shared files, in one home: the ``mlperf_repro`` package.

Templates and scripts that more than one role uses (the Slurm job script, the campaign runner
and its tunables reader, the smoke benchmark) live in the package, not inside a role; a role
receives a file's path as data (a variable whose default is ``'templates/job.sh.j2' |
mlperf_project_file``), so no role reaches into another's folder.
"""

from __future__ import annotations

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class ProjectFileError(ValueError):
    """A name that is not a file of the package."""


def project_file(name: str) -> str:
    """The absolute path of ``name`` (relative to the package, e.g. ``templates/job.sh.j2``).

    Raises ProjectFileError for an absolute name, one that leaves the package, or a file that
    is not there.
    """
    name = str(name)
    if not name or os.path.isabs(name):
        raise ProjectFileError(
            f"{name!r}: expected a path relative to the mlperf_repro package, e.g. templates/job.sh.j2")
    path = os.path.normpath(os.path.join(PACKAGE_DIR, name))
    if os.path.commonpath([path, PACKAGE_DIR]) != PACKAGE_DIR:
        raise ProjectFileError(f"{name!r}: leaves the mlperf_repro package ({PACKAGE_DIR})")
    if not os.path.isfile(path):
        raise ProjectFileError(f"{name!r}: no such file in the mlperf_repro package ({PACKAGE_DIR})")
    return path
