"""MLIP backends behind one Trainer protocol, and committees."""
