"""cocoon.localnet.bench: measured ratios (ours vs. direct) for the README's performance section."""
