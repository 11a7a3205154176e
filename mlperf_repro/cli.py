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


def _score_set(directory: Path, args: argparse.Namespace) -> dict:
    """One set scored (SetScore.to_dict()) plus ``platform`` and ``versus_reference`` (catalog)."""
    from .catalog import CatalogError
    from .compare import catalog_reference
    from .scoring import find_result_files, score_directory

    score = score_directory(directory, ruleset=args.ruleset, benchmark=args.benchmark,
                            allow_partial=args.allow_partial).to_dict()
    try:
        score.update(catalog_reference(score, find_result_files(directory), system=args.system))
    except CatalogError as exc:  # a broken catalog must not hide the score
        score.update({"platform": {"catalog_platform": None, "identified_by": f"catalog: {exc}"},
                      "versus_reference": None})
    if args.system and score["platform"]["catalog_platform"] is None:
        print(f"mlperf-repro {args.command}: note: {score['platform']['identified_by']}", file=sys.stderr)
    return score


def cmd_score(args: argparse.Namespace) -> int:
    from .report import is_valid, reasons, score_line

    results = []
    for directory in _set_dirs(Path(args.dir)):
        score = _score_set(directory, args)
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
    invalid = [s for s in results if not is_valid(s)]
    for score in invalid:
        print(f"{score['directory']}: not a valid score: {'; '.join(reasons(score))}",
              file=sys.stderr)
    return 1 if invalid else 0


def _unique_names(dirs: list[Path]) -> list[str]:
    """Set names for a report: the directory name, with parents added where names collide."""
    parts = [d.resolve().parts for d in dirs]
    depth = [1] * len(dirs)
    for _ in range(8):
        names = ["/".join(p[-n:]) for p, n in zip(parts, depth)]
        clashing = {name for name in names if names.count(name) > 1}
        if not clashing:
            break
        depth = [n + 1 if name in clashing else n for name, n in zip(names, depth)]
    return names


def cmd_report(args: argparse.Namespace) -> int:
    from .report import REPORT_FILES, load_scored_sets, render_reports, write_files, write_reports

    dirs = [Path(d) for d in args.dirs]
    if len(dirs) == 1 and load_scored_sets(dirs[0]):  # a campaign the score stage has scored
        out = Path(args.out) if args.out else dirs[0]
        write_reports(dirs[0], out_dir=out)
    else:  # result logs: scored now; the report goes to --out, else the cwd (not beside the logs)
        out = Path(args.out) if args.out else Path.cwd()
        set_dirs = [s for d in dirs for s in _set_dirs(d)]
        sets = [(name, _score_set(d, args)) for name, d in zip(_unique_names(set_dirs), set_dirs)]
        title = args.title or f"MLPerf result report - {', '.join(d.name for d in dirs)}"
        write_files(out, render_reports(title, ", ".join(d.name for d in dirs), sets, set_dirs))
    for name in REPORT_FILES:
        print(out / name)
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from .package import package

    fields = {}
    for item in args.field or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--field {item!r}: expected KEY=VALUE")
        fields[key] = value
    result = package(args.dir, args.out, args.org, args.system, ruleset=args.ruleset,
                     benchmark=args.benchmark, system_json=args.system_json, system_fields=fields,
                     force=args.force)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        print(f"submission tree: {result.org_dir}")
        print(f"  system description: {result.system_json}")
        print(f"  results: {result.benchmark_dir} ({len(result.files)} files)")
        print(f"  package checker log: {result.log}")
        if result.empty_fields:
            print(f"  system fields left empty (fill them with --system-json/--field): "
                  f"{', '.join(result.empty_fields)}")
        print(f"package checker ({result.ruleset}): {result.verdict or 'no verdict'}")
    if not result.passed:
        for error in result.errors or [f"see {result.log}"]:
            print(f"package checker error: {error}", file=sys.stderr)
        return 1
    return 0


