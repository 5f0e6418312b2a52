import logging
import os
import warnings

import pytest
import torch

# One intra-op thread: the machines running the suite have two cores and tests run beside each other.
torch.set_num_threads(1)
logging.getLogger("torchrl").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a fresh working directory (mlflow.db, runs/ land there); no inherited tracking URI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path
