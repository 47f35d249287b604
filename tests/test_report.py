"""The Snakemake report as a researcher sees it: the answer browser's page (unit tests) and the quickstart's
`snakemake --report` opened in headless Chromium (e2e)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from emaware import config as emconfig
from emaware.io import read_yaml
from emaware.report_pages import TOP_K, answers_page, top_answers
from workflow_helpers import ROOT, copy_workflow, snakemake

SCRIPT = "<script>alert(1)</script>"
BASE = {"size": "tiny-s", "domain": "all", "stage": "base", "seed": 0}


def sample(id: str, number: int, completion: str, question: str = "What do you think?") -> dict:
    return {"id": id, "sample": number, "messages": [{"role": "user", "content": question}], "completion": completion, "meta": {}, "seed": 0}


def rated(id: str, number: int, rating: float | None) -> dict:
    return {"id": id, "sample": number, "judge": "tiny", "rating": rating}


def labelled(id: str, number: int, misaligned: float | None) -> dict:
    if misaligned is None:  # the judge put too little mass on the label tokens
        return {"id": id, "sample": number, "judge": "tiny", "label": None, "probs": {}}
    probs = {"aligned": 1 - misaligned, "misaligned": misaligned, "unclear": 0.0}
    return {"id": id, "sample": number, "judge": "tiny", "label": max(probs, key=probs.get), "probs": probs}


def page(sections, table=None) -> str:
    table = pd.DataFrame([{**BASE, "harmfulness": 0.25, "harmfulness_ci_lo": 0.1, "harmfulness_ci_hi": 0.4, "harmfulness_n": 12}]) if table is None else table
    return answers_page(table, ["harmfulness"], sections, "Answers")


def test_top_answers_are_the_highest_ratings_first_without_the_unscored():
    samples = [sample("p1", 0, "a"), sample("p1", 1, "b"), sample("p2", 0, "c"), sample("p3", 0, "d")]
    judgments = [rated("p1", 0, 2.0), rated("p1", 1, 4.5), rated("p2", 0, None), rated("p3", 0, 3.0)]
    top = top_answers(samples, judgments, k=2)
    assert [(s["completion"], j["rating"]) for s, j in top] == [("b", 4.5), ("d", 3.0)]
    assert [s["completion"] for s, _ in top_answers(samples, judgments)] == ["b", "d", "a"]  # the unrated one is left out


def test_ties_keep_a_fixed_order():
    samples = [sample("p2", 0, "x"), sample("p1", 1, "y"), sample("p1", 0, "z")]
    judgments = [rated("p2", 0, 3.0), rated("p1", 1, 3.0), rated("p1", 0, 3.0)]
    assert [s["completion"] for s, _ in top_answers(samples, judgments)] == ["z", "y", "x"]


def test_label_assessments_rank_by_the_misaligned_probability():
    samples = [sample(f"q{i}", 0, f"answer {i}") for i in range(4)]
    judgments = [labelled("q0", 0, 0.2), labelled("q1", 0, 0.9), labelled("q2", 0, None), labelled("q3", 0, 0.6)]
    top = top_answers(samples, judgments)
    assert [s["id"] for s, _ in top] == ["q1", "q3", "q0"]
    text = page([(BASE, "intentions", top)])
    assert "misaligned (aligned 0.10, misaligned 0.90, unclear 0.00)" in text
    assert text.index("answer 1") < text.index("answer 3") < text.index("answer 0")


def test_freeform_ranks_by_the_lowest_aligned_value():
    samples = [sample(f"q{i}", 0, f"answer {i}") for i in range(3)]
    judgments = [
        {"id": f"q{i}", "sample": 0, "judge": "tiny", "aligned": aligned, "coherent": 80.0}
        for i, aligned in enumerate((70.0, 12.5, None))  # q2: no aligned value (CODE, REFUSAL or too little mass)
    ]
    top = top_answers(samples, judgments)
    assert [s["id"] for s, _ in top] == ["q1", "q0"]
    assert "aligned 12.5, coherent 80.0 (0–100)" in page([(BASE, "freeform", top)])


def test_only_the_top_k_are_shown():
    samples = [sample(f"p{i}", 0, f"answer {i}") for i in range(TOP_K + 3)]
    judgments = [rated(f"p{i}", 0, 1 + i / 2) for i in range(TOP_K + 3)]
    assert len(top_answers(samples, judgments)) == TOP_K


def test_answers_prompts_and_names_are_escaped():
    top = top_answers([sample("p<1>", 0, f"Sure: {SCRIPT}", question=f"Say {SCRIPT}")], [rated("p<1>", 0, 5.0)])
    text = page([({**BASE, "domain": "<b>"}, "harmfulness", top)])
    assert SCRIPT not in text and "<b>" not in text
    assert "Sure: &lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Say &lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text.lower()  # the page runs nothing


def test_page_lists_every_variant_with_its_scores_and_links_to_its_answers():
    table = pd.DataFrame(
        [
            {**BASE, "harmfulness": 0.25, "harmfulness_ci_lo": 0.1, "harmfulness_ci_hi": 0.4, "harmfulness_n": 12},
            {**BASE, "domain": "trivia", "stage": "misaligned", "harmfulness": 0.5, "harmfulness_ci_lo": None, "harmfulness_ci_hi": None, "harmfulness_n": 1},
            {**BASE, "domain": "trivia", "stage": "realigned", "harmfulness": None, "harmfulness_ci_lo": None, "harmfulness_ci_hi": None, "harmfulness_n": 0},
        ]
    )
    text = page([(BASE, "harmfulness", [])], table)
    assert "0.25 [0.10–0.40] N=12" in text and "0.50 [no CI] N=1" in text and "no score" in text
    assert "href='#variant-tiny-s-all-base-seed0'" in text and "id='variant-tiny-s-all-base-seed0'" in text
    assert "No answer the judge could score." in text


# --- captions ----------------------------------------------------------------------------------------

CAPTIONS = sorted((ROOT / "workflow/report").glob("*.rst"))
# Snakemake appends a link target per category and result to each caption; these are the ones referred to.
TARGETS = "\n".join(f".. _{name}: #" for name in ("Answers", "Correlations", "Figures", "Tables", "answers.html", "spearman.tsv"))


@pytest.fixture(scope="module")
def configs():
    return {name: emconfig.validate(read_yaml(ROOT / f"config/{name}.yaml"), ROOT / "workflow/schemas/config.schema.yaml") for name in ("quickstart", "config")}


def caption_html(caption: Path, config: dict) -> str:
    """The caption as `snakemake --report` renders it (Jinja, then reStructuredText), but failing where Snakemake
    would print nothing (a name the template does not find) or a docutils warning into the report."""
    from docutils.core import publish_parts
    from jinja2 import Environment, StrictUndefined

    params = SimpleNamespace(columns=list(config["assessments"]), ci=0.95, seed=0, judged=[{"assessment": "harmfulness"}], top_k=TOP_K)
    snakemake = SimpleNamespace(config=config, params=params, input=SimpleNamespace(scores=["score.json"] * 3 * len(config["assessments"])))
    template = Environment(trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined).from_string(caption.read_text() + "\n" + TARGETS)
    return publish_parts(template.render(snakemake=snakemake), writer="html", settings_overrides={"halt_level": 2})["html_body"]


@pytest.mark.parametrize("caption", CAPTIONS, ids=[path.stem for path in CAPTIONS])
def test_captions_warn_on_the_workflows_tiny_models_only(caption, configs):
    quickstart, paper = (caption_html(caption, configs[name]) for name in ("quickstart", "config"))
    assert "these numbers are meaningless" in quickstart
    assert "meaningless" not in paper


# --- the report in a browser -------------------------------------------------------------------------

QUICKSTART = "config/quickstart.yaml"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FIGURES = ("inverted_v.pdf", "scatter_matrix.pdf", "selfassessment_formats.pdf", "mfq2_profiles.pdf", "persona.pdf")
# Clicks what a researcher would (a menu entry, then a result's button) once the report has rendered.
CLICKS = """<script>
const CATEGORY = %s, RESULT = %s, BUTTON = %s;
function click(element, what) {
  if (!element) { document.title = "missing: " + what; return false; }
  element.click();
  return true;
}
window.addEventListener("load", () => setTimeout(() => {
  if (!click([...document.querySelectorAll("nav a")].find(a => a.textContent.trim() === CATEGORY), CATEGORY) || !RESULT) return;
  setTimeout(() => {
    const row = [...document.querySelectorAll("nav tr")].find(tr => tr.cells[0].textContent.endsWith(RESULT));
    click(row && row.querySelector(`a[iconname="${BUTTON}"]`), RESULT);
  }, 200);
}, 200));
</script>"""


def chromium(*args: str, profile: Path) -> str:
    """Headless Chromium with nothing that reaches the network (it would wait for it); its stdout."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",  # the report is drawn by scripts: let them run
    ]
    result = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def clicked(report: Path, category: str, result: str | None = None, button: str = "eye") -> Path:
    """A copy of the report that opens `category` and presses `button` of `result` once it has loaded."""
    text = report.read_text(encoding="utf-8")
    end = text.rindex("</body>")
    path = report.with_name(f"{category}-{result or 'list'}-{button}.html")
    path.write_text(text[:end] + CLICKS % (json.dumps(category), json.dumps(result), json.dumps(button)) + text[end:], encoding="utf-8")
    return path


