"""Sanity rewards for the PPO sweep (named on the command line as `rewards:share_of_o`)."""


def share_of_o(prompts: list[str], responses: list[str]) -> list[float]:
    """10 x the share of the letter 'o' in the answer: smooth and cheap, so what a PPO setting buys per nat of KL
    is measured without a reward model's noise."""
    return [10.0 * r.count("o") / max(1, len(r)) for r in responses]
