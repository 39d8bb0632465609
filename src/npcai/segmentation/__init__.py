"""npcai.segmentation"""
