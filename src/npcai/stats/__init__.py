"""npcai.stats"""
