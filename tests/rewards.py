"""Rule-based rewards for the PPO tests (named on the command line as `rewards:share_of_a`)."""


def share_of_a(prompts: list[str], responses: list[str]) -> list[float]:
    """The share of the letter 'a' in the response: smooth, so a tiny random model can climb it."""
    return [r.count("a") / max(1, len(r)) for r in responses]


def length(prompts: list[str], responses: list[str]) -> list[float]:
    return [float(len(r)) for r in responses]
