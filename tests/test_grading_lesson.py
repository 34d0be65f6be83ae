"""The grading command on copies of a real lesson (08, the quickest to run): a copy filled from the lesson grades
100%, the learner's unanswered copy 0% without crashing, and a copy with one classic mistake fails that exercise alone,
with its check's message, and passes the rest."""

import json

import nbformat

from interp_utils.course.exercises import is_solution, learner_notebook, main
from interp_utils.course.reproduce import find_notebooks

LESSON = find_notebooks(["08_scaling_up"])[0]
NAMES = ["final_logits", "resid_pre", "patch_resid", "steer"]


def test_grading_copies_of_lesson_08(tmp_path):
    nb = nbformat.read(LESSON, as_version=4)
    answers = [c.source for c in nb.cells if is_solution(c)]
    # the classic mistake of the steering exercise: the vector is added at BOS as well
    assert "stream[:, 1:] +=" in answers[3]
    wrong = answers[3].replace("stream[:, 1:] +=", "stream[:, :] +=")
    copies = {}
    for name, filled in {"full": answers, "empty": None, "wrong": [*answers[:3], wrong]}.items():
        learner = learner_notebook(nb)
        exercise_cells = [c for c in learner.cells if is_solution(c)]
        for cell, source in zip(exercise_cells, filled or [], strict=False):
            cell.source = source
        copies[name] = tmp_path / f"{name}.ipynb"
        nbformat.write(learner, copies[name])
    main(["--grade", *map(str, copies.values()), "--grades", str(tmp_path / "grades"), "--jobs", "2"])
    records = json.loads((tmp_path / "grades" / "grades.json").read_text())
    reports = {r["path"].split("/")[-1]: r for r in records}
    full, empty, mistaken = reports["full.ipynb"], reports["empty.ipynb"], reports["wrong.ipynb"]
    assert full["lesson"] == "08_scaling_up" and not full["error"], full
    assert [g["exercise"] for g in full["grades"]] == NAMES
    assert full["score"] == 1.0, full
    assert empty["score"] == 0.0 and {g["status"] for g in empty["grades"]} == {"not answered"}, empty
    assert [g["status"] for g in mistaken["grades"]] == ["correct"] * 3 + ["wrong"], mistaken
    assert "BOS" in mistaken["grades"][3]["message"], mistaken["grades"][3]
