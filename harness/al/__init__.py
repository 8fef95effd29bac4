"""Committee active learning (SCIENCE.md §8): selection of frames from exploration trajectories (growing, #8)."""
