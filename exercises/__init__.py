"""Exercises that check themselves: write five backward passes, then grade them.

``exercises/backward.py`` holds the stubs the learner fills in; ``exercises/grade.py`` grades
each one against float64 centered finite differences and against the project's own layer
(``python -m exercises.grade`` from the repository root grades them all).
"""
