"""lightq: deep Q-learning on PyTorch Lightning and TorchRL (Berkeley CS285, "Deep RL with Q-functions")."""

__version__ = "0.1.0"
__all__ = ["__version__"]
