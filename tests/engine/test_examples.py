import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_custom_prior_example_runs(capsys):
    runpy.run_path(str(EXAMPLES / "custom_prior.py"), run_name="__main__")
    assert "final frontal mean depth" in capsys.readouterr().out
