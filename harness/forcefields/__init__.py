"""Classical OPLS-AA force field for carbonate solvents (OpenMM), used to sample liquid frames."""

from harness.forcefields.opls import OPLSParameters, TypingError, build_system, type_molecule

__all__ = ["OPLSParameters", "TypingError", "build_system", "type_molecule"]
