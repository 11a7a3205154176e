"""The ``mlperf-repro`` command line. Errors are one readable sentence, not a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__


def _set_dirs(path: Path) -> list[Path]:
    """A set directory (holds result files), or a campaign directory of per-node sets."""
    from .scoring import find_result_files

    if not path.is_dir():
        raise ValueError(f"{path} is not a directory")
    if find_result_files(path):
        return [path]
    sets = sorted(p for p in path.iterdir() if p.is_dir() and find_result_files(p))
    if not sets:
        raise ValueError(f"{path}: no result_*.txt or *.log files in it or in its subdirectories")
    return sets


def cmd_score(args: argparse.Namespace) -> int:
    from .report import score_line
    from .scoring import score_directory

    results = []
    for directory in _set_dirs(Path(args.dir)):
        score = score_directory(directory, ruleset=args.ruleset, benchmark=args.benchmark,
                                allow_partial=args.allow_partial).to_dict()
        results.append(score)
        if not args.json:
            print(f"{directory}")
            for run in score["runs"]:
                minutes = "-" if run["minutes"] is None else f"{run['minutes']:.4f}"
                print(f"  {run['file']:<24} {minutes:>10} min  {run['status']:<8} "
                      f"samples {run['samples_to_converge']}  "
                      f"{'compliant' if run['compliant'] else 'NOT compliant'}")
            print("  " + score_line(score))
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2, sort_keys=True))
    invalid = [s for s in results if not s["valid"]]
    for score in invalid:
        print(f"{score['directory']}: not a valid score: {'; '.join(score['reasons'])}",
              file=sys.stderr)
    return 1 if invalid else 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_reports

    written = write_reports(args.campaign_dir)
    for name in ("report.md", "report.json"):
        print(Path(args.campaign_dir) / name)
    return 0 if written is not None else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlperf-repro", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mlperf-repro {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="score a directory of MLPerf result logs as MLCommons does")
    score.add_argument("dir", help="a set directory (result_*.txt) or a campaign directory of sets")
    score.add_argument("--ruleset", default="6.0.0", help="training ruleset (default 6.0.0)")
    score.add_argument("--benchmark", help="benchmark name (default: from the logs)")
    score.add_argument("--allow-partial", action="store_true",
                       help="score fewer runs than a submission needs (marked not valid)")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.set_defaults(func=cmd_score)

    report = sub.add_parser("report", help="write report.md and report.json for a scored campaign")
    report.add_argument("campaign_dir", help="results/<benchmark>/<system>/<campaign>")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"mlperf-repro {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
