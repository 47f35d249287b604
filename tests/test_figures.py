import pandas as pd
import pytest

from emaware.figures import inverted_v, inverted_v_figure


def variants_table():
    rows = []
    for size, base in (("0.5b", 0.1), ("7b", 0.05)):
        for seed in (0, 1):
            rows.append(dict(size=size, domain="all", stage="base", seed=seed, harmfulness=base))
            for domain, peak in (("trivia", 0.7), ("code", 0.4)):
                rows.append(dict(size=size, domain=domain, stage="misaligned", seed=seed, harmfulness=peak + seed / 10))
                rows.append(dict(size=size, domain=domain, stage="realigned", seed=seed, harmfulness=peak / 2))
    table = pd.DataFrame(rows)
    table["harmfulness_ci_lo"], table["harmfulness_ci_hi"] = table["harmfulness"] - 0.05, table["harmfulness"] + 0.05
    return table


def test_a_panel_per_size_and_a_line_per_domain_from_the_shared_base():
    fig = inverted_v_figure(variants_table())
    assert [ax.get_title() for ax in fig.axes] == ["0.5b", "7b"]
    small = fig.axes[0]
    lines = {bars.get_label(): bars.lines[0] for bars in small.containers}  # one errorbar series per domain
    assert set(lines) == {"trivia", "code"}
    assert list(lines["trivia"].get_ydata()) == pytest.approx([0.1, 0.75, 0.35])  # mean over the two seeds
    assert lines["code"].get_ydata()[0] == lines["trivia"].get_ydata()[0]  # both start at the shared base


def test_pdf_is_written(tmp_path):
    inverted_v(variants_table(), tmp_path / "v.pdf")
    assert (tmp_path / "v.pdf").read_bytes().startswith(b"%PDF")
