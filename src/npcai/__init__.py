"""npcai: from a hospital's NPC MRI export to validated deep-learning prognosis models."""

__version__ = "0.1.0"
