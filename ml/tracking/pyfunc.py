"""The survival model flavour for MLflow: a pyfunc wrapping a fitted `ml.score.SurvivalScorer`.

Imported only by `ml.tracking` (the one module that talks to MLflow). The scorer (fitted
preprocessing + model + training cut-offs + explanation state) is stored as the artifact
`scorer` (cloudpickle); `predict` takes a DataFrame of patients (the cohort contract's baseline
covariates and treatment, one row each) and returns the table of `ml.score.OUTPUT_COLUMNS`:
risk score and percentile, risk group, P(PFS > 3/6/12/24 months), median PFS ("not reached"
when the curve stays above 0.5), and the features pushing the risk up and down.

    mlflow models serve -m models:/rechallenge-pfs-cox@champion --env-manager local
    mlflow.pyfunc.load_model("models:/rechallenge-pfs-cox@champion").predict(df)
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

SCORER_ARTIFACT = "scorer"


class SurvivalPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc around a SurvivalScorer; bad rows raise MlflowException (HTTP 400 when served)."""

    def load_context(self, context: Any) -> None:
        import cloudpickle

        with open(context.artifacts[SCORER_ARTIFACT], "rb") as fh:
            self.scorer = cloudpickle.load(fh)
        self.scorer.warm()

    def predict(self, context, model_input: pd.DataFrame, params=None):
        # a DataFrame hint: MLflow infers nothing from it (the signature is given at logging)
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from ml.serving.scorer import ScoringInputError

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            return self.scorer.score(frame)
        except ScoringInputError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
