"""Cohorts: the phantom hospital export, ingest, the canonical cohort folder, endpoints, splits."""
from npcai.cohort.model import Cohort, Patient, Scan, pseudonym_map_path, scan_id

__all__ = ["Cohort", "Patient", "Scan", "pseudonym_map_path", "scan_id"]
