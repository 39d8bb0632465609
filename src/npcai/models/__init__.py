"""npcai.models"""