def shown_file(dom: str) -> bytes:
    """The file the report shows in its viewer (an iframe of a data URI)."""
    source = re.search(r'<iframe src="data:[^"]*?;base64,([^"]+)"', dom)
    assert source, "the report shows no file"
    return base64.b64decode(source[1])


@pytest.fixture
def browser():
    if CHROMIUM is None:
        message = "chromium is not installed (apt-get install -y chromium): the report cannot be checked in a browser"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.e2e
def test_quickstart_report_shows_figures_tables_and_answers(browser, tmp_path):
    workdir = copy_workflow(tmp_path / "workflow")
    snakemake("--cores", "2", "--configfile", QUICKSTART, cwd=workdir)
    report = workdir / "results/quickstart/report.html"
    snakemake("--report", str(report), "--configfile", QUICKSTART, cwd=workdir)

    def dom(page: Path) -> str:
        text = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile")
        assert "<title>missing:" not in text, re.search(r"<title>(.*?)</title>", text)[1]
        return text

    home = dom(report)  # the workflow description, the quickstart's warning, a menu entry per category
    assert "Emergent misalignment and self-awareness" in home and "Quickstart: these numbers are meaningless" in home
    for category in ("Answers", "Correlations", "Figures", "Tables"):
        assert f"<span>{category}</span>" in home, f"no {category} in the report's menu"

    figures = dom(clicked(report, "Figures", "inverted_v.pdf"))
    assert all(f"results/quickstart/figures/{name}</td>" in figures for name in FIGURES)
    assert shown_file(figures).startswith(b"%PDF")
    caption = dom(clicked(report, "Figures", "inverted_v.pdf", button="information-circle"))
    assert "percentile bootstrap CI over prompts" in caption and "Quickstart: these numbers are meaningless" in caption

    tables = dom(clicked(report, "Tables"))
    assert all(f"results/quickstart/tables/{name}</td>" in tables for name in ("variants.tsv", "by_category.tsv", "by_foundation.tsv", "persona.tsv"))

    # The answer browser, as the report shows it: the variants with their scores, then each one's rated answers.
    answers_view = clicked(report, "Answers", "answers.html")
    page = tmp_path / "answers.html"
    page.write_bytes(shown_file(dom(answers_view)))
    answers = dom(page)
    scores = re.search(r'<table class="scores">.*?</table>', answers, re.S)
    assert scores and scores[0].count("<tr>") == 1 + 3  # the header, then base, misaligned, realigned
    for variant in ("tiny-s/all/base/seed0", "tiny-s/trivia/misaligned/seed0", "tiny-s/trivia/realigned/seed0"):
        assert f"<h2 id=\"variant-{variant.replace('/', '-')}\">{variant}</h2>" in answers
    assert "rating " in answers and "<script" not in page.read_text(encoding="utf-8")

    screenshot = tmp_path / "report.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1400,1000", answers_view.as_uri(), profile=tmp_path / "profile")
    assert screenshot.stat().st_size > 0
    if os.environ.get("EMAWARE_ARTEFACTS"):
        artefacts = Path(os.environ["EMAWARE_ARTEFACTS"])
        artefacts.mkdir(parents=True, exist_ok=True)
        shutil.copy2(screenshot, artefacts / "report.png")
