"""The README's two set-up commands stay true: CI runs the second one verbatim."""

from workflow_helpers import ROOT


def setup_commands():
    block = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_has_exactly_two_setup_commands():
    install_and_run, install_and_test = setup_commands()
    assert "--configfile config/quickstart.yaml" in install_and_run
    assert "pytest" in install_and_test


def test_ci_runs_the_readme_test_command():
    assert setup_commands()[1] in (ROOT / ".ci/run").read_text().splitlines()
