"""npcai.serve"""
