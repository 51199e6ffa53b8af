"""The command line: bad input (exit 2, one line), an end-to-end tiny run, resume, table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdbench.cli import main

TINY = ["--profile", "tiny", "--tasks", "amazon", "--domains", "books,kitchen", "--fractions", "0.25"]
#: the same grid on the toy task (no data needed), for tests about the CLI rather than the data
TOY = ["--profile", "tiny", "--tasks", "toy", "--domains", "garden,kitchen", "--fractions", "0.25"]


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


BAD = [
    (["run", "--methods", "kdd"], "did you mean 'kd'"),
    (["run", "--methods", "kd,,"], None),  # ok list after dropping blanks -> not bad; replaced below
    (["run", "--methods", ""], "empty list"),
    (["run", "--methods", ","], "empty list"),
    (["run", "--methods", "kd,kd"], "duplicate"),
    (["run", "--tasks", "amazn"], "did you mean 'amazon'"),
    (["run", "--tasks", "amazon", "--domains", "kitchn"], "did you mean 'kitchen'"),
    (["run", "--tasks", "mnli", "--domains", "books"], "unknown domain 'books'"),
    (["run", "--fractions", "0"], "outside (0, 1]"),
    (["run", "--fractions", "-0.5"], "outside (0, 1]"),
    (["run", "--fractions", "1.5"], "outside (0, 1]"),
    (["run", "--fractions", "nan"], "outside (0, 1]"),
    (["run", "--fractions", "half"], "not a number"),
    (["run", "--seeds", "0"], "must be at least 1"),
    (["run", "--seeds", "two"], "not an integer"),
    (["run", "--profile", "gpu"], "unknown profile 'gpu'"),
    (["run", "--precision", "fp8"], "--precision"),
    (["run", "--device", "cuda:0"] if not __import__("torch").cuda.is_available() else ["run", "--device", "tpu"], "--device"),
    (["run", "--set", "kd.alpha"], "expected METHOD.KEY=VALUE"),
    (["run", "--set", "kd.alpah=0.1"], "did you mean 'alpha'"),
    (["run", "--methods", "student", "--set", "kd.alpha=0.1"], "not in --methods"),
    (["run", "--config", "/nonexistent/run.yaml"], "config file not found"),
    (["table", "/nonexistent/results"], "not a results directory"),
    (["run", "--executor", "dask"], "--executor: 'dask' is not one of local, ray"),
    (["run", "--ray-num-cpus", "2"], "only applies with --executor ray"),  # conflicting options
    (["run", "--executor", "ray", "--ray-num-cpus", "-1"], "must be at least 0"),
    (["run", "--executor", "ray", "--ray-max-retries", "many"], "not an integer"),
    (["frobnicate"], "invalid choice"),
]
BAD = [b for b in BAD if b[1] is not None]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) if args[0] == "frobnicate" else _nullctx() as exc:
        code, out, err = run_cli([*args, *(["--results-dir", str(tmp_path / "r")] if args[0] == "run" else [])],
                                 capsys)
    if args[0] == "frobnicate":
        assert exc.value.code == 2
        err = capsys.readouterr().err
    else:
        assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_executor_ray_without_ray_says_how_to_install(monkeypatch, capsys, tmp_path):
    from kdbench import ray_executor

    real = ray_executor.importlib.util.find_spec
    monkeypatch.setattr(ray_executor.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    code, _, err = run_cli(["run", *TINY, "--executor", "ray", "--results-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and "pip install 'kdbench[ray]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_missing_data_says_where_it_looked(tmp_path, capsys):
    code, _, err = run_cli(["run", *TINY, "--data-dir", str(tmp_path / "nodata"),
                            "--results-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and str(tmp_path / "nodata") in err and len(err.strip().splitlines()) == 1
    (tmp_path / "wrong" / "amazon").mkdir(parents=True)
    code, _, err = run_cli(["run", *TINY, "--data-dir", str(tmp_path / "wrong"),
                            "--results-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and "sorted_data_acl" in err
    assert not (tmp_path / "r").exists()  # nothing written on bad input


def test_unwritable_results_dir(tmp_path, capsys):
    from _toycli import toy_cli

    blocker = tmp_path / "file"
    blocker.write_text("")
    with toy_cli():
        code, _, err = run_cli(["run", *TOY, "--methods", "student", "--cache-dir", str(tmp_path / "cache"),
                                "--results-dir", str(blocker / "r")], capsys)
    assert code == 2 and "not writable" in err and len(err.strip().splitlines()) == 1


def test_help_imports_nothing_heavy():
    """``kdbench --help`` stays fast (~0.1 s) because the heavy libraries load only when used."""
    code = ("import sys, kdbench.cli as c\ntry:\n c.main(['--help'])\nexcept SystemExit:\n pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'ray', 'scipy', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.splitlines()[-1] == "[]"


def test_layout_choices_are_the_tables_layouts():
    """The CLI repeats tables.LAYOUTS (to keep --help free of numpy); a new layout must reach every command."""
    from kdbench import cli, tables

    assert cli.LAYOUTS == tables.LAYOUTS


def test_end_to_end_tiny_run_resume_and_table(tmp_path, capsys):
    """The whole CLI path on the toy task: run, every cell file, resume after deleting one, table.
    (The real data's splits are tested in tests/tasks/, the real models in the one real-data grid.)"""
    from _toycli import toy_cli

    results = tmp_path / "r"
    args = ["run", *TOY, "--methods", "student,kd,teacher", "--cache-dir", str(tmp_path / "cache"),
            "--results-dir", str(results)]
    with toy_cli():
        code, out, _ = run_cli(args, capsys)
    assert code == 0, out
    files = sorted((results / "cells").glob("*.json"))
    assert len(files) == 6
    assert "2 teacher(s) trained" in out
    cells = [json.loads(f.read_text()) for f in files]
    for c in cells:
        assert c["status"] == "ok"
        assert 0 <= c["metrics"]["test_accuracy"] <= 100
        # the toy task: 64 test examples per domain, 320 balanced train examples of which a quarter
        assert len(c["predictions"]["pred"]) == len(c["predictions"]["gold"]) == 64
        assert c["split_hash"] and c["config_hash"] and c["versions"]["torch"]
        assert c["n_train"] == 80
    kd = next(c for c in cells if c["method"] == "kd" and c["domain"] == "garden")
    teacher = next(c for c in cells if c["method"] == "teacher" and c["domain"] == "garden")
    assert kd["teachers"][0]["key"] == teacher["teachers"][0]["key"]  # trained once, shared
    mtimes = {f.name: f.stat().st_mtime_ns for f in files}

    # Resume: delete one cell; only it runs again, and no teacher is retrained.
    victim = results / "cells" / "toy__kitchen__kd__f0.25__s0.json"
    victim.unlink()
    with toy_cli():
        code, out, _ = run_cli(args, capsys)
    assert code == 0
    assert "6 cells: 5 already done, 1 ran ok, 0 failed; 0 teacher(s) trained" in " ".join(out.split())
    for f in files:
        if f != victim:
            assert f.stat().st_mtime_ns == mtimes[f.name]
    assert victim.exists()

    # A changed config recomputes only the cells it affects.
    with toy_cli():
        code, out, _ = run_cli([*args, "--set", "kd.alpha=0.9"], capsys)
    assert "4 already done, 2 ran ok" in " ".join(out.split())

    code, out, _ = run_cli(["table", str(results)], capsys)
    assert code == 0
    for word in ("student", "kd", "teacher", "garden", "kitchen", "Average", "n = 1 seed(s) per cell"):
        assert word in " ".join(out.split())


def test_third_party_plugin_runs_end_to_end(tmp_path):
    """A plugin installed only as an entry point (simulated through a dist-info on sys.path)."""
    site = tmp_path / "site"
    dist = site / "kdbench_example_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kdbench-example-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[kdbench]\nsmooth = kdbench_example_plugin\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(Path(__file__).parent / "plugins")])}
    listing = subprocess.run([sys.executable, "-m", "kdbench.cli", "list"], env=env, capture_output=True,
                             text=True, check=True).stdout
    assert "smooth" in listing and "kdbench-example-plugin" in listing
    from test_runner import cli_argv  # kdbench with the toy task registered

    res = subprocess.run(cli_argv("run", *TOY, "--domains", "garden", "--methods", "smooth",
                                  "--set", "smooth.smoothing=0.2", "--cache-dir", str(tmp_path / "cache"),
                                  "--results-dir", str(tmp_path / "r")),
                         env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    cell = json.loads(next((tmp_path / "r" / "cells").glob("*smooth*.json")).read_text())
    assert cell["status"] == "ok" and cell["config"]["method_options"] == {"smoothing": 0.2}


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(first_line: str) -> str:
    """The README's fenced code block that starts with ``first_line``."""
    import re

    blocks = [b for b in re.findall(r"```[a-z]*\n(.*?)```", README.read_text(), re.S) if b.startswith(first_line)]
    assert len(blocks) == 1, f"README has {len(blocks)} blocks starting with {first_line!r}"
    return blocks[0]


def install(package: Path, site: Path) -> None:
    """pip-install ``package`` into ``site`` offline; without setuptools to build it, register its entry
    points the way pip would (a dist-info folder on the path)."""
    import importlib.util

    if importlib.util.find_spec("setuptools") is not None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(site), str(package)], check=True, capture_output=True)
        return
    import tomllib

    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    dist = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    eps = project["entry-points"]["kdbench"]
    (dist / "entry_points.txt").write_text("[kdbench]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    for module in package.glob("*.py"):
        (site / module.name).write_text(module.read_text())


def test_readme_task_plugin_installs_and_runs(tmp_path):
    """The README's task plugin, byte for byte: installed from its pyproject, listed, run, and its
    load() errors are one line with exit 2."""
    import csv

    from kdbench.testing import ToyTask

    module = (Path(__file__).parent / "plugins" / "kdbench_csvsent.py").read_text()
    assert readme_block("# kdbench_csvsent.py\n") == module
    package = tmp_path / "kdbench-csvsent"
    package.mkdir()
    (package / "pyproject.toml").write_text(readme_block('# pyproject.toml\n[project]\nname = "kdbench-csvsent"'))
    (package / "kdbench_csvsent.py").write_text(module)
    site = tmp_path / "site"
    install(package, site)

    data = tmp_path / "data"
    for domain, dd in ToyTask().load().items():  # the toy task's examples as the plugin's CSV files
        for split in ("train", "dev", "test"):
            path = data / "csvsent" / domain / f"{split}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["id", "text", "label"])
                w.writerows([i, ex.text, ("negative", "positive")[ex.label]] for i, ex in enumerate(getattr(dd, split)))
    env = {k: v for k, v in os.environ.items() if k != "KDBENCH_DATA_DIR"}
    env["PYTHONPATH"] = str(site)

    def kdbench(*args):
        return subprocess.run([sys.executable, "-m", "kdbench.cli", *args], env=env, capture_output=True, text=True)

    listing = kdbench("list")
    assert listing.returncode == 0 and "csvsent" in listing.stdout and "kdbench-csvsent" in listing.stdout
    run = ["run", "--profile", "tiny", "--tasks", "csvsent", "--domains", "garden", "--methods", "student",
           "--fractions", "0.5", "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(tmp_path / "r")]
    done = kdbench(*run, "--data-dir", str(data))
    assert done.returncode == 0, done.stderr[-2000:]
    cell = json.loads(next((tmp_path / "r" / "cells").glob("csvsent__garden__student*.json")).read_text())
    assert cell["status"] == "ok" and cell["n_train"] == 160 and len(cell["predictions"]["ids"]) == 64
    assert cell["predictions"]["ids"][0].startswith("garden/test/") and cell["data_revision"] is None

    missing = kdbench(*run)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "csvsent: no data: pass --data-dir" in missing.stderr
    (data / "csvsent" / "kitchen" / "dev.csv").write_text("id,text,label\n1,fine,maybe\n")
    bad = kdbench(*run, "--data-dir", str(data))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "dev.csv:2: expected columns" in bad.stderr


# ------------------------------------------------------------ one source of defaults (#14 §5)
#: every `kdbench run` option that existed before the parser was generated from RunConfig
RUN_FLAGS = ("--methods", "--tasks", "--domains", "--fractions", "--seeds", "--profile", "--profiles", "--teacher",
             "--student", "--results-dir", "--data-dir", "--cache-dir", "--device", "--precision",
             "--fraction-all-domains", "--set", "--sweep", "--teacher-seeds", "--teacher-domains", "--no-reuse",
             "--compile", "--teacher-cache-mb", "--executor", "--ray-address", "--ray-num-cpus", "--ray-num-gpus",
             "--ray-max-retries", "--ray-shared-dir", "--save-students", "--log", "--log-dir",
             "--mlflow-tracking-uri", "--config", "--strict-plugins")


def _run_actions():
    import argparse

    from kdbench.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["run"]._actions if a.option_strings}


def test_run_options_are_generated_from_run_config():
    """One option per RunConfig field (but the config-file-only ``variants``), every flag kept."""
    import dataclasses

    from kdbench.config import RunConfig

    actions = _run_actions()
    cli_fields = {f.name for f in dataclasses.fields(RunConfig) if f.metadata["cli"]}
    assert cli_fields == set(actions) - {"help", "config"}
    assert {f.name for f in dataclasses.fields(RunConfig)} - cli_fields == {"variants"}
    assert sorted(s for a in actions.values() for s in a.option_strings if s.startswith("--")) == \
        sorted([*RUN_FLAGS, "--help"])


def test_every_default_is_written_once_in_run_config(monkeypatch):
    """The parser gives None ("not given") for every option, so the defaults come from RunConfig alone;
    the help shows each field's own default, and no hand-written help text states one."""
    import dataclasses

    monkeypatch.delenv("KDBENCH_DATA_DIR", raising=False)  # the --data-dir fallback

    from kdbench.cli import build_parser
    from kdbench.config import RunConfig

    args = build_parser().parse_args(["run"])
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    assert set(given.values()) == {None}
    assert RunConfig.from_sources(given) == RunConfig()
    actions = _run_actions()
    for f in dataclasses.fields(RunConfig):
        if not f.metadata["cli"]:
            continue
        assert "default" not in f.metadata["help"].lower(), f"{f.name}: the help restates a default"
        action, switch = actions[f.name], f.metadata["action"] in ("store_true", "store_false")
        if f.metadata["choices"]:
            assert action.metavar == "{" + ",".join(f.metadata["choices"]) + "}", f.name
        if switch:  # a switch flips the default: store_true for False, store_false (--no-X) for True
            assert f.default is (f.metadata["action"] == "store_false"), f.name
            assert "(default:" not in action.help
        elif f.default is None:
            assert (f"(default: {f.metadata['none']})" in action.help) == bool(f.metadata["none"]), f.name
        elif f.default is not dataclasses.MISSING and f.default != ():
            shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else str(f.default)
            assert action.help.endswith(f"(default: {shown})"), (f.name, action.help)
    assert "(default: 2048.0)" in actions["teacher_cache_mb"].help
    assert str(RunConfig.teacher_cache_mb) == "2048.0"


def test_switches_and_repeatable_options_parse_as_before():
    from kdbench.cli import build_parser

    args = build_parser().parse_args(["run", "--no-reuse", "--compile", "--set", "kd.alpha=0.7", "--set",
                                      "kd.temperature=2", "--sweep", "kd.alpha=0.1,0.2", "--profiles", "p.yaml",
                                      "--fraction-all-domains", "--strict-plugins"])
    assert (args.reuse, args.compile, args.fraction_all_domains, args.strict_plugins) == (False, True, True, True)
    assert args.options == ["kd.alpha=0.7", "kd.temperature=2"] and args.sweep == ["kd.alpha=0.1,0.2"]
    assert args.profiles_file == "p.yaml"
