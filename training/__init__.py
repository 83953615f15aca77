"""Offline training of Clara's models: corpus folders in, model folders out.

`clara train` (and `torchrun --nproc_per_node=N -m clara_live train`) call `training.trainer.train`.
"""
