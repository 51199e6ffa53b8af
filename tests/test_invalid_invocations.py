"""Every invalid invocation of the list below, against a FINISHED results directory (issue #18, §1-§2).

Each must end with exit code 2 and one line on stderr that says what is wrong (``expect``), with no
traceback, and leave every file of the results directory (cells, teachers, logits caches, run.json)
byte-identical: validation happens before anything is written, so invalid input can never replace a
finished result. ``python tests/test_invalid_invocations.py`` prints the list as a Markdown table of
the results.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _toycli import BASE, invoke, make_finished, snapshot, toy_cli  # noqa: E402


@dataclass
class Ctx:
    results: Path
    cache: Path
    scratch: Path  # config files, profiles files and other props are written here

    def file(self, name: str, content: str | bytes) -> str:
        path = self.scratch / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)


@dataclass
class Case:
    category: str
    name: str
    build: Callable[[Ctx], list[str]]  # extra argv for `run` (or a whole argv starting with table/plot)
    expect: str  # a substring of the one error line
    env: dict[str, str] | None = None


def run(*extra: str) -> Callable[[Ctx], list[str]]:
    return lambda c: list(extra)


def config(name: str, text: str | bytes) -> Callable[[Ctx], list[str]]:
    return lambda c: ["--config", c.file(name, text)]


def profiles(name: str, text: str, profile: str = "mine") -> Callable[[Ctx], list[str]]:
    return lambda c: ["--profiles", c.file(name, text), "--profile", profile]


GOOD = "teacher: tiny:L2-H32-A2\nstudent: tiny:L1-H32-A2\n"


def prof(extra: str) -> str:
    return "mine:\n  " + GOOD.replace("\n", "\n  ") + extra + "\n"


CASES: list[Case] = [
    # ---- 1. config file values: type and range of every key, and the file itself
    Case("config file", "results_dir: 123", config("c1.yaml", "results_dir: 123\n"), "--results-dir: 123 is not a path"),
    Case("config file", "methods: 5", config("c2.yaml", "methods: 5\n"), "--methods: 5 is not a list"),
    Case("config file", "profile: null", config("c3.yaml", "profile: null\n"), "--profile: needs a value"),
    Case("config file", "compile: maybe", config("c4.yaml", "compile: maybe\n"), "--compile: 'maybe' is not true or false"),
    Case("config file", "seeds: 2.5", config("c5.yaml", "seeds: 2.5\n"), "--seeds: 2.5 is not an integer"),
    Case("config file", "seeds: true", config("c6.yaml", "seeds: true\n"), "--seeds: True is not an integer"),
    Case("config file", "fractions: [0.5, x]", config("c7.yaml", "fractions: [0.5, x]\n"), "--fractions: 'x' is not a number"),
    Case("config file", "fractions: true", config("c8.yaml", "fractions: true\n"), "--fractions: True is not a list"),
    Case("config file", "options: 5", config("c9.yaml", "options: 5\n"), "options (--set): expected a mapping"),
    Case("config file", "options: {kd: 3}", config("c10.yaml", "options: {kd: 3}\n"), "expected a mapping of option names"),
    Case("config file", "options: {kd: {alpha: [1]}}", config("c11.yaml", "options: {kd: {alpha: [1]}}\n"),
         "kd.alpha = [1] is not a single value"),
    Case("config file", "options: {kd: {alpha: true}}", config("c12.yaml", "options: {kd: {alpha: true}}\n"),
         "kd.alpha: True is not a valid float"),
    Case("config file", "teacher_cache_mb: -1", config("c13.yaml", "teacher_cache_mb: -1\n"), "must be at least 0"),
    Case("config file", "teacher_cache_mb: .inf", config("c14.yaml", "teacher_cache_mb: .inf\n"), "must be finite"),
    Case("config file", "device: 7", config("c15.yaml", "device: 7\n"), "--device: 7 is not a non-empty name"),
    Case("config file", "precision: fp8", config("c16.yaml", "precision: fp8\n"), "--precision: 'fp8' is not one of"),
    Case("config file", "domains: [1, 2]", config("c17.yaml", "domains: [1, 2]\n"), "--domains: [1, 2] is not a list"),
    Case("config file", "reuse: sometimes", config("c18.yaml", "reuse: sometimes\n"), "--reuse: 'sometimes'"),
    Case("config file", "strict_plugins: 3", config("c19.yaml", "strict_plugins: 3\n"), "--strict-plugins: 3"),
    Case("config file", "ray_max_retries: 2.5", config("c20.yaml", "executor: ray\nray_max_retries: 2.5\n"),
         "--ray-max-retries: 2.5 is not an integer"),
    Case("config file", "unknown key seed", config("c21.yaml", "seed: 3\n"), "did you mean 'seeds'"),
    Case("config file", "non-string key", config("c22.yaml", "1: 2\n"), "option name 1 is not a string"),
    Case("config file", "a list, not a mapping", config("c23.yaml", "- methods\n"), "expected a mapping of run options"),
    Case("config file", "not UTF-8", config("c24.yaml", b"methods: kd\n\xff\xfe\x00bad\n"), "not UTF-8 text"),
    Case("config file", "YAML syntax error", config("c25.yaml", "methods: [kd\n"), "cannot read"),
    Case("config file", "a directory", lambda c: ["--config", str(c.scratch)], "cannot read"),
    Case("config file", "missing file", run("--config", "/nonexistent/run.yaml"), "config file not found"),
    Case("config file", "results_dir: ''", config("c26.yaml", "results_dir: ''\n"), "--results-dir: '' is not a path"),
    # ---- merging: --set merges per key with the file's options, so the file's bad key still counts
    Case("merging", "file kd.alpah + --set kd.temperature", lambda c: [
        "--config", c.file("m1.yaml", "options: {kd: {alpah: 0.3}}\n"), "--set", "kd.temperature=2"],
         "did you mean 'alpha'"),
    Case("merging", "file kd.alpha=2 + --set kd.temperature=2", lambda c: [
        "--config", c.file("m2.yaml", "options: {kd: {alpha: 2}}\n"), "--set", "kd.temperature=2"], "alpha"),
    # ---- profiles (--profiles FILE): every setting typed and > 0
    Case("profiles", "batch_size: 0", profiles("p1.yaml", prof("batch_size: 0")), "batch_size = 0 must be a positive integer"),
    Case("profiles", "lr: abc", profiles("p2.yaml", prof("student_train: {lr: abc}")), "student_train.lr = 'abc' must be"),
    Case("profiles", "epochs: 0", profiles("p3.yaml", prof("teacher_train: {epochs: 0}")), "teacher_train.epochs = 0"),
    Case("profiles", "max_len: -1", profiles("p4.yaml", prof("max_len: -1")), "max_len = -1 must be an integer"),
    Case("profiles", "eval_batch_size: 1.5", profiles("p5.yaml", prof("eval_batch_size: 1.5")), "eval_batch_size = 1.5"),
    Case("profiles", "warmup: 1.5", profiles("p6.yaml", prof("student_train: {warmup: 1.5}")), "warmup = 1.5"),
    Case("profiles", "weight_decay: -1", profiles("p7.yaml", prof("student_train: {weight_decay: -1}")), "weight_decay = -1"),
    Case("profiles", "max_grad_norm: 0", profiles("p8.yaml", prof("student_train: {max_grad_norm: 0}")), "max_grad_norm = 0"),
    Case("profiles", "lr: .nan", profiles("p9.yaml", prof("student_train: {lr: .nan}")), "lr = nan"),
    Case("profiles", "epochs: true", profiles("p10.yaml", prof("student_train: {epochs: true}")), "epochs = True"),
    Case("profiles", "unknown setting", profiles("p11.yaml", prof("batchsize: 8")), "did you mean 'batch_size'"),
    Case("profiles", "unknown train setting", profiles("p12.yaml", prof("student_train: {epoch: 2}")), "did you mean 'epochs'"),
    Case("profiles", "teacher_train: 5", profiles("p13.yaml", prof("teacher_train: 5")), "teacher_train must be a mapping"),
    Case("profiles", "no student", profiles("p14.yaml", "mine: {teacher: tiny:L2-H32-A2}\n"), "missing 'student'"),
    Case("profiles", "profile not a mapping", profiles("p15.yaml", "mine: 3\n"), "expected a mapping of settings"),
    Case("profiles", "file not a mapping", profiles("p16.yaml", "[1, 2]\n"), "expected a mapping of profile names"),
    Case("profiles", "another profile broken", profiles("p17.yaml", prof("") + "other: {teacher: x}\n"), "'other'"),
    Case("profiles", "missing file", run("--profiles", "/nonexistent/p.yaml"), "config file not found"),
    # ---- model specs
    Case("models", "--teacher tiny:L0-H0-A0", run("--teacher", "tiny:L0-H0-A0"), "0 layers"),
    Case("models", "--student tiny:L2-H30-A4", run("--student", "tiny:L2-H30-A4"), "not a multiple of 4 heads"),
    Case("models", "--student tiny:L2-H0-A0", run("--student", "tiny:L2-H0-A0"), "needs 1 <= heads <= hidden"),
    Case("models", "--student tiny:L2-H32", run("--student", "tiny:L2-H32"), "tiny:L<layers>-H<hidden>-A<heads>"),
    Case("models", "--teacher tiny:L999-H32-A2", run("--teacher", "tiny:L999-H32-A2"), "999 layers"),
    Case("models", "--student '' ", run("--student", " "), "--student: ' ' is not a non-empty name"),
    Case("models", "--student a directory without config.json", lambda c: ["--student", str(c.scratch)],
         "is not a model directory"),
    Case("models", "--student hub id that is not a model", run("--student", "no-such-org/no-such-model-xyz"),
         "'no-such-org/no-such-model-xyz' is not a model"),
    Case("models", "profile teacher not a model", profiles("p18.yaml", "mine: {teacher: /nonexistent/m, student: "
                                                           "tiny:L1-H32-A2}\n"), "teacher '/nonexistent/m' is not a model"),
    # ---- devices
    Case("devices", "--device tpu", run("--device", "tpu"), "--device: 'tpu' is not a device"),
    Case("devices", "--device mps", run("--device", "mps"), "--device mps"),
    Case("devices", "--device cuda:99", run("--device", "cuda:99"), "--device cuda:99"),
    Case("devices", "--device cuda:x", run("--device", "cuda:x"), "is not a device"),
    Case("devices", "--device ''", run("--device", ""), "--device"),
    # ---- environment
    Case("environment", "KDBENCH_THREADS=zero", run(), "KDBENCH_THREADS='zero' is not a positive integer",
         env={"KDBENCH_THREADS": "zero"}),
    Case("environment", "KDBENCH_THREADS=0", run(), "KDBENCH_THREADS='0'", env={"KDBENCH_THREADS": "0"}),
    Case("environment", "OMP_NUM_THREADS=-1", run(), "OMP_NUM_THREADS='-1'", env={"OMP_NUM_THREADS": "-1"}),
    Case("environment", "OMP_NUM_THREADS=1.5", run(), "OMP_NUM_THREADS='1.5'", env={"OMP_NUM_THREADS": "1.5"}),
    # ---- paths
    Case("paths", "--results-dir ''", lambda c: ["--results-dir", ""], "--results-dir: '' is not a path"),
    Case("paths", "--cache-dir is a file", lambda c: ["--cache-dir", c.file("afile", "x")], "is not a directory"),
    Case("paths", "--cache-dir under a file", lambda c: ["--cache-dir", c.file("afile2", "x") + "/sub"],
         "is not writable"),
    Case("paths", "--data-dir ''", run("--data-dir", ""), "--data-dir: '' is not a path"),
    Case("paths", "table -o in a missing directory", lambda c: ["table", str(c.results), "-o",
                                                                 str(c.scratch / "no" / "t.md")], "does not exist"),
    Case("paths", "table -o a directory", lambda c: ["table", str(c.results), "-o", str(c.scratch)], "not a file name"),
    Case("paths", "plot -o in a missing directory", lambda c: ["plot", str(c.results), "-o",
                                                                str(c.scratch / "no" / "p.png")], "does not exist"),
    Case("paths", "table of a file", lambda c: ["table", c.file("notdir", "x")], "not a results directory"),
    # ---- grid size
    Case("grid size", "--seeds 10**18", run("--seeds", str(10**18)), "more than 100,000"),
    Case("grid size", "--seeds 60000 × 2 methods", run("--seeds", "60000"), "the grid has 120,000 cells"),
    # ---- fractions
    Case("fractions", "--fractions 1e-9", run("--fractions", "1e-9"), "leaves 1 training example(s) of label"),
    Case("fractions", "--fractions 0.01", run("--fractions", "0.01"), "leaves 2 training example(s)"),
    Case("fractions", "--fractions 0.04", run("--fractions", "0.25,0.04"), "leaves 6 training example(s)"),
    Case("fractions", "--fractions 0", run("--fractions", "0"), "outside (0, 1]"),
    Case("fractions", "--fractions 1.5", run("--fractions", "1.5"), "outside (0, 1]"),
    Case("fractions", "--fractions nan", run("--fractions", "nan"), "outside (0, 1]"),
    Case("fractions", "--fractions half", run("--fractions", "half"), "not a number"),
    # ---- plugins
    Case("plugins", "task whose load() raises RuntimeError", run("--tasks", "brokentoy", "--domains", "garden"),
         "task 'brokentoy' (_toycli) failed to load its data: RuntimeError: boom"),
    # ---- the flags kdbench always checked (kept in the list: they must stay refused on a finished directory)
    Case("flags", "--methods kdd", run("--methods", "kdd"), "did you mean 'kd'"),
    Case("flags", "--methods ''", run("--methods", ""), "empty list"),
    Case("flags", "--methods kd,kd", run("--methods", "kd,kd"), "duplicate"),
    Case("flags", "--tasks toyy", run("--tasks", "toyy"), "did you mean 'toy'"),
    Case("flags", "--domains gardn", run("--domains", "gardn"), "did you mean 'garden'"),
    Case("flags", "--seeds 0", run("--seeds", "0"), "must be at least 1"),
    Case("flags", "--seeds two", run("--seeds", "two"), "not an integer"),
    Case("flags", "--profile gpu", run("--profile", "gpu"), "unknown profile 'gpu'"),
    Case("flags", "--set kd.alpha=2", run("--set", "kd.alpha=2"), "alpha"),
    Case("flags", "--set kd.alpha=high", run("--set", "kd.alpha=high"), "not a valid float"),
    Case("flags", "--set kd.alpha", run("--set", "kd.alpha"), "expected METHOD.KEY=VALUE"),
    Case("flags", "--set mix.alpha=1 (not in --methods)", run("--set", "mix.alpha=1"), "not in --methods"),
    Case("flags", "--precision fp8", run("--precision", "fp8"), "--precision"),
    Case("flags", "--executor dask", run("--executor", "dask"), "not one of local, ray"),
    Case("flags", "--ray-num-cpus without ray", run("--ray-num-cpus", "2"), "only applies with --executor ray"),
    Case("flags", "--teacher-cache-mb nan", run("--teacher-cache-mb", "nan"), "must be at least 0"),
    Case("flags", "--teacher-cache-mb 1e400", run("--teacher-cache-mb", "1e400"), "must be finite"),
    Case("flags", "table --format xlsx", lambda c: ["table", str(c.results), "--format", "xlsx"], "invalid choice"),
    Case("flags", "unknown command", lambda c: ["frobnicate"], "invalid choice"),
]


def argv(case: Case, ctx: Ctx) -> list[str]:
    extra = case.build(ctx)
    if extra and extra[0] in ("table", "plot", "frobnicate"):
        return extra
    given = {a for a in extra if a.startswith("--")}
    base = [x for flag, value in zip(BASE[::2], BASE[1::2], strict=True) if flag not in given for x in (flag, value)]
    tail = [] if "--results-dir" in given else ["--results-dir", str(ctx.results)]
    tail += [] if "--cache-dir" in given else ["--cache-dir", str(ctx.cache)]
    return ["run", *base, *extra, *tail]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_finished(tmp_path_factory.mktemp("finished"))


def test_the_list_covers_every_category_with_60_or_more_cases():
    cats = {c.category for c in CASES}
    assert len(CASES) >= 60 and {"config file", "merging", "profiles", "models", "devices", "environment",
                                 "paths", "grid size", "fractions", "plugins"} <= cats
    assert len({(c.category, c.name) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.category}: {c.name}" for c in CASES])
def test_invalid_invocation_is_refused_and_changes_nothing(case: Case, finished, tmp_path):
    results, cache = finished
    before = snapshot(results)
    ctx = Ctx(results, cache, tmp_path)
    with toy_cli():
        got = invoke(argv(case, ctx), case.env)
    assert got.code == 2, (got.code, got.err[-2000:])
    lines = got.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in got.err + got.out, got.err
    assert case.expect in lines[0], lines[0]
    assert len(lines[0]) <= 400 or "choose from:" in lines[0]  # long only to list the valid names
    after = snapshot(results)
    assert after.keys() == before.keys()
    for name, data in before.items():
        assert after[name] == data, f"{name} changed"


def test_config_options_merge_per_key_with_set(tmp_path):
    """``--set kd.temperature=…`` keeps the file's ``kd.alpha`` (it used to replace all of options)."""
    from kdbench.config import RunConfig

    f = tmp_path / "run.yaml"
    f.write_text("options: {kd: {alpha: 0.3, temperature: 2.0}, pkd: {beta: 10}}\n")
    cfg = RunConfig.from_sources({"options": ["kd.temperature=4"]}, f)
    assert cfg.options == {"kd": {"alpha": 0.3, "temperature": "4"}, "pkd": {"beta": 10}}


