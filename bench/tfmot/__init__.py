"""TensorFlow Model Optimization baseline; ``run_tfmot`` runs inside ``bench/.venv-tfmot``."""
