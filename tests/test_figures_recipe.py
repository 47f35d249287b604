"""The recipe figures: its graph from the config, and the scores along each chain of fine-tunes."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from emaware.figures_recipe import recipe_graph, recipe_steps_figure
from emaware.recipes import chains

STAGES = {
    "base": {},
    "sgtr": {"parent": "base", "train": {"derived": "sgtr"}},
    "misaligned": {"parent": "base", "train": {"role": "misaligned"}},
    "sgtr_em": {"parent": "sgtr", "train": {"role": "misaligned"}},
    "em_sgtr": {"parent": "misaligned", "train": {"derived": "sgtr", "writer": "parent"}, "system_prompt": "empty"},
}


def table():
    rows = []
    for seed in (0, 1):
        for domain, stage, value in (("all", "base", 0.6), ("all", "sgtr", 0.7), ("aesthetic", "misaligned", 0.4), ("aesthetic", "sgtr_em", 0.55), ("aesthetic", "em_sgtr", 0.5)):
            rows.append(dict(size="32b", domain=domain, stage=stage, seed=seed, truthfulqa=value + seed / 20))
    frame = pd.DataFrame(rows)
    frame["truthfulqa_ci_lo"], frame["truthfulqa_ci_hi"] = frame["truthfulqa"] - 0.05, frame["truthfulqa"] + 0.05
    return frame


def test_a_panel_per_chain_with_its_stages_in_training_order():
    assert chains(STAGES) == [["base", "sgtr", "sgtr_em"], ["base", "misaligned", "em_sgtr"]]
    fig = recipe_steps_figure(table(), STAGES, ["truthfulqa", "selfrecognition"])
    axes = fig.axes
    assert len(axes) == 4  # 2 scores x 2 chains
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["base", "misaligned", "em_sgtr"]
    assert [axes[0].get_title(), axes[1].get_title()] == ["sgtr → sgtr_em", "misaligned → em_sgtr"]
    # Each seed a point with its CI (one error bar container per step, two seeds each), and the mean line.
    assert [len(c.lines[0].get_xdata()) for c in axes[0].containers] == [2, 2, 2]
    means = [line for line in axes[0].lines if len(line.get_xdata()) == 3]
    assert len(means) == 1 and list(means[0].get_ydata()) == pytest.approx([0.625, 0.725, 0.575])
    # A score the table lacks: an empty panel that says so.
    assert any("not in the table" in t.get_text() for t in axes[2].texts)
    plt.close(fig)


def test_the_graph_is_written(tmp_path):
    out = tmp_path / "recipe.pdf"
    recipe_graph(STAGES, out, note="toy")
    assert out.read_bytes().startswith(b"%PDF")
