"""Reports from a workspace store: Q tables, paper-style figures, one HTML page."""
