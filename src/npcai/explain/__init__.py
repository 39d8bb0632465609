"""npcai.explain"""
