"""The ``kdbench`` command. Thin: parse, then import the heavy modules inside each command.

``kdbench --help`` never imports torch, so it answers instantly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK, EXIT_FAILED_CELLS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# kdbench.tables.LAYOUTS, repeated here because importing tables pulls in numpy and --help must stay
# fast; tests/test_cli.py checks the two agree.
LAYOUTS = ("default", "paper", "ablation")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, exit 2 (argparse's default prints the whole usage first)."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> Parser:
    p = Parser(prog="kdbench", description="Benchmark knowledge-distillation methods across domains.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    ls = sub.add_parser("list", help="show every method, task and teacher kind, and broken plugins")
    ls.add_argument("--strict-plugins", action="store_true", help="fail if any plugin fails to load")
    ls.add_argument("-v", "--verbose", action="store_true", help="also every method's options (type, default)")

    sh = sub.add_parser("show", help="a method's description, teacher and options (type, default)")
    sh.add_argument("method")

    r = sub.add_parser("run", help="run a grid of cells (method × task × domain × fraction × seed)",
                       description="Run every cell of the grid; finished cells are skipped, so rerunning "
                       "resumes. Command-line options override --config, which overrides the defaults.")
    add_run_options(r)
    r.add_argument("--config", type=Path, help="YAML file of run options (keys as the long options)")

    t = sub.add_parser("table", help="significance-tested tables of a results directory",
                       description="Tables of a results directory: mean ± sd over seeds, tests against a "
                       "baseline (Holm-corrected), best and tied marks, cost, and a data-scarce table when "
                       "several fractions were run.")
    t.add_argument("results_dir", type=Path)
    t.add_argument("--layout", choices=LAYOUTS, default="default",
                   help="default: methods × domains per task and fraction; paper: the Meta-KD main table; "
                   "ablation: full Meta-KD and its ablations, each tested against full Meta-KD")
    t.add_argument("--select", choices=["dev"], help="dev: each method at its configuration with the best mean "
                   "dev accuracy (per domain and fraction), with the configuration chosen and the budget")
    t.add_argument("--format", choices=["rich", "markdown", "latex", "csv"],
                   help="output format (default: from -o's suffix, else rich)")
    t.add_argument("-o", "--output", type=Path, help="write to FILE (atomically) instead of the terminal")
    t.add_argument("--baseline", help="method the others are tested against (default: student, else the first)")
    t.add_argument("--reference", type=Path, help="YAML or CSV of published numbers to show beside ours")
    t.add_argument("--resample-seed", type=int, default=0, metavar="N",
                   help="seed of the Monte-Carlo part of the tests, used only with 7+ seeds (everything else "
                   "is computed exactly, so the tables do not depend on it; default: %(default)s)")
    t.add_argument("--equivalence-margin", type=float, metavar="POINTS",
                   help="mark rows as tied only when a TOST shows them equivalent to every best row of "
                   "their block within ±POINTS accuracy points (default: tied = not significantly different)")

    pw = sub.add_parser("power", help="seeds (and test examples) needed to detect an effect on the Average",
                        description="From a run's own seed and test-example variance: for each student method "
                        "vs the baseline on the Average (the primary family, Holm), the smallest effect the run "
                        "could detect with 80% power, and the seeds (or test examples per domain) needed to "
                        "detect --effect points.")
    pw.add_argument("results_dir", type=Path)
    pw.add_argument("--effect", default="1.0",
                    help="effect(s) to detect, accuracy points, comma-separated (default: %(default)s)")
    pw.add_argument("--baseline", help="method the others are tested against (default: student, else the first)")
    pw.add_argument("--layout", choices=LAYOUTS, default="default",
                    help="the table layout whose primary family is sized (as kdbench table): paper leaves out "
                    "Meta-KD's ablation rows; ablation tests them against full Meta-KD (default: %(default)s)")

    ex = sub.add_parser("export", help="copy a kept student (a Hugging Face folder with a model card)",
                        description="Copy the student of one cell, kept by `kdbench run --save-students`, to "
                        "a new folder that AutoModelForSequenceClassification and AutoTokenizer load.")
    ex.add_argument("results_dir", type=Path)
    ex.add_argument("--cell", required=True, help="cell key, e.g. amazon__books__kd__f0.2__s0")
    ex.add_argument("-o", "--output", type=Path, required=True, help="new folder to write")

    pl = sub.add_parser("plot", help="accuracy against data fraction (or Δ vs the baseline), a panel per domain "
                        "plus the average")
    pl.add_argument("results_dir", type=Path)
    pl.add_argument("-o", "--output", type=Path, required=True, help="figure file (.png, .pdf or .svg)")
    pl.add_argument("--kind", choices=["curves", "delta"], default="curves",
                    help="curves: accuracy against the data fraction; delta: each method's difference from the "
                    "baseline with its 95%% interval and significance marker, as in the table (default: %(default)s)")
    pl.add_argument("--layout", choices=LAYOUTS, default="default",
                    help="with --kind delta: the table layout whose comparisons are drawn (default: %(default)s)")
    pl.add_argument("--baseline", help="with --kind delta: method the others are tested against (default: "
                    "student, else the first)")
    rp = sub.add_parser("report", help="one self-contained HTML page: configuration, every table, figures, "
                        "failed cells", description="Write a self-contained HTML report of a results "
                        "directory (no network needed to view it).")
    rp.add_argument("results_dir", type=Path)
    rp.add_argument("-o", "--output", type=Path, required=True, help="HTML file to write (atomically)")
    rp.add_argument("--layout", choices=LAYOUTS, default="default",
                    help="table layout (as kdbench table)")
    rp.add_argument("--baseline", help="method the others are tested against (default: student, else the first)")
    rp.add_argument("--reference", type=Path, help="YAML or CSV of published numbers to show beside ours")
    return p


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`~kdbench.config.RunConfig` field, from the field's metadata.

    Every option defaults to ``None`` ("not given"), so that ``RunConfig.from_sources`` can merge
    command line > config file > defaults; the help shows the field's own default.
    """
    import dataclasses

    from kdbench.config import RunConfig

    for f in dataclasses.fields(RunConfig):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": option_help(f)}
        if meta.get("action"):
            kwargs["action"] = meta["action"]
        if meta.get("metavar") or meta.get("choices"):
            kwargs["metavar"] = meta["metavar"] or "{" + ",".join(meta["choices"]) + "}"
        parser.add_argument(meta.get("flag") or "--" + f.name.replace("_", "-"), **kwargs)


