"""The checks a learner runs on their exercise answers, one module per lesson.

Each ``check_<name>(fn)`` tests the learner's function in stages (shape, a case worked out by hand, agreement with
the suite's reference, the edge cases behind the usual mistakes) and says what to look at when a stage fails;
``tests/test_checks.py`` shows that each one passes the reference answer and rejects plausible wrong ones.
"""
