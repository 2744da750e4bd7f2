"""Query side of zhsearch: parsing, ranking, highlighting and evaluation
over an index written by ``indexer``."""
