"""Foundation models fine-tuned on a subset (issue #17): the sweep's ``finetune:`` section, its planner and the
``forgetting`` task kind. The recipe itself (``mace_run_train`` flags) is :mod:`harness.models.finetune`."""
