"""``kdbench report``: the self-contained HTML page, checked as text and rendered by headless Chromium.

The browser part needs Debian's ``chromium``: it skips when the binary is absent and fails under CI
(``CI`` set), like the real-data tests (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _resultsets import cell, small

from kdbench import html
from kdbench.cli import main
from kdbench.results import atomic_write_json

EVIL = '<script>alert("x")</script> & <b>bold</b>'
N_BOOT = 200


def write_run(root: Path) -> Path:
    """Two fractions, three seeds, loss curves (two stages for ``mix``), one failed cell with markup
    in its error, and markup in run.json: everything the page shows."""
    cells = small(fractions=(0.5, 1.0))
    for c in cells:
        n = 3 + c["seed"]
        if c["method"] == "mix":
            c["train"] = {"stage": "mix", "steps": 60, "losses": [9.0, 5.0, 4.0, 0.7, 0.5, 0.4],
                          "stages": [{"stage": "mix:stage1", "steps": 30, "losses": [9.0, 5.0, 4.0]},
                                     {"stage": "mix:stage2", "steps": 30, "losses": [0.7, 0.5, 0.4]}]}
        elif c["method"] != "teacher":
            c["train"] = {"stage": c["method"], "steps": 10 * n, "losses": [1.0 / (i + 1) for i in range(n)]}
        c["versions"] = {"kdbench": "0.1.0", "torch": "2.13.0"}
    failed = {**small(("kd",), seeds=1)[0], "status": "failed", "seed": 7, "error": EVIL, "traceback": EVIL}
    for i, c in enumerate([*cells, failed]):
        atomic_write_json(root / "cells" / f"c{i}.json", c)
    atomic_write_json(root / "run.json", {"config": {"methods": ["student", "kd", "teacher", "mix"],
                                                     "note": EVIL}, "device": "cpu",
                                          "versions": {"kdbench": "0.1.0", "python": "3.11"}})
    return root


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_run(tmp_path_factory.mktemp("run"))
    out = root / "report.html"
    html.write(root, out, n_boot=N_BOOT)
    return out


def test_page_holds_every_part_and_escapes_cell_text(page: Path) -> None:
    text = page.read_text()
    # tables: per fraction a main table, and a data-scarce one; each with its Δ table and legends
    assert text.count('<table class="results" data-kind="main">') == 3
    assert text.count('<table class="results" data-kind="delta">') == 3
    assert "Holm" in text and "Δ vs student" in text and "Speed-up" in text
    for fig_id in html.FIGURES:
        assert re.search(f'<figure id="{fig_id}"><svg ', text), fig_id
    # the failed cell and the configuration, escaped: no markup from a cell reaches the page
    assert "failed-cells" in text and "kd · amazon/books · f=1.0 · seed 7" in text
    assert "<script" not in text and "<b>bold" not in text
    assert text.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;") >= 3
    # self-contained: nothing is fetched (the only URL is the SVG namespace, which is not loaded)
    assert not re.search(r'(src|href)="(?!#)', text)
    assert set(re.findall(r"https?://[^\s\"')]+", text)) <= {"http://www.w3.org/2000/svg",
                                                              "http://www.w3.org/1999/xlink"}
    # figure ids are prefixed, so two figures never share one
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))


def test_cli_report(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from kdbench import tables

    monkeypatch.setattr(tables, "N_BOOT", N_BOOT)  # the command's default, read when it runs
    root = write_run(tmp_path / "run")
    assert main(["report", str(root), "-o", str(tmp_path / "r.html")]) == 0
    assert "wrote" in capsys.readouterr().err
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(root), "-o", str(tmp_path / "p.html"), "--layout", "paper", "--baseline", "kd"]) == 0
    paper = (tmp_path / "p.html").read_text()
    assert "Δ vs kd" in paper and "Teachers" in paper and "dvd" in paper  # paper layout: every domain
    assert main(["report", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.html")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "x.html")]) == 2
    assert "no cell results" in capsys.readouterr().err


def test_paper_report_shows_the_ablation_rows_in_their_own_table(tmp_path: Path) -> None:
    accs = {"student": 80, "kd": 84, "metakd": 86, "metakd[gamma2=0]": 83}
    cells = [cell(m, d, s, a) for m, a in accs.items() for d in ("books", "kitchen") for s in range(2)]
    for i, c in enumerate(cells):
        atomic_write_json(tmp_path / "cells" / f"c{i}.json", c)
    text = html.render(tmp_path, layout="paper", n_boot=N_BOOT)
    assert "(layout paper, then ablation)" in text
    tables_part = text.split('<h2 id="tables">', 1)[1].split('<h2 id="figures">', 1)[0]
    paper, ablation = tables_part.split("· Meta-KD ablation</h3>", 1)
    assert "Meta-KD layout</h3>" in paper and "metakd[gamma2=0]" not in paper.split("</h3>", 1)[1].split("<ul", 1)[0]
    assert "metakd[gamma2=0]" in ablation and "Δ vs metakd" in ablation
    assert "then ablation" not in html.render(tmp_path, layout="default", n_boot=N_BOOT)


# ------------------------------------------------------------------------------------ browser
#: appended to a copy of the page (the report itself has no script): records resource errors and,
#: once everything has loaded, what the page shows
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || (e.target && e.target.outerHTML))), true);
window.addEventListener("load", () => {
  const figs = {};
  for (const f of document.querySelectorAll("figure")) {
    const svg = f.querySelector("svg");
    figs[f.id] = svg ? svg.getBoundingClientRect().height : 0;
  }
  const tables = [...document.querySelectorAll("table.results")].map(t => t.querySelectorAll("tbody tr").length);
  document.body.setAttribute("data-probe", JSON.stringify({figs, tables, errors: window.__errors}));
});
</script>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        msg = "headless Chromium not found (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


def render(exe: str, page: Path, tmp: Path) -> tuple[dict, list[str], Path]:
    """Load ``page`` (with the probe) in headless Chromium: the probe's findings, the console lines
    Chromium logged, and a screenshot."""
    probed = tmp / f"probed-{page.name}"
    probed.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    flags = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000", "--window-size=1280,1600"]
    dom = subprocess.run([*flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=60)
    shot = tmp / f"{page.stem}.png"
    subprocess.run([*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=60)
    match = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert match, dom.stderr[-2000:]
    import html as std_html

    probe = json.loads(std_html.unescape(match.group(1)))
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    return probe, console, shot


def test_chromium_renders_every_table_and_figure(page: Path, tmp_path: Path) -> None:
    import matplotlib.image

    probe, console, shot = render(chromium(), page, tmp_path)
    assert console == [] and probe["errors"] == []
    assert set(probe["figs"]) == set(html.FIGURES)
    assert all(h > 100 for h in probe["figs"].values()), probe["figs"]  # each figure drawn, not empty
    assert len(probe["tables"]) == 6 and all(n >= 3 for n in probe["tables"])
    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert pixels[..., :3].std() > 0.05  # not a blank page
    assert (pixels[..., :3].mean(axis=-1) < 0.5).mean() > 0.005  # some dark ink: text and lines


def test_the_browser_check_catches_errors(tmp_path: Path) -> None:
    # the same harness on a broken page: a console error, a missing image, no figure drawn
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><head><title>b</title></head><body><img src="missing.png">'
                      '<script>console.error("boom")</script><figure id="fig-x"></figure></body></html>')
    probe, console, _ = render(chromium(), broken, tmp_path)
    assert any('"boom"' in line for line in console)
    assert probe["errors"] and probe["figs"] == {"fig-x": 0}


def test_full_run_report_renders(tmp_path: Path) -> None:
    """The committed full run (results/amazon-cpu-all): freshly rendered, and the committed page."""
    run = Path(__file__).resolve().parents[1] / "results" / "amazon-cpu-all"
    exe = chromium()
    fresh = tmp_path / "report.html"
    html.write(run, fresh, n_boot=N_BOOT)
    for page in (fresh, run / "report.html"):
        probe, console, shot = render(exe, page, tmp_path)
        assert console == [] and probe["errors"] == [], page
        assert set(probe["figs"]) == set(html.FIGURES) and all(h > 100 for h in probe["figs"].values())
        assert probe["tables"] == [12, 11]  # 12 method rows; the Δ table: all but the baseline
        assert page.stat().st_size < 400_000
