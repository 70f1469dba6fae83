"""align: the InstructGPT alignment pipeline (SFT -> RM -> PPO, or DPO) as one CLI."""

__version__ = "0.1.0"
