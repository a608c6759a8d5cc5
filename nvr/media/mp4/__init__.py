"""MP4 (ISO BMFF): boxes, fragments, init segments, sample tables and plain clips."""
