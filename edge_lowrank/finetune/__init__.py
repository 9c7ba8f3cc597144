"""Recovering accuracy after a low-rank rewrite: knowledge distillation from the original model."""

from edge_lowrank.finetune.distill import distill, top1

__all__ = ["distill", "top1"]
