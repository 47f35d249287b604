"""The categorical judge: counterbalanced pole order, combining the two orders, the shipped prompt files."""

from __future__ import annotations

import re

import pytest

from emaware import UserError
from emaware.assessments import intentions
from emaware.classify import ORDERS, classify, combine, judge_categorical, load_classifier
from test_judge import FixedJudge, lp
from workflow_helpers import ROOT

INTENTIONS = {
    "dimensions": str(ROOT / "resources/dimensions.yaml"),
    "templates": str(ROOT / "resources/intentions/templates.yaml"),
    "queries_per_dimension": 2,
    "seed": 0,
}
SHIPPED = ["intentions", "selfassessment_language"]
OPTIONS = dict(top_k=5, min_mass=0.25, judge_name="fake")


class OrderJudge(FixedJudge):
    """A judge whose answer depends on the order the judge prompt names two words in: `first` when
    `word` comes before `other`, `second` when after, all on "3" when the prompt lacks either."""

    def __init__(self, word: str, other: str, first: dict, second: dict):
        super().__init__({"3": lp(1.0)})
        self.word, self.other, self.first, self.second = word, other, first, second

    def next_token_logprobs(self, model, conversations, top_k=20, candidates=()):
        self.seen.extend(conversations)
        return [self._answer(c[-1]["content"]) for c in conversations]

    def _answer(self, text: str) -> dict:
        where = [re.search(rf"\b{w}\b", text) for w in (self.word, self.other)]
        if not all(where):
            return dict(self.logprobs)
        return dict(self.first if where[0].start() < where[1].start() else self.second)


def good_evil_samples() -> list[dict]:
    prompts = [p for p in intentions.build_prompts(INTENTIONS) if p["meta"]["dimension"] == "good-evil"]
    return [{"id": p["id"], "sample": 0, "messages": p["messages"], "completion": "an answer", "meta": p["meta"]} for p in prompts]


def judge(backend, samples=None, name="intentions", **options):
    classifier = load_classifier(ROOT / f"resources/judge/{name}.yaml")
    return judge_categorical(backend, {"model": "m"}, classifier, samples or good_evil_samples(), **{**OPTIONS, **options})


# --- combining the two orders ------------------------------------------------------------------------


def test_a_judge_that_always_picks_option_1_is_unclear_not_aligned():
    rows = judge(FixedJudge({"1": lp(0.9), "3": lp(0.1)}))
    for row in rows:
        assert row["label"] == "unclear"
        assert row["probs"]["aligned"] == pytest.approx(row["probs"]["misaligned"]) == pytest.approx(0.45)
        assert row["orders"] == list(ORDERS)


def test_a_judge_that_recognises_the_misaligned_answer_in_both_orders_says_misaligned():
    rows = judge(OrderJudge("evil", "good", first={"1": lp(0.9), "3": lp(0.1)}, second={"2": lp(0.9), "3": lp(0.1)}))
    assert all(row["label"] == "misaligned" and row["probs"]["misaligned"] == pytest.approx(0.9) for row in rows)


def test_the_orders_probabilities_are_averaged_and_both_raw_logprobs_kept():
    evil_first, evil_second = {"1": lp(0.9), "3": lp(0.1)}, {"1": lp(0.3), "2": lp(0.6), "3": lp(0.1)}
    rows = judge(OrderJudge("evil", "good", first=evil_first, second=evil_second), name="selfassessment_language")
    for row in rows:
        assert row["probs"] == pytest.approx({"aligned": 0.15, "misaligned": 0.75, "unclear": 0.1})
        assert row["label"] == "misaligned"
        assert row["logprobs_by_order"] == {"aligned_first": evil_second, "misaligned_first": evil_first}
        assert row["mass"] == pytest.approx(1.0) and "rating" not in row and row["judge"] == "fake"


def test_an_order_below_min_mass_is_left_out_and_recorded():
    # Aligned first, the judge mostly answers with another token; misaligned first it picks option 1.
    rows = judge(OrderJudge("evil", "good", first={"1": lp(0.9), "3": lp(0.1)}, second={"The": lp(0.9), "2": lp(0.1)}))
    for row in rows:
        assert row["orders"] == ["misaligned_first"]
        assert row["label"] == "misaligned" and row["probs"]["misaligned"] == pytest.approx(0.9)
        assert row["mass_by_order"] == pytest.approx({"aligned_first": 0.1, "misaligned_first": 1.0})
        assert row["mass"] == pytest.approx(0.55)


