"""The audit: one plan (``plan``), run in stages (``stages``: prepare, defend, arm, attack, write) by ``run``,
in a run folder that resumes (``store``), on an executor (``executor``), into results (``results``).

``diffence demo``, ``evaluate`` and ``reproduce`` and every study are plans of this one engine.
"""
