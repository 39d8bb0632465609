"""npcai.studies"""
