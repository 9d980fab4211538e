"""Multitask parameter-efficient fine-tuning of transformer encoders (no Ray, no MLflow here)."""
