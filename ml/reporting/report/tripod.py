"""The TRIPOD+AI checklist (Collins et al., BMJ 2024; 27 items, topics paraphrased here) with
where this report answers each item, or why it cannot. `where` names a section anchor
(#data, #table1, ... as in `sections.SECTIONS`) or starts with "author:" (the report cannot
know it: the person sending the report supplies it) or "n/a:" (does not apply, with why)."""

from __future__ import annotations

ITEMS: tuple[tuple[str, str, str], ...] = (
    ("1", "Title: a prediction model study, its population, outcome and model type", "#top"),
    ("2", "Abstract structured as TRIPOD+AI for abstracts", "author: the report has no abstract; "
     "each section opens with a plain-language reading"),
    ("3a", "Healthcare context and rationale", "author: clinical rationale is not in the data"),
    ("3b", "Target population and intended users", "#data"),
    ("3c", "Known health inequalities between groups", "author: the cohort table records no "
     "socio-economic or ethnic variables"),
    ("4", "Objectives: development, evaluation or both", "#models"),
    ("5a", "Data sources and their representativeness", "#data"),
    ("5b", "Dates of accrual and end of follow-up", "author: the cohort contract stores months "
     "from rechallenge, not calendar dates"),
    ("6a", "Setting and centres", "author: not recorded in the cohort table"),
    ("6b", "Eligibility criteria", "author: not recorded in the cohort table"),
    ("6c", "Treatments received", "#table1"),
    ("7", "Data preparation and quality checks", "#methods"),
    ("8a", "Outcome definition and time of assessment", "#survival"),
    ("8b", "Qualifications of outcome assessors", "author: not recorded"),
    ("8c", "Blinding of outcome assessment", "author: not recorded"),
    ("9a", "Choice of predictors", "#cox"),
    ("9b", "Predictor definitions and timing", "#table1"),
    ("9c", "Qualifications of predictor assessors", "author: not recorded"),
    ("10", "Sample size and its justification", "#models"),
    ("11", "Handling of missing data", "#data"),
    ("12a", "How the data were used (development, evaluation)", "#models"),
    ("12b", "Handling of predictors (transformations, coding)", "#methods"),
    ("12c", "Model type, building and hyperparameter tuning", "#models"),
    ("12d", "Heterogeneity across clusters", "n/a: a single cohort without clusters"),
    ("12e", "Performance measures and their comparison", "#models"),
    ("12f", "Model updating", "n/a: no existing model is updated"),
    ("12g", "Estimation of predictions in the evaluation", "#models"),
    ("13", "Class imbalance methods", "n/a: time-to-event outcome, no resampling for imbalance"),
    ("14", "Fairness methods", "author: no protected attributes in the cohort table"),
    ("15", "Model output and risk groups", "#models"),
    ("16", "Differences between development and evaluation data", "#models"),
    ("17", "Ethical approval", "author: the twin is simulated; real data need the author's approval"),
    ("18a", "Funding", "author"),
    ("18b", "Conflicts of interest", "author"),
    ("18c", "Protocol", "author"),
    ("18d", "Registration", "author"),
    ("18e", "Data availability", "#methods"),
    ("18f", "Code availability", "#methods"),
    ("19", "Patient and public involvement", "author"),
    ("20a", "Flow of participants, follow-up", "#data"),
    ("20b", "Characteristics overall and by group", "#table1"),
    ("20c", "Comparison with the evaluation data", "#models"),
    ("21", "Numbers of participants and events per analysis", "#data"),
    ("22", "Full model specification (to predict for a new patient)", "#models"),
    ("23a", "Performance with confidence intervals", "#models"),
    ("23b", "Performance in key subgroups", "author: no subgroup analysis in this version"),
    ("24", "Results of model updating", "n/a: no updating"),
    ("25", "Interpretation of the main results", "#survival"),
    ("26", "Limitations", "#models"),
    ("27a", "How poor-quality or missing input is handled in use", "#methods"),
    ("27b", "User interaction and expertise needed", "author"),
    ("27c", "Future research and generalisability", "author"),
)


def rows(anchors: dict[str, str]) -> list[dict[str, str]]:
    """Each item with its answer: a link to the section (by `anchors` title) or the statement."""
    out = []
    for item, topic, where in ITEMS:
        if where.startswith("#"):
            answer = f"answered in: {anchors.get(where, where)}"
        elif where == "author":
            answer = "to be supplied by the author (not knowable from the data)"
        else:
            kind, _, why = where.partition(": ")
            answer = ("not applicable: " if kind == "n/a" else "to be supplied by the author: ") + why
        link = where if where.startswith("#") else ""
        out.append({"item": item, "topic": topic, "answer": answer, "link": link})
    return out
