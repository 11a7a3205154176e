"""Start ansible-playbook with secrets that were never written to disk (used by mlperf_repro.api).

ansible-runner records the whole environment of the process it starts in its ``command``
artifact (and ``env/envvars``). So the API starts this wrapper instead, with the secrets left out
of that environment, and hands them over through a FIFO in the run's private (0700) directory:
the parent writes one JSON object into it, this wrapper reads it, adds the variables to its
environment and execs the real command. A FIFO carries its data in memory only.

Secret extra variables (``-e``) arrive the same way, as environment variables; the extra-vars
file ansible-runner writes holds only a reference to each (an ``env`` lookup), never the value.

Usage: ``python secret_exec.py COMMAND [ARG...]``, ``MLPERF_REPRO_SECRET_FIFO`` naming the FIFO.
Standard library only: it runs before anything else of the project is imported.
"""

from __future__ import annotations

import json
import os
import sys

FIFO_VARIABLE = "MLPERF_REPRO_SECRET_FIFO"


def _read_secrets(path: str) -> dict:
    with open(path, "rb") as handle:  # blocks until the parent opens its end
        data = handle.read()
    payload = json.loads(data.decode("utf-8") or "{}")
    return payload if isinstance(payload, dict) else {}


def main(argv: list[str]) -> int:
    if not argv:
        print("secret_exec: expected a command to run", file=sys.stderr)
        return 2
    path = os.environ.pop(FIFO_VARIABLE, None)
    command = list(argv)
    if path:
        try:
            payload = _read_secrets(path)
        except (OSError, ValueError) as exc:
            print(f"mlperf-repro: could not receive the run's secrets from {path}: {exc}", file=sys.stderr)
            return 2
        os.environ.update({str(k): str(v) for k, v in payload.items()})
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"mlperf-repro: cannot start {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
