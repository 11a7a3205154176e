#!/usr/bin/env python3
"""Replay a published MLPerf result log as if the training ran now (mlperf-repro test stand-in).

Part of the stand-in images' /workspace/code (tests/infra/amd_layout; see its README.md): the
stand-in run_and_time.sh execs this instead of torchrun. It writes one published result file
(``result_<N>.txt`` of the set under MLPERF_REPLAY_LOGS) to stdout, line for line and byte for
byte, except that every ``:::MLLOG`` line's ``time_ms`` is moved by one constant, so the log
starts now: the *relative* times are exactly the published ones (so is the score), while the
wall-clock waits between lines are compressed.

Which file (N), first match wins:
  MLPERF_REPLAY_INDEX=N   result_N.txt.
  the ledger              MLPERF_REPLAY_LEDGER (default /results/.mlperf-replay-ledger.json when
                          /results is a writable directory; "none" turns it off): a SEED whose
                          replay has not finished replays the same file again (a resumed run,
                          the other nodes of a multi-node run); any other SEED takes the next
                          file, in order, cycling, and the file is marked done when its replay
                          ends. So NEXP runs replay distinct files whatever the launcher's seed
                          scheme (AMD's $RANDOM, ROOT_SEED + i, seed + 1000*i). Only rank 0
                          takes files; other ranks only look theirs up.
  SEED mod the number of files, without a ledger.
SEED is required unless MLPERF_REPLAY_INDEX is set (AMD's run_and_time.sh exits without one).

Time: the published run's span is divided by MLPERF_REPLAY_SPEEDUP (default 1) and capped at
MLPERF_REPLAY_MAX_SECONDS (default 3; 0 = no waiting at all). Lines are written at their
scaled offsets from the start (no drift), flushed one by one.

Ranks: only rank 0 (MLPERF_REPLAY_RANK, else SLURM_NODEID, else 0) prints the log, as only
rank 0 logs in the real benchmarks; another rank prints nothing and takes the same time.

Exit status: 0 after the whole file; 2 for a configuration error (named on stderr).
Standard library only (the images have python3, nothing else).
"""

import decimal
import fcntl
import json
import os
import re
import sys
import time

TIME_RE = re.compile(rb'("time_ms"\s*:\s*)(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)')
MARK = b":::MLLOG"


def fail(message):
    sys.stderr.write("replay_mllog: %s\n" % message)
    sys.exit(2)


def env_number(name, default, kind=float):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        fail("%s=%r: expected a number" % (name, raw))
    if value < 0:
        fail("%s=%r: expected a number >= 0" % (name, raw))
    return value


def result_files(directory):
    """{N: path} of result_N.txt in ``directory``."""
    try:
        names = os.listdir(directory)
    except OSError as exc:
        fail("MLPERF_REPLAY_LOGS=%s: %s" % (directory, exc.strerror))
    files = {}
    for name in names:
        m = re.match(r"result_([0-9]+)\.txt$", name)
        if m:
            files[int(m.group(1))] = os.path.join(directory, name)
    if not files:
        fail("no result_<N>.txt in %s" % directory)
    return files


def default_ledger():
    path = os.environ.get("MLPERF_REPLAY_LEDGER")
    if path is not None:
        return None if path in ("", "none") else path
    if os.path.isdir("/results") and os.access("/results", os.W_OK):
        return "/results/.mlperf-replay-ledger.json"
    return None


