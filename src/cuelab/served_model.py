"""The model as MLflow serves it (logged as code by cuelab.train, so loading it unpickles nothing): a batch of
images (n, 3, H, W) float32 in [0, 1] -> a table with the predicted class and one logit column
per class, named by the class. Needs torch, numpy and pandas; not cuelab."""

import mlflow
import numpy as np
import pandas as pd
import torch


class CuelabClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.network = torch.export.load(context.artifacts["program"]).module()
        self.classes = list(context.model_config["classes"])

    def predict(self, context, model_input, params=None):  # the logged signature checks input
        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            logits = self.network(x).float().numpy()
        table = pd.DataFrame(logits, columns=self.classes)
        table.insert(0, "class", np.asarray(self.classes, dtype=object)[logits.argmax(1)])
        return table


mlflow.models.set_model(CuelabClassifier())
