"""Scene applications: thematic maps, text heatmaps and dense features over scene windows (COG out)."""
