"""npcai.survival"""
