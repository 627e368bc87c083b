"""The survival model flavour for MLflow: a pyfunc around a fitted scorer.

Imported only by `ml.tracking.models`. The scorer (any object with `warm()` and
`score(frame) -> DataFrame`, e.g. `ml.serving.scorer.SurvivalScorer`) is stored as the
artifact `scorer` (cloudpickle); `predict` takes a DataFrame of patients and returns the
scorer's table. A `ValueError` that carries a `problems` attribute (bad input rows, named)
becomes MLflow's INVALID_PARAMETER_VALUE, i.e. HTTP 400 from `mlflow models serve`.

This class and the scorer are pickled by reference to their modules: the model is logged
with the source of the packages they live in (`code/`, which MLflow puts first on
`sys.path` when loading), so it loads where only its `requirements.txt` is installed.

    mlflow models serve -m models:/rechallenge-pfs-cox@champion --env-manager local
    mlflow.pyfunc.load_model("models:/rechallenge-pfs-cox@champion").predict(df)
"""

from __future__ import annotations

from typing import Any

import cloudpickle
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

SCORER_ARTIFACT = "scorer"


def is_input_error(exc: BaseException) -> bool:
    """Bad input named field by field (duck typing: no domain exception class is imported)."""
    return isinstance(exc, ValueError) and getattr(exc, "problems", None) is not None


class SurvivalPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc around a scorer; bad rows raise MlflowException (HTTP 400 when served)."""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts[SCORER_ARTIFACT], "rb") as fh:
            self.scorer = cloudpickle.load(fh)
        self.scorer.warm()

    def predict(self, context, model_input: pd.DataFrame, params=None):
        # a DataFrame hint: MLflow infers nothing from it (the signature is given at logging)
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            return self.scorer.score(frame)
        except ValueError as exc:
            if not is_input_error(exc):
                raise
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
