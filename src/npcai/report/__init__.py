"""npcai.report"""