def _locked_ledger(path, change):
    """Run ``change(ledger) -> result`` on the ledger under an exclusive lock (nodes share the
    file); the ledger is written back when ``change`` altered it."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read()
        try:
            ledger = json.loads(text) if text.strip() else {}
        except ValueError:
            fail("ledger %s is not JSON; remove it to start again" % path)
        before = json.dumps(ledger, sort_keys=True)
        result = change(ledger)
        if json.dumps(ledger, sort_keys=True) != before:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(ledger, indent=1, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return result


def from_ledger(path, seed, indexes, allocate):
    """The index this seed replays. A seed whose replay has not finished keeps its file (a
    resumed run; another node); a new seed, or one whose replay finished (a launcher's $RANDOM
    repeating), takes the next file when ``allocate`` (rank 0), else None."""
    def change(ledger):
        seeds = ledger.setdefault("seeds", {})
        entry = seeds.get(str(seed))
        if entry is not None and (not entry.get("done") or not allocate):
            return int(entry["index"])
        if not allocate:
            return None
        position = int(ledger.get("next", 0))
        seeds[str(seed)] = {"index": indexes[position % len(indexes)], "done": False}
        ledger["next"] = position + 1
        return seeds[str(seed)]["index"]
    return _locked_ledger(path, change)


def mark_done(path, seed):
    def change(ledger):
        entry = ledger.get("seeds", {}).get(str(seed))
        if entry is not None:
            entry["done"] = True
    _locked_ledger(path, change)


def choose(files, rank):
    """(index, why, (ledger path, seed) to mark done afterwards or None)."""
    indexes = sorted(files)
    explicit = os.environ.get("MLPERF_REPLAY_INDEX", "")
    if explicit != "":
        try:
            index = int(explicit)
        except ValueError:
            fail("MLPERF_REPLAY_INDEX=%r: expected an integer" % explicit)
        if index not in files:
            fail("MLPERF_REPLAY_INDEX=%d: no result_%d.txt (have %s)" % (
                index, index, ", ".join(map(str, indexes))))
        return index, "MLPERF_REPLAY_INDEX", None
    seed_text = os.environ.get("SEED", "")
    if seed_text == "":
        fail("SEED is not set: expected an integer (the launcher sets one per run)")
    try:
        seed = int(seed_text)
    except ValueError:
        fail("SEED=%r: expected an integer" % seed_text)
    ledger = default_ledger()
    if ledger:
        try:
            index = from_ledger(ledger, seed, indexes, allocate=rank == "0")
        except OSError as exc:
            sys.stderr.write("replay_mllog: ledger %s not usable (%s): SEED mod %d\n" % (
                ledger, exc.strerror, len(indexes)))
        else:
            if index is not None:
                return index, "ledger %s, SEED %d" % (ledger, seed), (
                    (ledger, seed) if rank == "0" else None)
    return indexes[seed % len(indexes)], "SEED %d mod %d" % (seed, len(indexes)), None


def shifted(value, offset):
    """``value`` (the number as written) + ``offset`` (an int), written the same way."""
    number = decimal.Decimal(value.decode()) + offset
    if b"e" in value.lower() or b"." in value:
        return format(number, "f").encode()
    return str(int(number)).encode()


def main():
    directory = os.environ.get("MLPERF_REPLAY_LOGS") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), os.pardir, "replay")
    speedup = env_number("MLPERF_REPLAY_SPEEDUP", 1.0)
    if speedup == 0:
        fail("MLPERF_REPLAY_SPEEDUP=0: expected a number > 0")
    max_seconds = env_number("MLPERF_REPLAY_MAX_SECONDS", 3.0)
    rank = os.environ.get("MLPERF_REPLAY_RANK") or os.environ.get("SLURM_NODEID") or "0"
    files = result_files(directory)
    index, why, done = choose(files, rank)
    with open(files[index], "rb") as handle:
        lines = handle.read().splitlines(keepends=True)
    times = []
    for line in lines:
        m = TIME_RE.search(line) if MARK in line else None
        times.append(decimal.Decimal(m.group(2).decode()) if m else None)
    stamped = [t for t in times if t is not None]
    if not stamped:
        fail("%s has no :::MLLOG line with a time_ms" % files[index])
    first = stamped[0]
    span_s = float(max(stamped) - min(stamped)) / 1000.0
    wall_s = min(span_s / speedup, max_seconds)
    scale = wall_s / span_s if span_s > 0 else 0.0
    started = time.monotonic()
    offset = int(time.time() * 1000) - int(first)  # an integer: relative times stay exact
    sys.stderr.write("replay_mllog: result_%d.txt of %s (%s): %.1f s of published run in "
                     "%.2f s%s\n" % (index, os.path.abspath(directory), why, span_s, wall_s,
                                     "" if rank == "0" else ", rank %s prints nothing" % rank))
    sys.stderr.flush()
    if rank != "0":
        time.sleep(wall_s)
        return 0
    out = sys.stdout.buffer
    for line, t in zip(lines, times):
        if t is not None:
            due = started + float(t - first) / 1000.0 * scale
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            line = TIME_RE.sub(lambda m: m.group(1) + shifted(m.group(2), offset), line, count=1)
        if not line.endswith(b"\n"):
            line += b"\n"  # a process writes whole lines (a published file may lack its last newline)
        out.write(line)
        out.flush()
    if done:
        mark_done(*done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