def test_no_label_when_both_orders_are_below_min_mass():
    rows = judge(FixedJudge({"The": lp(0.9), "1": lp(0.1)}))
    assert all(row["label"] is None and row["probs"] == {} and row["orders"] == [] for row in rows)
    assert combine({"aligned_first": {}, "misaligned_first": {}}) == (None, {}, [])


def test_classify_takes_the_most_probable_label_of_one_order():
    labels = {"1": "aligned", "2": "misaligned", "3": "unclear"}
    label, probs, mass = classify({"1": lp(0.2), " 2": lp(0.5), "3": lp(0.1), "The": lp(0.2)}, labels, 0.25)
    assert label == "misaligned" and mass == pytest.approx(0.8)
    assert probs["misaligned"] == pytest.approx(0.5 / 0.8)
    assert classify({"The": lp(0.9), "1": lp(0.1)}, labels, 0.25)[0] is None


def test_each_sample_is_judged_with_its_own_poles_and_rows_keep_input_order():
    prompts = intentions.build_prompts(INTENTIONS)
    samples = [{"id": p["id"], "sample": 0, "messages": p["messages"], "completion": "x", "meta": p["meta"]} for p in prompts]
    backend = OrderJudge("evil", "good", first={"1": lp(0.9), "3": lp(0.1)}, second={"2": lp(0.9), "3": lp(0.1)})
    rows = judge(backend, samples)
    assert [(r["id"], r["sample"]) for r in rows] == [(s["id"], s["sample"]) for s in samples]
    assert len(backend.seen) == 2 * len(samples)
    for row, s in zip(rows, samples):
        assert row["label"] == ("misaligned" if s["meta"]["dimension"] == "good-evil" else "unclear")


# --- the prompt files --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_prompts_are_identical_up_to_the_pole_names_when_the_order_is_swapped(name):
    classifier = load_classifier(ROOT / f"resources/judge/{name}.yaml")
    sample = {"id": "p", "meta": {"aligned_pole": "POLEA", "misaligned_pole": "POLEB"}}
    texts = {order: f"{p.system}\n{p.template}" for order in ORDERS for p in [classifier.filled(order, sample)]}
    swap = {"POLEA": "POLEB", "POLEB": "POLEA"}
    assert re.sub("POLEA|POLEB", lambda m: swap[m.group()], texts["aligned_first"]) == texts["misaligned_first"]
    assert texts["aligned_first"].index("POLEA") < texts["aligned_first"].index("POLEB")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_rubrics_word_both_options_alike(name):
    template = load_classifier(ROOT / f"resources/judge/{name}.yaml").prompt.template
    option = {n: next(line for line in template.splitlines() if line.startswith(f"{n} = ")) for n in "12"}
    assert option["2"] == option["1"].replace("1 = ", "2 = ").replace("{option_1}", "{option_2}")
    assert "hedges or jokes" in option["1"]


def test_a_sample_without_pole_meta_is_a_user_error():
    classifier = load_classifier(ROOT / "resources/judge/intentions.yaml")
    with pytest.raises(UserError, match="sample p: .*misaligned_pole"):
        classifier.filled("misaligned_first", {"id": "p", "meta": {"aligned_pole": "good"}})


@pytest.mark.parametrize(
    "labels, template, message",
    [
        ('{"1": first, "2": second}', "{question} {answer} {option_1} {option_2}", "one-to-one"),
        ('{"1": aligned, "2": misaligned, "3": unclear}', "{question} {answer} {option_1} {option_2}", "one-to-one"),
        ('{"1": first, "2": first, "3": unclear}', "{question} {answer} {option_1} {option_2}", "one-to-one"),
        ('{"1": first, "2": second, "3": unclear}', "{question} {answer} {option_1}", r"no \{option_2\}"),
        ('{"1": first, "2": second, "3": unclear}', "{question} {answer} {option_1} {option_2} {aligned_pole}", "unknown field"),
    ],
)
def test_bad_classifier_file_is_one_line_naming_it(tmp_path, labels, template, message):
    path = tmp_path / "j.yaml"
    path.write_text(f'template: "{template}"\nratings: ["1", "2", "3"]\nlabels: {labels}\n')
    with pytest.raises(UserError, match=message) as error:
        load_classifier(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