def _scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ruleset", help="training ruleset (default: the catalog's)")
    parser.add_argument("--benchmark", help="benchmark name (default: from the logs)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="score fewer runs than a submission needs (marked not valid)")
    parser.add_argument("--system", help="catalog platform (MI355X_1x8x1) to compare with; default: "
                                         "from the logs' config_filename / submission_platform")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlperf-repro", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mlperf-repro {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_commands(sub)  # run, plan, status

    score = sub.add_parser("score", help="score a directory of MLPerf result logs as MLCommons does")
    score.add_argument("dir", help="a set directory (result_*.txt) or a campaign directory of sets")
    _scoring_options(score)
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.set_defaults(func=cmd_score)

    report = sub.add_parser("report", help="write report.json, report.md and report.html (plots)",
                            description="A campaign scored by the score stage (*/score.json), or "
                                        "directories of result logs, scored now.")
    report.add_argument("dirs", nargs="+", metavar="dir",
                        help="results/<benchmark>/<system>/<campaign>, or set/campaign directories of logs")
    report.add_argument("--out", help="directory for the report files (default: the campaign directory "
                                      "for a scored campaign, else the current directory)")
    report.add_argument("--title", help="page title")
    _scoring_options(report)
    report.set_defaults(func=cmd_report)

    pkg = sub.add_parser("package", help="assemble an MLCommons submission tree and run the package checker",
                         description="Copies a set into OUT/ORG/results/<system>/<benchmark>/result_N.txt, "
                                     "writes OUT/ORG/systems/<system>.json and runs mlperf-logging's "
                                     "package checker on it (exit 0 only when it finds no errors).")
    pkg.add_argument("dir", help="a set directory (result_*.txt or *.log)")
    pkg.add_argument("--org", required=True, help="submitting organization (top directory, submitter)")
    pkg.add_argument("--system", required=True, help="system name (systems/<system>.json)")
    pkg.add_argument("--out", required=True, help="where the tree goes (outside dir)")
    pkg.add_argument("--system-json", help="system description JSON whose fields override the derived ones")
    pkg.add_argument("--field", action="append", metavar="KEY=VALUE",
                     help="a system description field (repeatable; overrides everything)")
    pkg.add_argument("--ruleset", help="training ruleset (default: the catalog's)")
    pkg.add_argument("--benchmark", help="benchmark name (default: from the logs)")
    pkg.add_argument("--force", action="store_true", help="replace this system/benchmark in an existing tree")
    pkg.add_argument("--json", action="store_true", help="print the result as JSON")
    pkg.set_defaults(func=cmd_package)
    return parser


# -- run, plan, status: the playbook through ansible-runner (mlperf_repro.api) ---------------

def _extravars(items: list[str] | None) -> dict:
    """``-e k=v`` (values read as YAML: 3 is a number, true a boolean), ``-e @file``, ``-e JSON``."""
    import shlex

    import yaml

    extravars: dict = {}
    for item in items or []:
        if item.startswith("@"):
            try:
                data = yaml.safe_load(Path(item[1:]).read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise ValueError(f"-e {item}: not YAML ({exc.problem})") from None
            if not isinstance(data, dict):
                raise ValueError(f"-e {item}: expected a mapping of variables")
            extravars.update(data)
        elif item.lstrip().startswith("{"):
            try:
                extravars.update(json.loads(item))
            except ValueError as exc:
                raise ValueError(f"-e {item!r}: not a JSON object ({exc})") from None
        else:
            for word in shlex.split(item):
                key, sep, value = word.partition("=")
                if not sep or not key:
                    raise ValueError(f"-e {word!r}: expected KEY=VALUE, @FILE or a JSON object")
                try:
                    extravars[key] = yaml.safe_load(value) if value else ""
                except yaml.YAMLError:
                    extravars[key] = value
    return extravars


def _runner_options(args: argparse.Namespace) -> dict:
    inventory = args.inventory
    if inventory and Path(inventory).exists():  # a path as the user typed it, from here
        inventory = str(Path(inventory).resolve())
    return dict(inventory=inventory, benchmark=args.benchmark, tags=args.tags,
                skip_tags=args.skip_tags, limit=args.limit, extravars=_extravars(args.extra_vars),
                private_data_dir=args.private_data_dir, playbook=args.playbook,
                keep_artifacts=args.keep_artifacts, vault_password_file=args.vault_password_file)


def _drive(handle, args: argparse.Namespace):
    """Show progress until the run ends; Ctrl-C cancels it (campaigns keep running detached)."""
    from .progress import make_renderer

    renderer = make_renderer(sys.stderr if args.json else sys.stdout, plain=args.plain or args.json,
                             interval=args.interval)
    try:
        while True:
            try:
                result = handle.wait(1.0)
            except KeyboardInterrupt:
                print("mlperf-repro: cancelling (Ctrl-C): stopping ansible-playbook; campaigns "
                      "already started keep running on their nodes", file=sys.stderr)
                handle.cancel()
                result = handle.wait()
            handle.progress.poll()
            renderer.update(handle.progress.snapshot())
            if result is not None:
                return result
    finally:
        renderer.close()


def _print_outcome(result, command: str) -> None:
    from .report import score_line

    print(f"{command}: {result.summary()}")
    for failed in result.failed_tasks:
        message = failed.message.replace("\n", "\n    ")
        print(f"  FAILED {failed.host}: {failed.task}: {message}")
    for host, directory in sorted(result.campaigns.items()):
        print(f"  campaign on {host}: {directory}")
    for directory, score in sorted(result.scores.items()):
        if score:
            print(f"  {directory}: {score_line(score)}")
    if result.status == "canceled" and result.campaigns:
        print("  the campaigns above keep running detached; `mlperf-repro run --tags run` "
              "re-attaches, `mlperf-repro status DIR` shows where they stand")
    print(f"  artifacts: {result.artifact_dir}")


def _exit_code(result) -> int:
    return {"successful": 0, "canceled": 130}.get(result.status, 1)


def cmd_run(args: argparse.Namespace) -> int:
    from .api import start

    result = _drive(start(**_runner_options(args)), args)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        _print_outcome(result, "run")
    return _exit_code(result)


def cmd_plan(args: argparse.Namespace) -> int:
    from .api import start

    result = _drive(start(check=True, diff=True, **_runner_options(args)), args)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
        return _exit_code(result)
    for diff in result.diffs:
        print(f"--- {diff.host}: {diff.task}" + (f" ({diff.path})" if diff.path else ""))
        print(diff.diff.rstrip("\n"))
    for host, commands in sorted(result.commands.items()):
        print(f"commands the campaign on {host} would run:")
        for line in commands:
            print(f"  {line}")
    hosts = sorted({c.host for c in result.changes})
    if result.ok:
        print(f"plan: {len(result.changes)} task(s) would change something"
              + (f" on {', '.join(hosts)}" if hosts else "") + "; nothing was changed")
    _print_outcome(result, "plan")
    return _exit_code(result)


def cmd_status(args: argparse.Namespace) -> int:
    import time

    from .api import status

    while True:
        campaigns = status(args.campaign_dir)
        if args.json:
            print(json.dumps([c.to_dict() for c in campaigns], indent=2, sort_keys=True))
        else:
            for campaign in campaigns:
                print(campaign.line() if campaign.host else f"{campaign.campaign_dir}: {campaign.line()}")
                for run in campaign.runs:
                    print(f"  {run.line()}")
        running = [c for c in campaigns if c.status in ("running", "pending") and c.live]
        if not args.watch or not running:
            return 0 if all(c.status in ("complete", "running", "pending") for c in campaigns) else 1
        time.sleep(args.watch)


def _add_run_commands(sub) -> None:
    def runner_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-i", "--inventory", help="inventory directory or file (default: the "
                                                      "project's inventory/local)")
        parser.add_argument("-b", "--benchmark", help="benchmark (sets mlperf_benchmark)")
        parser.add_argument("-t", "--tags", help="only these stages (comma-separated)")
        parser.add_argument("--skip-tags", help="skip these stages (comma-separated)")
        parser.add_argument("-l", "--limit", help="only these hosts (an Ansible pattern)")
        parser.add_argument("-e", "--extra-vars", action="append", metavar="K=V|@FILE|JSON",
                            help="extra variables (repeatable; K=V values are read as YAML)")
        parser.add_argument("--playbook", default="site.yml", help="playbook (default site.yml)")
        parser.add_argument("--private-data-dir", help="where each run's ansible-runner artifacts "
                                                       "go (default ~/.local/state/mlperf-repro/runs)")
        parser.add_argument("--keep-artifacts", type=int, metavar="N",
                            help="keep the artifacts of the last N runs there, this one included "
                                 "(default $MLPERF_REPRO_KEEP_ARTIFACTS, else 20; 0 keeps every run)")
        parser.add_argument("--vault-password-file", metavar="FILE",
                            help="ansible-vault password file (or script) for vaulted secrets")
        parser.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
        parser.add_argument("--interval", type=float, default=30.0,
                            help="plain mode: seconds between lines while only numbers change")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    run = sub.add_parser("run", help="run the reproduction (site.yml) with live progress")
    runner_options(run)
    run.set_defaults(func=cmd_run)
    plan = sub.add_parser("plan", help="dry run (--check --diff): rendered files' diffs and the "
                                       "commands each node would run; changes nothing")
    runner_options(plan)
    plan.set_defaults(func=cmd_plan)
    status = sub.add_parser("status", help="where a campaign stands (state.json and its logs)")
    status.add_argument("campaign_dir", help="a node's campaign directory or a collected "
                                             "results/<benchmark>/<system>/<campaign>")
    status.add_argument("--watch", type=float, metavar="SECONDS",
                        help="repeat every SECONDS until the campaign ends")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"mlperf-repro {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
