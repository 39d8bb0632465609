"""npcai.imaging"""
