"""The paper's evaluation protocol on labelled trace corpora, and its reports.

* `protocol`: training groups of k domains, seeded 80/20 splits, named groups;
* `data`: the labelled corpus (`EvalData`);
* `configurations`: what is compared, by name: the product's presets, classifier grids
  and score baselines, each building a slice estimator
  (`entropy_sentinel.estimator.SliceEstimator`);
* `metrics`: per-domain and per-group metrics (AEE, Spearman, Pearson, AUROC, Brier);
* `runner`: parallel, cached, resumable runs (`run_evaluation`);
* `results`: the runs as tables (`load_results`);
* `report`: ``report.md`` and its figures (`write_report`).

See docs/evaluation.md; ``sentinel evaluate`` is the command line.
"""

from entropy_sentinel.evaluation.configurations import (
    Configuration,
    grid,
    preset_configurations,
    resolve,
    score_baselines,
    select_configurations,
)
from entropy_sentinel.evaluation.data import EvalData, load_traces
from entropy_sentinel.evaluation.metrics import GROUP_METRICS, domain_metrics, group_summary
from entropy_sentinel.evaluation.protocol import (
    Group,
    Split,
    domain_split,
    named_groups,
    parse_ks,
    training_groups,
)
from entropy_sentinel.evaluation.results import EvaluationResults, load_results
from entropy_sentinel.evaluation.runner import RunSummary, run_evaluation

__all__ = [
    "GROUP_METRICS",
    "Configuration",
    "EvalData",
    "EvaluationResults",
    "Group",
    "RunSummary",
    "Split",
    "domain_metrics",
    "domain_split",
    "grid",
    "group_summary",
    "load_results",
    "load_traces",
    "named_groups",
    "parse_ks",
    "preset_configurations",
    "resolve",
    "run_evaluation",
    "score_baselines",
    "select_configurations",
    "training_groups",
]