def _markdown_table() -> str:  # pragma: no cover - run by hand: python tests/test_invalid_invocations.py
    import shlex
    import tempfile

    rows = ["| # | category | case | invocation (… = the finished grid's flags) | exit | first line of stderr |",
            "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        results, cache = make_finished(Path(tmp))
        before = snapshot(results)
        for i, case in enumerate(CASES, 1):
            scratch = Path(tmp) / f"s{i}"
            scratch.mkdir()
            ctx = Ctx(results, cache, scratch)
            args = argv(case, ctx)
            with toy_cli():
                got = invoke(args, case.env)
            shown = " ".join(shlex.quote(a) for a in args).replace(str(results), "R").replace(str(cache), "C")
            shown = shown.replace(str(scratch), "S")
            for flag, value in zip(BASE[::2], BASE[1::2], strict=True):
                shown = (shown + " ").replace(f" {flag} {value} ", " ", 1).rstrip()
            shown = shown.replace("run ", "run … ", 1)
            env = " ".join(f"{k}={v}" for k, v in (case.env or {}).items())
            first = (got.err.strip().splitlines() or [""])[0].replace(str(scratch), "S").replace("|", "\\|")
            first = first if len(first) <= 220 else first[:219] + "…"
            rows.append(f"| {i} | {case.category} | {case.name.replace('|', '¦')} | "
                        f"`{(env + ' ' if env else '') + 'kdbench ' + shown}` | "
                        f"{got.code} | {first} |")
        same = snapshot(results) == before
    return "\n".join(rows) + f"\n\nresults directory byte-identical after all {len(CASES)}: {same}\n"


if __name__ == "__main__":  # pragma: no cover
    print(_markdown_table())
