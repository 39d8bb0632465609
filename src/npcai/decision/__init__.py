"""npcai.decision"""
