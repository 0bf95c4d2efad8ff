// The analysis module: streaming analyses over a recording (see docs/ANALYSIS.md).
