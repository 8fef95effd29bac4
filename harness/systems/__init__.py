"""Molecular systems: molecule library, compositions, liquid boxes, topology."""
