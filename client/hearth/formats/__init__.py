"""Pure data formats, no I/O: CIDs and CARs, the job spec, the signed result receipt, token units."""
