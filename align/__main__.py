"""`python -m align` and `accelerate launch -m align ...`."""

from align.cli import main

main()
