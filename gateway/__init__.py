"""Sluis: a privacy gateway between HRM/CRM systems and an e-learning platform."""

__version__ = "0.1.0"
