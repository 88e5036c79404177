"""Training: the trainer loop, tasks (dataset + loss + metric), metrics, and per-task recipes."""