def option_help(f: Any) -> str:
    """A RunConfig field's help text with its default appended (none for switches)."""
    import dataclasses

    text = str(f.metadata["help"])
    default = f.default
    if f.metadata.get("action") in ("store_true", "store_false") or default is dataclasses.MISSING:
        shown = None
    elif default is None:
        shown = f.metadata.get("none")
    elif isinstance(default, tuple):
        shown = ",".join(str(v) for v in default) or None
    else:
        shown = str(default)
    return (f"{text} (default: {shown})" if shown else text).replace("%", "%%")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    from kdbench.errors import KDBenchError

    try:
        return int(COMMANDS[args.command](args))
    except KDBenchError as exc:
        print(f"kdbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kdbench: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def cmd_list(args: argparse.Namespace) -> int:
    from kdbench import registry, report

    report.print_registry(registry.load(strict=args.strict_plugins), verbose=args.verbose)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from kdbench import registry, report

    reg = registry.load()
    report.print_method(reg.methods.get(args.method))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    import shlex
    import signal

    from kdbench.config import RunConfig

    # A shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: restore it, so that `kill -INT` always stops a run cleanly (exit 130).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    cli: dict[str, Any] = {k: v for k, v in vars(args).items() if k not in ("command", "config", "argv")}
    config = RunConfig.from_sources(cli, args.config)

    from kdbench import registry, report, runner

    reg = registry.load(strict=config.strict_plugins)
    if config.log:
        from kdbench import tracking

        tracking.register(reg, config)
    quiet_libraries()
    command = shlex.join(["kdbench", *args.argv])  # for the model cards of saved students
    reg.pm.register(report.RichReporter(), name="kdbench-reporter")  # the terminal: a plugin on the hooks
    summary = runner.run(config, reg, command=command)
    report.print_summary(summary, config.results_dir)
    return summary.exit_code


def _check_results_dir(path: Path) -> None:
    from kdbench.errors import KDBenchError

    if not path.is_dir():
        raise KDBenchError(f"{path} is not a results directory; pass the --results-dir of a run")


def _check_output(path: Path | None) -> None:
    """``-o FILE`` must name a file in an existing directory (missing parents are not created)."""
    from kdbench.errors import KDBenchError

    if path is None:
        return
    if not str(path).strip() or path.is_dir() or str(path).endswith(("/", "\\")):
        raise KDBenchError(f"-o {str(path)!r}: not a file name; give a file such as table.md")
    parent = path.parent
    if not parent.is_dir():
        raise KDBenchError(f"-o {path}: directory {parent} does not exist; create it first")


def cmd_table(args: argparse.Namespace) -> int:
    from kdbench import export, results, tables
    from kdbench.errors import KDBenchError

    _check_results_dir(args.results_dir)
    _check_output(args.output)
    fmt = export.resolve_format(args.format, args.output)
    refs = None
    if args.reference is not None:
        from kdbench import references

        refs = references.load(args.reference)
    task_domains = None
    if args.layout == "paper":  # every domain of each task, so that the ones not run show as missing
        from kdbench import registry

        reg = registry.load()
        task_domains = {name: e.cls.domains for name, e in reg.tasks.entries.items()}
    selection = None
    if args.select == "dev":
        from kdbench import selection as sel

        if args.layout == "ablation":
            raise KDBenchError("--select dev picks one configuration per method; the ablation layout shows "
                               "them all: use one or the other")
        cells, problems = results.scan_cells(args.results_dir)
        for line in problems:
            _warn(line)
        selection = sel.select_dev(cells)
        result = tables.build_tables(selection.cells, args.layout, args.baseline, refs, task_domains,
                                     [m for m in tables.method_order(args.results_dir) if m in selection.budgets]
                                     or list(selection.budgets), resample_seed=args.resample_seed,
                                     equivalence_margin=args.equivalence_margin, problems=problems)
        sel.annotate(result, selection)
    else:
        result = tables.build(args.results_dir, args.layout, args.baseline, refs, task_domains,
                              resample_seed=args.resample_seed, equivalence_margin=args.equivalence_margin,
                              warn=_warn)
    if not result and (fmt != "rich" or args.output is not None):
        raise KDBenchError(f"no cell results in {args.results_dir}; nothing to write")
    if fmt == "rich":
        from kdbench import report

        if args.output is None:
            report.print_tables(result)
        else:
            export.write(args.output, report.tables_text(result))
    elif args.output is None:
        sys.stdout.write(export.render(result, fmt))
    else:
        export.write(args.output, export.render(result, fmt))
    if selection is not None:
        from kdbench import selection as sel

        text = sel.render(selection, "markdown" if fmt == "markdown" else "text")
        if args.output is None:  # a CSV or LaTeX stream on stdout stays clean: the choices go to stderr
            (sys.stdout if fmt in ("rich", "markdown") else sys.stderr).write(text)
        else:
            choices = args.output.with_name(args.output.stem + "-selection.md")
            export.write(choices, sel.render(selection, "markdown"))
            print(f"wrote {choices}", file=sys.stderr)
    if args.output is not None:
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from kdbench import export_model

    _check_results_dir(args.results_dir)
    out = export_model.export(args.results_dir, args.cell, args.output)
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


def _warn(line: str) -> None:
    print(f"kdbench: warning: cell file kept out: {line}", file=sys.stderr)


def cmd_power(args: argparse.Namespace) -> int:
    from kdbench import export, tables
    from kdbench.errors import KDBenchError

    _check_results_dir(args.results_dir)
    try:
        effects = [float(x) for x in str(args.effect).split(",") if x.strip()]
    except ValueError:
        raise KDBenchError(f"--effect must be numbers of accuracy points, got {args.effect!r}") from None
    rows = tables.power(args.results_dir, effects, args.baseline, warn=_warn, layout=args.layout)
    if not rows:
        raise KDBenchError(f"no student method and baseline with results on every domain in {args.results_dir}")
    sys.stdout.write(export.power_text(rows))
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    from kdbench import plot

    _check_results_dir(args.results_dir)
    _check_output(args.output)
    plot.plot(args.results_dir, args.output, warn=_warn, kind=args.kind, layout=args.layout, baseline=args.baseline)
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from kdbench import html

    _check_results_dir(args.results_dir)
    refs = None
    if args.reference is not None:
        from kdbench import references

        refs = references.load(args.reference)
    task_domains = None
    if args.layout == "paper":
        from kdbench import registry

        task_domains = {name: e.cls.domains for name, e in registry.load().tasks.entries.items()}
    html.write(args.results_dir, args.output, layout=args.layout, baseline=args.baseline, references=refs,
               task_domains=task_domains)
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def quiet_libraries() -> None:
    """transformers' load reports (e.g. the freshly initialised head) would drown the progress bars."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


COMMANDS = {"list": cmd_list, "show": cmd_show, "run": cmd_run, "table": cmd_table, "plot": cmd_plot,
            "power": cmd_power, "report": cmd_report, "export": cmd_export}

if __name__ == "__main__":
    sys.exit(main())
