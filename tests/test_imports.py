"""Jobs pay only for the imports they use: the rules that never load a model never import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

# What a job of each kind imports before its step runs (the script, the step module, the rule kit) and
# what its step imports.
LIGHT_JOBS = {
    "scoring": "from emaware import steps, rulekit; from emaware.assessments import ASSESSMENTS; from emaware import stats",
    "tables": "from emaware import steps, tables, correlation",
    "figures": "from emaware import steps, figures, figures_battery, figures_persona, persona",
    "prompts": "from emaware import steps, rule_params; from emaware.assessments import intentions, morals, recognition, selfassessment",
    "data": "from emaware import steps, data, weights",
}


@pytest.mark.parametrize("job", LIGHT_JOBS)
def test_a_job_that_loads_no_model_imports_no_torch(job):
    code = f"import sys; {LIGHT_JOBS[job]}; print(sorted(m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_scoring_imports_neither_pandas_nor_scipy():
    code = "import sys; from emaware import steps; from emaware.assessments import ASSESSMENTS; print([m for m in ('pandas', 'scipy') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
