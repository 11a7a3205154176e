"""One reader of ``:::MLLOG {json}`` lines, for every place that reads result logs.

Standard library only. Used by the controller's scoring reader (``mlperf_repro.mllog``), the
Slurm output splitter (``slurm_job``) and the detached campaign runner (``campaign.py``, which
imports it from beside itself on the node).

Like mlperf-logging (``re.sub('.*:::MLLOG ', ...)``, greedy), the JSON starts after the *last*
``:::MLLOG `` on the line; whatever comes before it (rank prefixes, timestamps, logger names)
is ignored, and so is the JSON's spacing (``"key":"run_stop"`` and ``"key": "run_stop"`` are
the same record).
"""

import json

TOKEN = ":::MLLOG "
_TOKEN_BYTES = TOKEN.encode("ascii")


def payload(line):
    """The text after the last ``:::MLLOG `` of ``line`` (str or bytes), stripped; None when the
    line holds no such token."""
    if isinstance(line, bytes):
        if _TOKEN_BYTES not in line:
            return None
        line = line.decode("utf-8", "replace")
    _, token, rest = line.rpartition(TOKEN)
    return rest.strip() if token else None


def decode(text, trailing_ok=False):
    """(record, None) for the JSON object ``text``, or (None, why not).

    With ``trailing_ok``, text after the object (another process's output joining an
    unterminated line) is ignored; otherwise it makes the line invalid, as for mlperf-logging.
    """
    try:
        if trailing_ok:
            record, _ = json.JSONDecoder().raw_decode(text)
        else:
            record = json.loads(text)
    except ValueError as exc:
        return None, ("invalid JSON after ':::MLLOG' (%s); expected one complete JSON object - "
                      "is the line truncated?" % exc)
    if not isinstance(record, dict):
        return None, ("expected a JSON object after ':::MLLOG', found %s"
                      % type(record).__name__)
    return record, None


def record(line):
    """The JSON object of an MLLOG ``line`` (str or bytes), text after it ignored; None for any
    other line or one whose JSON is unreadable."""
    text = payload(line)
    if text is None:
        return None
    found, _ = decode(text, trailing_ok=True)
    return found


def key(line):
    """The ``key`` of an MLLOG ``line`` (str), or None."""
    found = record(line)
    value = found.get("key") if found is not None else None
    return value if isinstance(value, str) else None


def metadata(found):
    """The ``metadata`` object of a record, or {} (absent or not an object)."""
    value = (found or {}).get("metadata")
    return value if isinstance(value, dict) else {}


def log_name(index):
    """The name of run ``index``'s MLLOG log in a campaign directory (as MLCommons' result sets
    name them: result_0.txt, result_1.txt, ...)."""
    return "result_%d.txt" % index
