"""Modifiers: transforms that change what any method does (cautious masking, MARS, parameter averages, grafting)."""
