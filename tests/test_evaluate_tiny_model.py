"""The tiny model's quality figure (training/evaluate_tiny_model.py): its cases and its wiring.

The cases must stay the same for a seed (figures are compared across models and changes), and
the model must be asked through the product's own completion path, not a copy of it.
"""

from __future__ import annotations

import json
from pathlib import Path

from support.script_module import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "evaluate_tiny_model.py"


evaluation = load_script(SCRIPT)

FILES = {
    "a.py": "import os\n\n\ndef f(x):\n    return os.path.join(x, 'y')\n",
    "b.py": "class C:\n    def g(self):\n        if self.ok:\n            return 1\n"
    "        return 2\n",
}


def test_cases_are_seeded_and_the_cursor_is_past_the_indentation():
    cases = evaluation.sample_cases(FILES, 8, seed=7)
    assert cases == evaluation.sample_cases(FILES, 8, seed=7)
    assert cases != evaluation.sample_cases(FILES, 8, seed=8)
    for case in cases:
        line = FILES[case.file].split("\n")[case.line]
        assert case.typed + case.target == line
        assert len(line) - len(line.lstrip()) <= case.column < len(line.rstrip())
        previous = FILES[case.file].split("\n")[case.line - 1] if case.line else ""
        assert case.previous == previous[case.column :]


def test_the_document_lacks_the_rest_of_the_cursor_line():
    case = evaluation.Case("a.py", 4, 11, "    return ", "os.path.join(x, 'y')", "")
    lines = evaluation.document_lines(FILES["a.py"], case)
    assert lines[4] == "    return \n"
    assert "".join(lines[:4] + lines[5:]) == FILES["a.py"].replace(
        "    return os.path.join(x, 'y')\n", ""
    )


def test_scores_ignore_trailing_whitespace():
    scores = evaluation.score(["abc ", "", "abx"], ["abc", "xyz", "abc"])
    assert scores["exact_match"] == 1 / 3
    assert abs(scores["edit_similarity"] - (1 + 0 + 2 / 3) / 3) < 1e-9


def test_the_shipped_model_runs_through_the_completion_path(tmp_path: Path):
    out = tmp_path / "figures.json"
    args = ["--n", "3", "--context-tokens", "512", "--show", "0", "--json", str(out)]
    assert evaluation.main(args) == 0
    figures = json.loads(out.read_text())
    assert figures["errors"] == 0
    assert figures["all"]["cases"] == 3
    assert figures["all"]["baseline_empty"]["exact_match"] == 0
    assert all("\n" not in case["prediction"] for case in figures["examples"])
