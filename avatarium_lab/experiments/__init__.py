"""Experiments: A/B tests of providers, personas, voices, aligners and avatars, with statistics and MLflow.

``run_experiment("experiments/ab_voices.yaml")`` (or ``avatarium bench SPEC``) runs every trial through the real
pipeline (resumable, concurrent, optionally on Dask), derives per-trial metrics from the turn's events, and
returns an :class:`ExperimentResult` with the tidy results, bootstrap CIs, paired comparisons and the MLflow run.
"""

from .runner import ExperimentResult, Trial, plan_trials, run_experiment
from .spec import ExperimentSpec, VariantSpec, load_spec

__all__ = ["ExperimentResult", "ExperimentSpec", "Trial", "VariantSpec", "load_spec", "plan_trials",
           "run_experiment"]
