"""Evaluation: objective metrics and reports."""
