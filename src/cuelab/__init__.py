"""cuelab: which cues does my image classifier actually rely on?"""

import os

# No telemetry from the tools cuelab drives, whoever calls it (the CLI, a component, a test, a
# notebook): set before any of them is imported; an explicit setting of the user's wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

__version__ = "0.1.0"
